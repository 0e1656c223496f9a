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
