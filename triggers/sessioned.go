package triggers

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// byName fires once for every object whose key equals the configured name,
// with that object, in that object's session. Other objects are not its
// concern and are never held.
type byName struct {
	name, match string
	low         uint64
}

func (t *byName) Name() string    { return t.name }
func (t *byName) Dropped() uint64 { return 0 }
func (t *byName) Put(o Objects, _ time.Time, out []Firing) []Firing {
	for i := 0; i < o.Len; i++ {
		if o.key(i) == t.match {
			seq := o.First + uint64(i)
			out = append(out, Firing{Trigger: t.name, Session: o.session(i), Objects: []Span{{seq, seq + 1}}})
		}
	}
	if o.Len > 0 {
		t.low = o.First + uint64(o.Len)
	}
	return out
}
func (t *byName) Tick(_ time.Time, out []Firing) []Firing { return out }
func (t *byName) NextTick() time.Time                     { return time.Time{} }
func (t *byName) Low() uint64                             { return t.low }
func (t *byName) Pending() int                            { return 0 }
func (t *byName) MarshalState() []byte                    { return binary.AppendUvarint(nil, t.low) }
func (t *byName) UnmarshalState(b []byte, next uint64) error {
	if b == nil {
		t.low = next
		return nil
	}
	v, n := binary.Uvarint(b)
	if n <= 0 {
		return fmt.Errorf("triggers: %s: corrupt state", t.name)
	}
	t.low = v
	return nil
}

// missing marks an empty slot of a by_set session.
const missing = ^uint64(0)

// session is the state of one session of a sessioned trigger.
type session struct {
	last   int64    // unix nanoseconds of the last object
	held   []uint64 // objects held: by_set one slot per key (or missing)
	keys   []string // per held object: its key (dynamic_join) or group (dynamic_group)
	ctrl   []uint64 // control objects held
	seen   int      // redundant: objects seen; dynamic_group: controls seen
	expect int64    // dynamic_join: announced count, -1 before the announcement
	fired  bool     // redundant: fired; later objects are dropped until n
}

// sessioned implements the primitives whose state is per session:
// by_batch_size, by_set, redundant, dynamic_join and dynamic_group. Sessions never share state; a
// session's state is deleted when it completes or times out.
type sessioned struct {
	spec     Spec
	sessions map[string]*session
	next     uint64
	dropped  uint64
	folder   Folder // by_batch_size with Spec.Fold (fold.go)
}

func newSessioned(s Spec, next uint64) *sessioned {
	return &sessioned{spec: s, sessions: map[string]*session{}, next: next}
}

func (t *sessioned) Name() string    { return t.spec.Name }
func (t *sessioned) Dropped() uint64 { return t.dropped }

func (t *sessioned) get(name string, now time.Time) *session {
	s, ok := t.sessions[name]
	if !ok {
		s = &session{expect: -1}
		if t.spec.Primitive == BySet {
			s.held = make([]uint64, len(t.spec.Keys))
			for i := range s.held {
				s.held[i] = missing
			}
		}
		t.sessions[strings.Clone(name)] = s
	}
	s.last = now.UnixNano()
	return s
}

// full reports whether session name already holds the most objects it may.
func (t *sessioned) full(name string) bool {
	if t.spec.MaxPerSession <= 0 {
		return false
	}
	s, ok := t.sessions[name]
	if !ok {
		return false
	}
	n := len(s.ctrl)
	for _, v := range s.held {
		if v != missing {
			n++
		}
	}
	if t.spec.Fold {
		n = s.seen
	}
	return n >= t.spec.MaxPerSession
}

