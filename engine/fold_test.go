package engine_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/pheromone-go/pheromone/connectors/kafka"
	"github.com/pheromone-go/pheromone/engine"
)

// foldApp has a window of every kind, and batches, firing built-in
// aggregates of every op; %s is put into each of those triggers
// (incremental: false, or nothing).
const foldApp = `
app: fold
sources:
  - name: in
    topic: in
    partitions: 1
    schema: [{name: key, type: string}, {name: g, type: string}, {name: v, type: int64}, {name: f, type: float64}, {name: ts, type: timestamp}, {name: ok, type: bool}]
    key: key
    event_time: ts
    bucket: in
buckets:
  - {name: in}
  - {name: late}
triggers:
  - {name: tumble, bucket: in, primitive: by_time, time: event, window: 3s, out_of_orderness: 1s, allowed_lateness: 500ms, late_bucket: late, function: all_ops%[1]s}
  - {name: hop, bucket: in, primitive: by_time, time: event, window: 4s, slide: 1s, out_of_orderness: 1s, function: per_g%[1]s}
  - {name: sess, bucket: in, primitive: by_time, time: event, gap: 1500ms, out_of_orderness: 1s, function: per_session%[1]s}
  - {name: sess_avg, bucket: in, primitive: by_time, time: event, gap: 1500ms, out_of_orderness: 1s, function: session_avg%[1]s}
  - {name: proc, bucket: in, primitive: by_time, window: 1h, function: per_ok%[1]s}
  - {name: batches, bucket: in, primitive: by_batch_size, count: 7, function: per_batch%[1]s}
  - {name: each_late, bucket: late, primitive: immediate, function: pass_late}
functions:
  - name: all_ops
    kind: aggregate
    group_by: [key]
    aggregates:
      - {name: n, op: count}
      - {name: nv, op: count, column: v}
      - {name: sv, op: sum, column: v}
      - {name: sf, op: sum, column: f}
      - {name: lo, op: min, column: v}
      - {name: hi, op: max, column: f}
      - {name: first_g, op: min, column: g}
      - {name: last_ts, op: max, column: ts}
      - {name: mean, op: avg, column: f}
      - {name: gs, op: count_distinct, column: g}
      - {name: top, op: top_k, column: g, k: 2}
    outputs: [tumble_out]
  - {name: per_g, kind: aggregate, group_by: [g, ok], aggregates: [{name: n, op: count}, {name: s, op: sum, column: v}, {name: m, op: avg, column: v}], outputs: [hop_out]}
  - {name: per_session, kind: aggregate, group_by: [g], aggregates: [{name: n, op: count}, {name: s, op: sum, column: v}, {name: lo, op: min, column: f}, {name: hi, op: max, column: g}, {name: d, op: count_distinct, column: v}, {name: top, op: top_k, column: g, k: 3}], outputs: [sess_out]}
  - {name: session_avg, kind: aggregate, aggregates: [{name: m, op: avg, column: f}, {name: s, op: sum, column: f}], outputs: [sess_avg_out]}
  - {name: per_ok, kind: aggregate, group_by: [ok], aggregates: [{name: n, op: count}, {name: s, op: sum, column: f}], outputs: [proc_out]}
  - {name: per_batch, kind: aggregate, group_by: [g], aggregates: [{name: n, op: count}, {name: s, op: sum, column: f}, {name: m, op: avg, column: v}, {name: top, op: top_k, column: key, k: 2}], outputs: [batch_out]}
  - {name: pass_late, kind: emit, outputs: [late_out]}
sinks:
  - {name: tumble_out, topic: tumble-out, partitions: 1}
  - {name: hop_out, topic: hop-out, partitions: 1}
  - {name: sess_out, topic: sess-out, partitions: 1}
  - {name: sess_avg_out, topic: sess-avg-out, partitions: 1}
  - {name: proc_out, topic: proc-out, partitions: 1}
  - {name: batch_out, topic: batch-out, partitions: 1}
  - {name: late_out, topic: late-out, partitions: 1}
`

var foldTopics = []string{"tumble-out", "hop-out", "sess-out", "sess-avg-out", "proc-out", "batch-out", "late-out"}

