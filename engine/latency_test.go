package engine_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pheromone-go/pheromone/engine"
	"github.com/pheromone-go/pheromone/engine/fn"
)

type signal chan time.Time

func (s signal) Invoke(context.Context, fn.Input, fn.Output) error {
	s <- time.Now()
	return nil
}

const latencyApp = `
app: lat
sources:
  - name: in
    topic: in
    partitions: 1
    schema: [{name: req, type: string}, {name: key, type: string}]
    key: key
    bucket: in
buckets: [{name: in, session: req}]
triggers: [TRIGGER]
functions: [{name: f, kind: emit, outputs: [out]}]
sinks: [{name: out, topic: out}]
`

// BenchmarkFiringLatency measures, inside one node, the time from handing
// a record batch to the node (Deliver) to the start of the function its
// trigger fires: JSON decode, bucket put, trigger, executor hand-off. It
// reports p50 and p99 in microseconds.
func BenchmarkFiringLatency(b *testing.B) {
	for _, tc := range []struct {
		name, trigger string
		keys          []string
		sync          time.Duration
	}{
		{"immediate", "{name: t, bucket: in, primitive: immediate, function: f}", []string{"x"}, 0},
		{"by_set", "{name: t, bucket: in, primitive: by_set, keys: [a, b, c], function: f}", []string{"a", "b", "c"}, 0},
		// The baseline: every commit synced, as before SyncInterval.
		{"immediate/sync_every_commit", "{name: t, bucket: in, primitive: immediate, function: f}", []string{"x"}, -1},
	} {
		b.Run(tc.name, func(b *testing.B) {
			a := parseApp(b, strings.ReplaceAll(latencyApp, "TRIGGER", tc.trigger))
			sig := make(signal, 1)
			f := start(b, a, b.TempDir(), startBroker(b, a), engine.Options{Functions: map[string]fn.Function{"f": sig}, SyncInterval: tc.sync})
			n, ctx := f.node, context.Background()
			if err := n.Assign([]engine.TopicPartition{{Topic: "in", Partition: 0}}); err != nil {
				b.Fatal(err)
			}
			lat := make([]time.Duration, 0, b.N)
			off := int64(0)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				recs := make([]engine.Record, len(tc.keys))
				for k, key := range tc.keys {
					recs[k] = engine.Record{Offset: off, Value: fmt.Appendf(nil, `{"req":"r%d","key":%q}`, i, key)}
					off++
				}
				start := time.Now()
				if err := n.Deliver(ctx, "in", 0, recs, -1); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, (<-sig).Sub(start))
			}
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
		})
	}
}
