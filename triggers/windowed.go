package triggers

import (
	"encoding/binary"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// windowed is by_time: tumbling (Window), sliding (Window and Slide) or
// session (Gap) windows, on processing time or on event time.
//
// On processing time an object's timestamp is the time it is put, the
// watermark is the clock, and windows fire on timers, so an idle bucket
// still fires (the reference implementation only checked on arrival).
//
// On event time each object brings its timestamp. The watermark is the
// largest timestamp seen minus the allowed out-of-orderness; timestamps
// more than MaxFuture ahead of the clock are clamped, so one record from the
// future cannot make everything else late; and after IdleTimeout without
// objects the watermark follows the clock, so a quiet partition's windows
// still close. A window fires once, when the watermark passes its end plus
// AllowedLateness. An object all of whose windows already fired is late: it
// is passed in a Late firing (the engine drops and counts it, or routes it
// to a late bucket).
//
// Windows without objects never fire.
type windowed struct {
	spec Spec
	// panes holds the open windows; keyed lists the session windows of
	// each key (Gap only), so an object looks at its own key's windows.
	panes map[paneID]*pane
	keyed map[string][]*pane
	last  *pane // the window the previous object went to (most objects share it)

	wm          int64 // watermark, unix ns (event time)
	maxTs       int64 // largest (clamped) event time seen
	lastArrival int64 // processing time of the last put, unix ns
	seen        bool  // any event-time object seen
	minEnd      int64 // no pane ends before this (may be stale low)
	next        uint64
	late        uint64
}

type pane struct {
	start, end int64 // unix ns, [start, end)
	key        string
	seqs       []uint64
}

type paneID struct {
	start, end int64
	key        string
}

func (p *pane) id() paneID { return paneID{p.start, p.end, p.key} }

func newWindowed(s Spec, next uint64) *windowed {
	return &windowed{spec: s, next: next, panes: map[paneID]*pane{}, keyed: map[string][]*pane{}}
}

// add makes p an open window.
func (t *windowed) add(p *pane) {
	if len(t.panes) == 0 || p.end < t.minEnd {
		t.minEnd = p.end
	}
	t.panes[p.id()] = p
	if t.spec.Gap > 0 {
		t.keyed[p.key] = append(t.keyed[p.key], p)
	}
}

// remove forgets the open window p.
func (t *windowed) remove(p *pane) {
	if t.last == p {
		t.last = nil
	}
	delete(t.panes, p.id())
	if t.spec.Gap > 0 {
		ps := slices.DeleteFunc(t.keyed[p.key], func(q *pane) bool { return q == p })
		if len(ps) == 0 {
			delete(t.keyed, p.key)
		} else {
			t.keyed[p.key] = ps
		}
	}
}

// sorted returns the open windows by end, start and key.
func (t *windowed) sorted() []*pane {
	out := make([]*pane, 0, len(t.panes))
	for _, p := range t.panes {
		out = append(out, p)
	}
	sortPanes(out)
	return out
}

func sortPanes(ps []*pane) {
	sort.Slice(ps, func(i, j int) bool {
		a, b := ps[i], ps[j]
		if a.end != b.end {
			return a.end < b.end
		}
		if a.start != b.start {
			return a.start < b.start
		}
		return a.key < b.key
	})
}

func (t *windowed) Name() string    { return t.spec.Name }
func (t *windowed) Dropped() uint64 { return t.late }

func (t *windowed) eventTime() bool { return t.spec.EventTime }

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

// closed reports whether a window ending at end has fired already.
func (t *windowed) closed(end int64) bool {
	return t.eventTime() && t.seen && end+int64(t.spec.AllowedLateness) <= t.wm
}

func (t *windowed) pane(start, end int64, key string) *pane {
	if l := t.last; l != nil && l.start == start && l.end == end && l.key == key {
		return l
	}
	p, ok := t.panes[paneID{start, end, key}]
	if !ok {
		p = &pane{start: start, end: end, key: key}
		t.add(p)
	}
	t.last = p
	return p
}

func (t *windowed) Put(o Objects, now time.Time, out []Firing) []Firing {
	if o.Len == 0 {
		return out
	}
	nowNs := now.UnixNano()
	if !t.eventTime() {
		out = t.fire(nowNs, out)
	}
	for i := 0; i < o.Len; i++ {
		seq := o.First + uint64(i)
		ts := nowNs
		if t.eventTime() {
			ts = o.EventTimes[i] * int64(time.Millisecond)
			if mf := int64(t.spec.MaxFuture); mf > 0 && ts > nowNs+mf {
				ts = nowNs + mf
			}
		}
		if !t.assign(seq, ts, o.key(i)) {
			t.late++
			if n := len(out); n > 0 && out[n-1].Late && out[n-1].Objects[len(out[n-1].Objects)-1].To == seq {
				out[n-1].Objects[len(out[n-1].Objects)-1].To++
			} else {
				out = append(out, Firing{Trigger: t.spec.Name, Objects: []Span{{seq, seq + 1}}, Late: true})
			}
		}
		if !t.eventTime() {
			continue
		}
		// The watermark moves object by object, so what fires (and what is
		// late) does not depend on how the input was batched.
		if !t.seen || ts > t.maxTs {
			t.maxTs, t.seen = ts, true
		}
		if wm := t.maxTs - int64(t.spec.OutOfOrderness); wm > t.wm {
			t.wm = wm
			out = t.fire(t.wm, out)
		}
	}
	t.next = o.First + uint64(o.Len)
	t.lastArrival = nowNs
	return out
}

// assign puts seq into every open window of ts; false means it is late.
func (t *windowed) assign(seq uint64, ts int64, key string) bool {
	if gap := int64(t.spec.Gap); gap > 0 {
		if t.closed(ts + gap) {
			return false
		}
		var hit []*pane
		for _, p := range t.keyed[key] {
			if ts < p.end && ts+gap > p.start {
				hit = append(hit, p)
			}
		}
		if len(hit) == 1 {
			// The common case: the object extends its key's open window.
			// Objects arrive in sequence order, so seqs stay sorted.
			p := hit[0]
			t.remove(p)
			p.start, p.end = min(p.start, ts), max(p.end, ts+gap)
			p.seqs = append(p.seqs, seq)
			t.add(p)
			return true
		}
		start, end := ts, ts+gap
		merged := []uint64{seq}
		for _, p := range hit { // bridges two or more windows: merge them
			start, end = min(start, p.start), max(end, p.end)
			merged = append(merged, p.seqs...)
			t.remove(p)
		}
		slices.Sort(merged)
		t.add(&pane{start: start, end: end, key: key, seqs: merged})
		return true
	}
	size := int64(t.spec.Window)
	slide := int64(t.spec.Slide)
	if slide <= 0 {
		slide = size
	}
	ok := false
	for start := floorDiv(ts, slide) * slide; start > ts-size; start -= slide {
		if t.closed(start + size) {
			continue
		}
		p := t.pane(start, start+size, "")
		p.seqs = append(p.seqs, seq)
		ok = true
	}
	return ok
}

// fire appends the windows whose end (plus lateness) the watermark wm
// passed, ordered by end, start and key, and forgets them.
func (t *windowed) fire(wm int64, out []Firing) []Firing {
	lat := int64(0)
	if t.eventTime() {
		lat = int64(t.spec.AllowedLateness)
	}
	if len(t.panes) == 0 || t.minEnd+lat > wm {
		return out // nothing can be due: skip the scan
	}
	var due []*pane
	first := true
	for _, p := range t.panes {
		if p.end+lat <= wm {
			due = append(due, p)
		} else if first || p.end < t.minEnd {
			t.minEnd, first = p.end, false
		}
	}
	for _, p := range due {
		t.remove(p)
	}
	sortPanes(due)
	for _, p := range due {
		seqs := slices.Clone(p.seqs)
		slices.Sort(seqs)
		out = append(out, Firing{
			Trigger: t.spec.Name,
			Group:   p.key,
			Window:  Window{Start: time.Unix(0, p.start).UTC(), End: time.Unix(0, p.end).UTC()},
			Objects: spans(seqs),
		})
	}
	return out
}

func (t *windowed) Tick(now time.Time, out []Firing) []Firing {
	nowNs := now.UnixNano()
	if !t.eventTime() {
		return t.fire(nowNs, out)
	}
	idle := int64(t.spec.IdleTimeout)
	if idle <= 0 || !t.seen || len(t.panes) == 0 || nowNs-t.lastArrival < idle {
		return out
	}
	// Idle: event time follows the clock from the last arrival on.
	if wm := t.maxTs - int64(t.spec.OutOfOrderness) + (nowNs - t.lastArrival); wm > t.wm {
		t.wm = wm
	}
	return t.fire(t.wm, out)
}

func (t *windowed) NextTick() time.Time {
	if len(t.panes) == 0 {
		return time.Time{}
	}
	first := true
	var minEnd int64
	for _, p := range t.panes {
		if first || p.end < minEnd {
			minEnd, first = p.end, false
		}
	}
	if !t.eventTime() {
		return time.Unix(0, minEnd).UTC()
	}
	idle := int64(t.spec.IdleTimeout)
	if idle <= 0 {
		return time.Time{}
	}
	// When the idle watermark reaches the first window's end (+ lateness).
	reach := t.lastArrival + (minEnd + int64(t.spec.AllowedLateness) - (t.maxTs - int64(t.spec.OutOfOrderness)))
	return time.Unix(0, max(reach, t.lastArrival+idle)).UTC()
}

func (t *windowed) Low() uint64 {
	low := t.next
	for _, p := range t.panes {
		for _, s := range p.seqs {
			low = min(low, s)
		}
	}
	return low
}

func (t *windowed) Pending() int {
	seen := map[uint64]bool{}
	for _, p := range t.panes {
		for _, s := range p.seqs {
			seen[s] = true
		}
	}
	return len(seen)
}

func (t *windowed) MarshalState() []byte {
	b := binary.AppendUvarint(nil, t.next)
	b = binary.AppendUvarint(b, t.late)
	b = binary.AppendVarint(b, t.wm)
	b = binary.AppendVarint(b, t.maxTs)
	b = binary.AppendVarint(b, t.lastArrival)
	if t.seen {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	b = binary.AppendUvarint(b, uint64(len(t.panes)))
	for _, p := range t.sorted() {
		b = binary.AppendVarint(b, p.start)
		b = binary.AppendVarint(b, p.end)
		b = appendString(b, p.key)
		b = binary.AppendUvarint(b, uint64(len(p.seqs)))
		for _, s := range p.seqs {
			b = binary.AppendUvarint(b, s)
		}
	}
	return b
}

func (t *windowed) UnmarshalState(b []byte, next uint64) error {
	t.panes, t.keyed, t.last = map[paneID]*pane{}, map[string][]*pane{}, nil
	if b == nil {
		t.next, t.late, t.wm, t.maxTs, t.lastArrival, t.seen = next, 0, 0, 0, 0, false
		return nil
	}
	r := &reader{b: b}
	t.next = r.uvarint()
	t.late = r.uvarint()
	t.wm = r.varint()
	t.maxTs = r.varint()
	t.lastArrival = r.varint()
	t.seen = r.byte() == 1
	for n := r.count(); n > 0 && r.err == nil; n-- {
		p := &pane{start: r.varint(), end: r.varint(), key: strings.Clone(r.string())}
		for k := r.count(); k > 0 && r.err == nil; k-- {
			p.seqs = append(p.seqs, r.uvarint())
		}
		t.add(p)
	}
	if r.err != nil || len(r.b) != 0 {
		return fmt.Errorf("triggers: %s: corrupt state", t.spec.Name)
	}
	return nil
}