// TestIncrementalWindowsMatchObjects is the metamorphic test of incremental
// windows: the same seeded input — disorder, late events, nulls, sessions
// that merge — goes through the app with partial aggregates and with
// objects (incremental: false), in batches of several sizes, with restarts
// on the same data dir and on an empty one (restored from the changelog);
// every output topic must be byte-identical. (The changelog sizes are
// logged: with a few objects per window and group, as here, partials are
// not smaller than the objects; benchmarks/README.md has YSB's.)
func TestIncrementalWindowsMatchObjects(t *testing.T) {
	rnd := rand.New(rand.NewPCG(16, 1))
	var input [][]byte
	ts := int64(50_000)
	for i := 0; i < 700; i++ {
		ts += int64(rnd.IntN(400))
		at := ts - int64(rnd.IntN(900)) // disorder within the out-of-orderness
		if rnd.IntN(15) == 0 {
			at -= 5000 // late for its windows
		}
		if rnd.IntN(40) == 0 {
			ts += 2500 // a pause: sessions close
		}
		v := fmt.Sprint(rnd.IntN(1000) - 300)
		if rnd.IntN(10) == 0 {
			v = "null"
		}
		input = append(input, fmt.Appendf(nil, `{"key":"k%d","g":"g%d","v":%s,"f":%.3f,"ts":%d,"ok":%v}`,
			rnd.IntN(4), rnd.IntN(5), v, rnd.Float64()*100-20, at, rnd.IntN(3) == 0))
	}
	for _, tc := range []struct {
		batch   int
		restart string // "", "same" (the data dir kept), "fresh" (restored from the changelog)
	}{{700, ""}, {1, ""}, {13, "same"}, {41, "fresh"}} {
		objs, objBytes := runFold(t, input, tc.batch, tc.restart, false)
		incs, incBytes := runFold(t, input, tc.batch, tc.restart, true)
		total := 0
		for _, topic := range foldTopics {
			if len(objs[topic]) == 0 {
				t.Fatalf("%s is empty: the input does not exercise it", topic)
			}
			total += len(objs[topic])
			for i := range max(len(incs[topic]), len(objs[topic])) {
				g, w := "(none)", "(none)"
				if i < len(incs[topic]) {
					g = incs[topic][i]
				}
				if i < len(objs[topic]) {
					w = objs[topic][i]
				}
				if g != w {
					t.Errorf("batches of %d, restarts %q: %s record %d of %d differs:\nincremental: %s\nobjects:     %s",
						tc.batch, tc.restart, topic, i+1, len(objs[topic]), g, w)
					break
				}
			}
		}
		t.Logf("batches of %d, restarts %q: %d records out; changelog %d bytes with objects, %d incremental (%.1fx smaller)",
			tc.batch, tc.restart, total, objBytes, incBytes, float64(objBytes)/float64(max(incBytes, 1)))
	}
}

func runFold(t *testing.T, input [][]byte, batch int, restart string, incremental bool) (map[string][]string, int) {
	t.Helper()
	opt := ", incremental: false"
	if incremental {
		opt = ""
	}
	a := parseApp(t, fmt.Sprintf(foldApp, opt))
	brokers := startBroker(t, a)
	conn := kafka.Plain(brokers...)
	if err := kafka.EnsureTopics(context.Background(), conn, map[string]int{a.Kafka.ChangelogTopic: 1}); err != nil {
		t.Fatal(err)
	}
	clock := engine.NewManualClock(time.Unix(0, 0))
	opts := func() engine.Options {
		return engine.Options{Clock: clock, ChangelogTopic: a.Kafka.ChangelogTopic,
			ChangelogReader: &kafka.ChangelogReader{Conn: conn, Topic: a.Kafka.ChangelogTopic}}
	}
	dir := t.TempDir()
	f := start(t, a, dir, brokers, opts())
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
		if restart != "" && to < len(input) {
			waitCommitted(t, f.node, int64(to))
			f.stop()
			if restart == "fresh" {
				dir = t.TempDir()
			}
			f = start(t, a, dir, brokers, opts())
			assign()
		}
	}
	waitCommitted(t, f.node, int64(len(input)))
	clock.Advance(2 * time.Hour) // the processing-time window fires
	out := map[string][]string{}
	out["proc-out"] = readAll(t, brokers, "proc-out", 1)
	f.stop()
	for _, topic := range foldTopics {
		if topic != "proc-out" {
			out[topic] = readAll(t, brokers, topic, 1)
		}
	}
	bytes := 0
	recs, _, err := kafka.ReadFrom(context.Background(), conn, a.Kafka.ChangelogTopic, func(int32, int64, int64) int64 { return 0 })
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		bytes += len(r.Key) + len(r.Value)
	}
	return out, bytes
}

// TestQueryShowsPartialAggregates: the bucket query shows an incremental
// window's partial aggregate — the rows it would emit now — and no objects.
func TestQueryShowsPartialAggregates(t *testing.T) {
	a := parseApp(t, planApp)
	brokers := startBroker(t, a)
	f := start(t, a, t.TempDir(), brokers, engine.Options{Clock: engine.NewManualClock(time.Unix(100, 0))})
	if err := f.node.Assign([]engine.TopicPartition{p0}); err != nil {
		t.Fatal(err)
	}
	var recs []engine.Record
	for i, v := range []string{`{"k":"a","v":1}`, `{"k":"b","v":20}`, `{"k":"a","v":30}`} {
		recs = append(recs, engine.Record{Offset: int64(i), Value: []byte(v)})
	}
	if err := f.node.Deliver(context.Background(), "in", 0, recs, -1); err != nil {
		t.Fatal(err)
	}
	waitCommitted(t, f.node, 3)
	view, err := f.node.QueryBucket("in", engine.BucketQuery{})
	if err != nil {
		t.Fatal(err)
	}
	var win *engine.TriggerView
	for i, tv := range view.Partitions[0].Triggers {
		if tv.Name == "win" {
			win = &view.Partitions[0].Triggers[i]
		}
	}
	if win == nil || len(win.Windows) != 1 {
		t.Fatalf("trigger win: %+v", view.Partitions[0].Triggers)
	}
	w := win.Windows[0]
	got := fmt.Sprintf("%s–%s %d objects: %s", w.Start.Format("15:04:05"), w.End.Format("15:04:05"), w.Objects, w.Partial)
	if want := `00:01:40–00:01:50 3 objects: [{"k":"a","window_start":"1970-01-01T00:01:40.000Z","window_end":"1970-01-01T00:01:50.000Z","n":2} {"k":"b","window_start":"1970-01-01T00:01:40.000Z","window_end":"1970-01-01T00:01:50.000Z","n":1}]`; got != want {
		t.Errorf("window:\n got %s\nwant %s", got, want)
	}
	if n := len(view.Partitions[0].Objects); n != 0 {
		t.Errorf("%d objects shown; the incremental window keeps none and no other trigger holds them", n)
	}
}
