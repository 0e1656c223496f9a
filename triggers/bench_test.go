package triggers

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkPut measures objects per second per primitive with batched input
// (puts of 1000 objects, 100 sessions, keys cycling through a set of 4 and
// a control object every 50).
func BenchmarkPut(b *testing.B) {
	specs := []Spec{
		{Name: "immediate", Primitive: Immediate},
		{Name: "by_name", Primitive: ByName, Match: "k1"},
		{Name: "by_batch_size", Primitive: ByBatchSize, Count: 10},
		{Name: "by_set", Primitive: BySet, Keys: []string{"k0", "k1", "k2", "k3"}},
		{Name: "redundant", Primitive: Redundant, K: 2, N: 3},
		{Name: "dynamic_join", Primitive: DynamicJoin, ControlKey: "ctl"},
		{Name: "dynamic_group", Primitive: DynamicGroup, ControlKey: "ctl", Controls: 1},
		{Name: "by_time_processing", Primitive: ByTime, Window: time.Second},
		{Name: "by_time_event", Primitive: ByTime, Window: time.Second, EventTime: true, OutOfOrderness: 100 * time.Millisecond},
		{Name: "by_time_sliding", Primitive: ByTime, Window: time.Second, Slide: 250 * time.Millisecond, EventTime: true},
		{Name: "by_time_session_gap", Primitive: ByTime, Gap: 500 * time.Millisecond, EventTime: true},
	}
	const batch = 1000
	keys := make([]string, batch)
	sessions := make([]string, batch)
	groups := make([]string, batch)
	counts := make([]int64, batch)
	for i := range keys {
		keys[i] = fmt.Sprintf("k%d", i%4)
		if i%50 == 49 {
			keys[i] = "ctl"
			counts[i] = 4
		}
		sessions[i] = fmt.Sprintf("s%d", (i/4)%100) // 4 consecutive objects per session: sets complete
		groups[i] = fmt.Sprintf("g%d", i%7)
	}
	for _, sp := range specs {
		b.Run(sp.Name, func(b *testing.B) {
			tr, err := New(sp, 0)
			if err != nil {
				b.Fatal(err)
			}
			now := time.Unix(1000, 0)
			times := make([]int64, batch)
			var out []Firing
			b.ReportAllocs()
			var seq uint64
			for i := 0; i < b.N; i++ {
				for j := range times {
					times[j] = (int64(i)*batch + int64(j)) // 1 ms per object
				}
				o := Objects{First: seq, Len: batch, Keys: keys, Sessions: sessions, Groups: groups, Counts: counts, EventTimes: times}
				seq += batch
				now = now.Add(time.Second)
				out = tr.Put(o, now, out[:0])
				out = tr.Tick(now, out)
			}
			b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "objects/s")
		})
	}
}
