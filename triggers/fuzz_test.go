package triggers

import (
	"testing"
	"time"
)

// FuzzUnmarshalState: state read back from disk may be corrupt; decoding
// must fail cleanly, never panic or allocate without bound, and state that
// decodes must re-encode to itself.
func FuzzUnmarshalState(f *testing.F) {
	specs := []Spec{
		{Name: "b", Primitive: ByBatchSize, Count: 2},
		{Name: "s", Primitive: BySet, Keys: []string{"a", "b"}},
		{Name: "r", Primitive: Redundant, K: 1, N: 2},
		{Name: "j", Primitive: DynamicJoin, ControlKey: "_j"},
		{Name: "g", Primitive: DynamicGroup, ControlKey: "_d", Controls: 2},
		{Name: "t", Primitive: ByTime, Window: time.Second},
		{Name: "i", Primitive: Immediate},
		{Name: "n", Primitive: ByName, Match: "x"},
		{Name: "m", Primitive: ByTime, Window: time.Second, EventTime: true, Inputs: 3, Self: 1},
	}
	for i, sp := range specs {
		tr, _ := New(sp, 0)
		o := Objects{First: 0, Len: 3, Keys: []string{"a", "_j", "_d"}, Sessions: []string{"s", "s", "t"},
			Groups: []string{"g", "", ""}, Counts: []int64{0, 2, 0}}
		if sp.Inputs > 0 {
			// Merged watermarks: objects from upstreams, one published.
			o.EventTimes, o.Upstream, o.Watermarks = []int64{100, 900, 1500}, []int32{0, 2, 1}, []int64{NoWatermark, 5e8, 7e8}
			tr.(Merger).Send(1200, time.Unix(5, 0))
			tr.(Merger).Observe(0, 3e8, nil)
		}
		tr.Put(o, time.Unix(5, 0), nil)
		f.Add(uint8(i), tr.MarshalState())
	}
	f.Fuzz(func(t *testing.T, which uint8, b []byte) {
		sp := specs[int(which)%len(specs)]
		tr, _ := New(sp, 0)
		if err := tr.UnmarshalState(b, 0); err != nil {
			return
		}
		again, _ := New(sp, 0)
		if err := again.UnmarshalState(tr.MarshalState(), 0); err != nil {
			t.Fatalf("re-decoding own state: %v", err)
		}
		_ = tr.Low()
		_ = tr.Pending()
		_ = tr.NextTick()
	})
}
