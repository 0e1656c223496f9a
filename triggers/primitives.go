package triggers

import (
	"encoding/binary"
	"fmt"
	"time"
)

// immediate fires for every Put with all the objects of that Put, one firing
// per run of consecutive objects of the same session: the engine puts
// objects in micro-batches, and a function over a micro-batch sees the same
// rows as one invocation per object would, in order, never mixing sessions.
type immediate struct {
	name string
	low  uint64
}

func (t *immediate) Name() string    { return t.name }
func (t *immediate) Dropped() uint64 { return 0 }
func (t *immediate) Put(o Objects, _ time.Time, out []Firing) []Firing {
	if o.Len == 0 {
		return out
	}
	t.low = o.First + uint64(o.Len)
	if o.Sessions == nil {
		return append(out, Firing{Trigger: t.name, Objects: []Span{{o.First, t.low}}})
	}
	start := 0
	for i := 1; i <= o.Len; i++ {
		if i == o.Len || o.Sessions[i] != o.Sessions[start] {
			out = append(out, Firing{Trigger: t.name, Session: o.Sessions[start],
				Objects: []Span{{o.First + uint64(start), o.First + uint64(i)}}})
			start = i
		}
	}
	return out
}
func (t *immediate) Tick(_ time.Time, out []Firing) []Firing { return out }
func (t *immediate) NextTick() time.Time                     { return time.Time{} }
func (t *immediate) Low() uint64                             { return t.low }
func (t *immediate) Pending() int                            { return 0 }
func (t *immediate) MarshalState() []byte                    { return binary.AppendUvarint(nil, t.low) }
func (t *immediate) UnmarshalState(b []byte, next uint64) error {
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

// byTime is a processing-time tumbling window aligned to the Unix epoch.
// The window that holds objects fires at its end on a timer (Tick), whether
// or not more objects arrive; windows without objects do not fire.
type byTime struct {
	name  string
	size  time.Duration
	open  bool
	start time.Time // start of the open window
	from  uint64    // first object of the open window
	next  uint64    // next sequence number the bucket will assign
}

func (t *byTime) Name() string    { return t.name }
func (t *byTime) Dropped() uint64 { return 0 }

func (t *byTime) windowStart(now time.Time) time.Time {
	ns := now.UnixNano()
	sz := int64(t.size)
	s := ns - ns%sz
	if ns < 0 && ns%sz != 0 {
		s -= sz
	}
	return time.Unix(0, s).UTC()
}

func (t *byTime) Put(o Objects, now time.Time, out []Firing) []Firing {
	if o.Len == 0 {
		return out
	}
	out = t.Tick(now, out)
	if !t.open {
		t.open, t.start, t.from = true, t.windowStart(now), o.First
	}
	t.next = o.First + uint64(o.Len)
	return out
}

func (t *byTime) Tick(now time.Time, out []Firing) []Firing {
	if !t.open || now.Before(t.start.Add(t.size)) {
		return out
	}
	out = append(out, Firing{
		Trigger: t.name,
		Window:  Window{Start: t.start, End: t.start.Add(t.size)},
		Objects: []Span{{t.from, t.next}},
	})
	t.open, t.from = false, t.next
	return out
}

func (t *byTime) NextTick() time.Time {
	if !t.open {
		return time.Time{}
	}
	return t.start.Add(t.size)
}
func (t *byTime) Low() uint64 { return t.from }
func (t *byTime) Pending() int {
	if !t.open {
		return 0
	}
	return int(t.next - t.from)
}
func (t *byTime) MarshalState() []byte {
	b := []byte{0}
	if t.open {
		b[0] = 1
	}
	b = binary.AppendVarint(b, t.start.UnixNano())
	b = binary.AppendUvarint(b, t.from)
	return binary.AppendUvarint(b, t.next)
}
func (t *byTime) UnmarshalState(b []byte, next uint64) error {
	if b == nil {
		t.open, t.from, t.next = false, next, next
		return nil
	}
	bad := fmt.Errorf("triggers: %s: corrupt state", t.name)
	if len(b) < 1 {
		return bad
	}
	open := b[0] == 1
	b = b[1:]
	st, n := binary.Varint(b)
	if n <= 0 {
		return bad
	}
	b = b[n:]
	from, n := binary.Uvarint(b)
	if n <= 0 {
		return bad
	}
	b = b[n:]
	nx, n := binary.Uvarint(b)
	if n <= 0 || nx < from {
		return bad
	}
	t.open, t.start, t.from, t.next = open, time.Unix(0, st).UTC(), from, nx
	return nil
}