func (t *sessioned) Put(o Objects, now time.Time, out []Firing) []Firing {
	for i := 0; i < o.Len; i++ {
		seq := o.First + uint64(i)
		name := o.session(i)
		key := o.key(i)
		// Control objects are never refused: a full session still needs its
		// announcement or end-of-stage markers to complete.
		control := t.spec.ControlKey != "" && key == t.spec.ControlKey
		if !control && t.full(name) {
			if n := len(out); n > 0 && out[n-1].Overflow && out[n-1].Session == name && out[n-1].Objects[len(out[n-1].Objects)-1].To == seq {
				out[n-1].Objects[len(out[n-1].Objects)-1].To++
			} else {
				out = append(out, Firing{Trigger: t.spec.Name, Session: name, Objects: []Span{{seq, seq + 1}}, Overflow: true})
			}
			continue
		}
		switch t.spec.Primitive {
		case ByBatchSize:
			// Batches never mix sessions (the reference implementation kept
			// one buffer for all of them).
			s := t.get(name, now)
			if t.spec.Fold {
				out = t.foldBatch(name, s, seq, out)
				continue
			}
			s.held = append(s.held, seq)
			if len(s.held) == t.spec.Count {
				out = append(out, Firing{Trigger: t.spec.Name, Session: name, Objects: spans(s.held)})
				delete(t.sessions, name)
			}
		case BySet:
			idx := slices.Index(t.spec.Keys, key)
			if idx < 0 {
				continue // not in the set: never held
			}
			s := t.get(name, now)
			if s.held[idx] != missing {
				t.dropped++ // a duplicate key: the first one counts
				continue
			}
			s.held[idx] = seq
			if !slices.Contains(s.held, missing) {
				out = append(out, Firing{Trigger: t.spec.Name, Session: strings.Clone(name), Objects: spans(s.held)})
				delete(t.sessions, name)
			}
		case Redundant:
			s := t.get(name, now)
			s.seen++
			if s.fired {
				t.dropped++
			} else {
				s.held = append(s.held, seq)
				if len(s.held) == t.spec.K {
					out = append(out, Firing{Trigger: t.spec.Name, Session: name, Objects: spans(s.held)})
					s.held, s.fired = nil, true
				}
			}
			if s.seen >= t.spec.N {
				delete(t.sessions, name)
			}
		case DynamicJoin:
			s := t.get(name, now)
			if key == t.spec.ControlKey {
				s.ctrl = append(s.ctrl, seq)
				s.expect = o.count(i)
			} else if slices.Contains(s.keys, key) {
				t.dropped++ // a duplicate part: the first one counts
				continue
			} else {
				s.held = append(s.held, seq)
				s.keys = append(s.keys, strings.Clone(key))
			}
			if s.expect >= 0 && int64(len(s.held)) >= s.expect {
				out = append(out, Firing{Trigger: t.spec.Name, Session: name, Objects: spans(s.held)})
				delete(t.sessions, name)
			}
		case DynamicGroup:
			s := t.get(name, now)
			if key == t.spec.ControlKey {
				s.ctrl = append(s.ctrl, seq)
				s.seen++
			} else {
				s.held = append(s.held, seq)
				s.keys = append(s.keys, strings.Clone(o.group(i)))
			}
			if s.seen >= t.spec.Controls {
				out = t.fireGroups(name, s, out)
				delete(t.sessions, name)
			}
		}
	}
	if o.Len > 0 {
		t.next = o.First + uint64(o.Len)
	}
	return out
}

// fireGroups appends one firing per group, in the order groups first
// appeared, each with that group's objects in arrival order.
func (t *sessioned) fireGroups(name string, s *session, out []Firing) []Firing {
	var order []string
	members := map[string][]uint64{}
	for i, g := range s.keys {
		if _, ok := members[g]; !ok {
			order = append(order, g)
		}
		members[g] = append(members[g], s.held[i])
	}
	for _, g := range order {
		out = append(out, Firing{Trigger: t.spec.Name, Session: name, Group: g, Objects: spans(members[g])})
	}
	return out
}

// spans turns a list of sequence numbers into spans, keeping the list's
// order and merging neighbours that are consecutive.
func spans(seqs []uint64) []Span {
	var out []Span
	for _, s := range seqs {
		if s == missing {
			continue
		}
		if n := len(out); n > 0 && out[n-1].To == s {
			out[n-1].To++
			continue
		}
		out = append(out, Span{s, s + 1})
	}
	return out
}

func (t *sessioned) Tick(now time.Time, out []Firing) []Firing {
	if t.spec.SessionTimeout <= 0 || len(t.sessions) == 0 {
		return out
	}
	cut := now.Add(-t.spec.SessionTimeout).UnixNano()
	var expired []string
	for name, s := range t.sessions {
		if s.last <= cut {
			expired = append(expired, name)
		}
	}
	sort.Strings(expired)
	for _, name := range expired {
		s := t.sessions[name]
		all := append(append([]uint64{}, s.held...), s.ctrl...)
		all = slices.DeleteFunc(all, func(v uint64) bool { return v == missing })
		slices.Sort(all)
		if len(all) > 0 {
			out = append(out, Firing{Trigger: t.spec.Name, Session: name, Objects: spans(all), Expired: true})
		}
		delete(t.sessions, name)
	}
	return out
}

