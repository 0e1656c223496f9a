package triggers

import (
	"encoding/binary"
	"fmt"
	"time"
)

// immediate fires once for every Put with all the objects of that Put: the
// engine puts objects in micro-batches, and a function over a micro-batch
// sees the same rows as one invocation per object would, in order.
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
	return append(out, Firing{Trigger: t.name, Objects: []Span{{o.First, t.low}}})
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

// byBatchSize fires every n objects with exactly those n objects, in put
// order. Objects short of a full batch stay pending across restarts.
type byBatchSize struct {
	name        string
	n           uint64
	start, next uint64 // pending objects are [start, next)
}

func (t *byBatchSize) Name() string    { return t.name }
func (t *byBatchSize) Dropped() uint64 { return 0 }
func (t *byBatchSize) Put(o Objects, _ time.Time, out []Firing) []Firing {
	if o.Len == 0 {
		return out
	}
	if t.next != o.First {
		// Objects are numbered densely per bucket partition; a gap means the
		// engine lost track of the bucket, which must never happen.
		panic(fmt.Sprintf("triggers: %s: put seq %d, expected %d", t.name, o.First, t.next))
	}
	t.next = o.First + uint64(o.Len)
	for t.next-t.start >= t.n {
		out = append(out, Firing{Trigger: t.name, Objects: []Span{{t.start, t.start + t.n}}})
		t.start += t.n
	}
	return out
}
func (t *byBatchSize) Tick(_ time.Time, out []Firing) []Firing { return out }
func (t *byBatchSize) NextTick() time.Time                     { return time.Time{} }
func (t *byBatchSize) Low() uint64                             { return t.start }
func (t *byBatchSize) Pending() int                            { return int(t.next - t.start) }
func (t *byBatchSize) MarshalState() []byte {
	b := binary.AppendUvarint(nil, t.start)
	return binary.AppendUvarint(b, t.next)
}
func (t *byBatchSize) UnmarshalState(b []byte, next uint64) error {
	if b == nil {
		t.start, t.next = next, next
		return nil
	}
	s, n1 := binary.Uvarint(b)
	if n1 <= 0 {
		return fmt.Errorf("triggers: %s: corrupt state", t.name)
	}
	e, n2 := binary.Uvarint(b[n1:])
	if n2 <= 0 || e < s {
		return fmt.Errorf("triggers: %s: corrupt state", t.name)
	}
	t.start, t.next = s, e
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
