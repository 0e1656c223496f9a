package engine_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/pheromone-go/pheromone/engine"
)

// A pipeline that chains several primitives: events are split per session
// into a by_set fan-in, a k-of-n cut, a dynamic_group shuffle and event-time
// sliding windows with a late bucket.
const chainApp = `
app: chain
sources:
  - name: in
    topic: in
    partitions: 1
    schema: [{name: s, type: string}, {name: key, type: string}, {name: g, type: string}, {name: v, type: int64}, {name: ts, type: timestamp}]
    key: key
    event_time: ts
    bucket: in
buckets:
  - {name: in, session: s}
  - {name: late}
triggers:
  - {name: set, bucket: in, primitive: by_set, keys: [a, b, c], function: pass_set}
  - {name: quorum, bucket: in, primitive: redundant, k: 2, n: 4, function: pass_quorum}
  - {name: shuffle, bucket: in, primitive: dynamic_group, control_key: done, controls: 2, group_column: g, function: reduce}
  - {name: hop, bucket: in, primitive: by_time, time: event, window: 4s, slide: 2s, out_of_orderness: 1s, late_bucket: late, function: per_window}
  - {name: each_late, bucket: late, primitive: immediate, function: pass_late}
functions:
  - {name: pass_set, kind: emit, outputs: [set_out]}
  - {name: pass_quorum, kind: emit, outputs: [quorum_out]}
  - {name: reduce, kind: aggregate, group_by: [s, g], aggregates: [{name: n, op: count}, {name: sum, op: sum, column: v}], outputs: [group_out]}
  - {name: per_window, kind: aggregate, group_by: [key], aggregates: [{name: n, op: count}, {name: hi, op: max, column: v}], outputs: [window_out]}
  - {name: pass_late, kind: emit, outputs: [late_out]}
sinks:
  - {name: set_out, topic: set-out, partitions: 1}
  - {name: quorum_out, topic: quorum-out, partitions: 1}
  - {name: group_out, topic: group-out, partitions: 1}
  - {name: window_out, topic: window-out, partitions: 1}
  - {name: late_out, topic: late-out, partitions: 1}
`

var chainTopics = []string{"set-out", "quorum-out", "group-out", "window-out", "late-out"}

// TestMetamorphicApp sends the same input through chainApp in batches of
// different sizes, with and without restarting the node (same state
// directory) between batches, and requires byte-identical output topics.
func TestMetamorphicApp(t *testing.T) {
	rnd := rand.New(rand.NewPCG(3, 4))
	var input [][]byte
	ts := int64(10_000)
	for i := 0; i < 600; i++ {
		key := []string{"a", "b", "c", "d", "done"}[rnd.IntN(5)]
		ts += int64(rnd.IntN(500))
		at := ts
		if rnd.IntN(12) == 0 {
			at -= 6000 // a straggler: late for its windows
		}
		input = append(input, fmt.Appendf(nil, `{"s":"s%d","key":%q,"g":"g%d","v":%d,"ts":%d}`,
			rnd.IntN(6), key, rnd.IntN(3), i, at))
	}
	want := runChain(t, input, len(input), false)
	total := 0
	for _, topic := range chainTopics {
		if len(want[topic]) == 0 {
			t.Fatalf("%s is empty: the input does not exercise it", topic)
		}
		total += len(want[topic])
	}
	t.Logf("reference run: %d output records", total)
	for _, tc := range []struct {
		batch   int
		restart bool
	}{{1, false}, {7, true}, {50, false}, {50, true}, {123, true}} {
		got := runChain(t, input, tc.batch, tc.restart)
		for _, topic := range chainTopics {
			if g, w := strings.Join(got[topic], "\n"), strings.Join(want[topic], "\n"); g != w {
				t.Errorf("batches of %d, restarts %v: %s differs:\n got %d records\nwant %d records", tc.batch, tc.restart, topic, len(got[topic]), len(want[topic]))
			}
		}
	}
}

func runChain(t *testing.T, input [][]byte, batch int, restart bool) map[string][]string {
	t.Helper()
	a := parseApp(t, chainApp)
	brokers := startBroker(t, a)
	dir := t.TempDir()
	clock := engine.NewManualClock(time.Unix(0, 0))
	f := start(t, a, dir, brokers, engine.Options{Clock: clock})
	assign := func() {
		if err := f.node.Assign([]engine.TopicPartition{p0}); err != nil {
			t.Fatal(err)
		}
	}
	assign()
	for from := 0; from < len(input); from += batch {
		to := min(from+batch, len(input))
		recs := make([]engine.Record, 0, to-from)
		for i := from; i < to; i++ {
			recs = append(recs, engine.Record{Offset: int64(i), Value: input[i]})
		}
		if err := f.node.Deliver(context.Background(), "in", 0, recs, -1); err != nil {
			t.Fatal(err)
		}
		if restart {
			waitCommitted(t, f.node, int64(to))
			f.stop()
			f = start(t, a, dir, brokers, engine.Options{Clock: clock})
			assign()
		}
	}
	waitCommitted(t, f.node, int64(len(input)))
	f.stop()
	out := map[string][]string{}
	for _, topic := range chainTopics {
		out[topic] = readAll(t, brokers, topic, 1)
	}
	return out
}