func (t *sessioned) NextTick() time.Time {
	if t.spec.SessionTimeout <= 0 || len(t.sessions) == 0 {
		return time.Time{}
	}
	first := int64(0)
	for _, s := range t.sessions {
		if first == 0 || s.last < first {
			first = s.last
		}
	}
	return time.Unix(0, first).Add(t.spec.SessionTimeout).UTC()
}

func (t *sessioned) Low() uint64 {
	low := t.next
	for _, s := range t.sessions {
		for _, v := range s.held {
			if v != missing && v < low {
				low = v
			}
		}
		for _, v := range s.ctrl {
			if v < low {
				low = v
			}
		}
	}
	return low
}

func (t *sessioned) Pending() int {
	n := 0
	for _, s := range t.sessions {
		if t.spec.Fold {
			n += s.seen
			continue
		}
		for _, v := range s.held {
			if v != missing {
				n++
			}
		}
		n += len(s.ctrl)
	}
	return n
}

// MarshalState encodes next, dropped and every session, in session order.
func (t *sessioned) MarshalState() []byte {
	b := binary.AppendUvarint(nil, t.next)
	b = binary.AppendUvarint(b, t.dropped)
	names := make([]string, 0, len(t.sessions))
	for n := range t.sessions {
		names = append(names, n)
	}
	sort.Strings(names)
	b = binary.AppendUvarint(b, uint64(len(names)))
	for _, n := range names {
		s := t.sessions[n]
		b = appendString(b, n)
		b = binary.AppendVarint(b, s.last)
		b = binary.AppendUvarint(b, uint64(s.seen))
		b = binary.AppendVarint(b, s.expect)
		if s.fired {
			b = append(b, 1)
		} else {
			b = append(b, 0)
		}
		b = binary.AppendUvarint(b, uint64(len(s.held)))
		for _, v := range s.held {
			b = binary.AppendUvarint(b, v+1) // missing encodes as 0
		}
		b = binary.AppendUvarint(b, uint64(len(s.keys)))
		for _, k := range s.keys {
			b = appendString(b, k)
		}
		b = binary.AppendUvarint(b, uint64(len(s.ctrl)))
		for _, v := range s.ctrl {
			b = binary.AppendUvarint(b, v)
		}
	}
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

var errCorrupt = errors.New("corrupt state")

// reader decodes what MarshalState wrote; the first error sticks.
type reader struct {
	b   []byte
	err error
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errCorrupt
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = errCorrupt
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) byte() byte {
	if r.err != nil || len(r.b) == 0 {
		r.err = errCorrupt
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *reader) string() string {
	n := r.uvarint()
	if r.err != nil || uint64(len(r.b)) < n {
		r.err = errCorrupt
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

// count reads a length and refuses one the rest of the input cannot hold.
func (r *reader) count() int {
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		r.err = errCorrupt
		return 0
	}
	return int(n)
}

func (t *sessioned) UnmarshalState(b []byte, next uint64) error {
	t.sessions = map[string]*session{}
	if b == nil {
		t.next, t.dropped = next, 0
		return nil
	}
	r := &reader{b: b}
	t.next = r.uvarint()
	t.dropped = r.uvarint()
	for n := r.count(); n > 0 && r.err == nil; n-- {
		name := r.string()
		s := &session{last: r.varint(), seen: int(r.uvarint()), expect: r.varint(), fired: r.byte() == 1}
		for k := r.count(); k > 0 && r.err == nil; k-- {
			s.held = append(s.held, r.uvarint()-1)
		}
		for k := r.count(); k > 0 && r.err == nil; k-- {
			s.keys = append(s.keys, r.string())
		}
		for k := r.count(); k > 0 && r.err == nil; k-- {
			s.ctrl = append(s.ctrl, r.uvarint())
		}
		t.sessions[strings.Clone(name)] = s
	}
	if r.err != nil || len(r.b) != 0 {
		return fmt.Errorf("triggers: %s: corrupt state", t.spec.Name)
	}
	return nil
}
