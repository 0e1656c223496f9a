package server

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pheromone-go/pheromone/engine"
)

const eventTimeApp = `
app: clicks
sources:
  - name: clicks
    topic: clicks
    partitions: 1
    schema: [{name: id, type: int64}, {name: page, type: string}, {name: ts, type: timestamp}]
    event_time: ts
    bucket: clicks
buckets:
  - {name: clicks}
  - {name: late}
triggers:
  - name: per10s
    bucket: clicks
    primitive: by_time
    time: event
    window: 10s
    out_of_orderness: 2s
    late_bucket: late
    function: count
  - {name: each_late, bucket: late, primitive: immediate, function: pass_late}
functions:
  - name: count
    kind: aggregate
    group_by: [page]
    aggregates: [{name: n, op: count}, {name: last_id, op: max, column: id}]
    outputs: [counts]
  - {name: pass_late, kind: emit, outputs: [late_out]}
sinks:
  - {name: counts, topic: counts}
  - {name: late_out, topic: late-out}
`

// TestEventTimeWindows: event-time tumbling windows close by watermark (not
// by the clock, which never moves here), out-of-order objects within the
// bound still count, and a late object goes to the late bucket's function.
func TestEventTimeWindows(t *testing.T) {
	brokers := cluster(t)
	n := startNode(t, eventTimeApp, brokers, engine.NewManualClock(time.Unix(0, 0)), t.TempDir())
	produce(t, brokers, "clicks", 0,
		`{"id":1,"page":"/a","ts":1000}`,
		`{"id":2,"page":"/b","ts":9000}`,
		`{"id":3,"page":"/a","ts":11000}`, // watermark 9s: [0,10) still open
		`{"id":4,"page":"/a","ts":8000}`,  // out of order, within 2s: counts
		`{"id":5,"page":"/b","ts":12500}`, // watermark 10.5s: [0,10) fires
		`{"id":6,"page":"/a","ts":7000}`,  // late: to the late bucket
		`{"id":7,"page":"/a","ts":23000}`) // watermark 21s: [10,20) fires
	ws := func(a, b string) string {
		return `"window_start":"1970-01-01T00:00:` + a + `.000Z","window_end":"1970-01-01T00:00:` + b + `.000Z"`
	}
	equalLines(t, "window counts", values(consume(t, brokers, "counts", 4, 300*time.Millisecond)), []string{
		`{"page":"/a",` + ws("00", "10") + `,"n":2,"last_id":4}`,
		`{"page":"/b",` + ws("00", "10") + `,"n":1,"last_id":2}`,
		`{"page":"/a",` + ws("10", "20") + `,"n":1,"last_id":3}`,
		`{"page":"/b",` + ws("10", "20") + `,"n":1,"last_id":5}`,
	})
	equalLines(t, "late objects", values(consume(t, brokers, "late-out", 1, 200*time.Millisecond)), []string{
		`{"id":6,"page":"/a","ts":"1970-01-01T00:00:07.000Z"}`,
	})
	if got := scrape(t, n.info.HTTPAddr, `pheromone_trigger_dropped_total{app="clicks",trigger="per10s"}`); got != "1" {
		t.Errorf("late count = %s, want 1", got)
	}
}

const repartitionedWindowApp = `
app: rw
sources:
  - name: clicks
    topic: clicks
    partitions: 2
    schema: [{name: id, type: int64}, {name: page, type: string}, {name: ts, type: timestamp}]
    event_time: ts
    bucket: clicks
buckets:
  - {name: clicks}
  - {name: by_page, partition_by: page, event_time: ts}
triggers:
  - {name: each, bucket: clicks, primitive: immediate, function: rekey}
  - {name: per10s, bucket: by_page, primitive: by_time, time: event, window: 10s, idle_timeout: 3s, function: count}
functions:
  - {name: rekey, kind: emit, outputs: [by_page]}
  - name: count
    kind: aggregate
    group_by: [page]
    aggregates: [{name: n, op: count}]
    outputs: [counts]
sinks:
  - {name: counts, topic: counts}
`

// TestRepartitionedWindowsCloseWhenIdle: a window on a bucket with
// partition_by holds until every upstream partition's watermark passed it;
// when the input stops, each upstream — once caught up with its log and
// quiet for idle_timeout on the injected clock — publishes a watermark that
// follows the clock, and the last windows close. Before that, a window that
// one upstream has passed but the other has not stays open.
func TestRepartitionedWindowsCloseWhenIdle(t *testing.T) {
	brokers := cluster(t)
	clock := engine.NewManualClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	n := startNode(t, repartitionedWindowApp, brokers, clock, t.TempDir())
	// Partition 0 is at 25 s of event time, partition 1 at 5 s: the merged
	// watermark is 5 s and no window can close.
	produce(t, brokers, "clicks", 0, `{"id":1,"page":"/a","ts":1000}`, `{"id":2,"page":"/b","ts":2000}`, `{"id":3,"page":"/a","ts":25000}`)
	produce(t, brokers, "clicks", 1, `{"id":4,"page":"/a","ts":3000}`, `{"id":5,"page":"/b","ts":5000}`)
	waitFor(t, 20*time.Second, "both partitions processed", func() bool {
		c := n.info.Node.Committed()
		return c[engine.TopicPartition{Topic: "clicks", Partition: 0}] == 3 && c[engine.TopicPartition{Topic: "clicks", Partition: 1}] == 2
	})
	if got := consume(t, brokers, "counts", 0, 300*time.Millisecond); len(got) != 0 {
		t.Fatalf("a window closed before the slower upstream passed it: %q", values(got))
	}
	// Partition 1 moves to 12 s: [0,10) closes with every object of both.
	produce(t, brokers, "clicks", 1, `{"id":6,"page":"/b","ts":12000}`)
	first := consume(t, brokers, "counts", 2, 300*time.Millisecond)
	equalLines(t, "first window", sorted(values(first)), []string{
		`{"page":"/a","window_start":"1970-01-01T00:00:00.000Z","window_end":"1970-01-01T00:00:10.000Z","n":2}`,
		`{"page":"/b","window_start":"1970-01-01T00:00:00.000Z","window_end":"1970-01-01T00:00:10.000Z","n":2}`,
	})
	// The input stops. The clock moves on in steps; the looks at the log
	// ends find both partitions caught up, and once idle their watermarks
	// follow the clock: [10,20) and [20,30) close.
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics("counts"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	got := 0
	waitFor(t, 30*time.Second, "the idle partitions' windows", func() bool {
		clock.Advance(time.Second)
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		got += cl.PollFetches(ctx).NumRecords()
		return got >= 4
	})
	// The gauges show it: both partitions idle, watermarks past 30 s.
	for _, p := range []string{"0", "1"} {
		labels := `{app="rw",bucket="by_page",partition="` + p + `",trigger="per10s"}`
		waitFor(t, 10*time.Second, "partition "+p+" reported idle", func() bool {
			clock.Advance(time.Second)
			return scrape(t, n.info.HTTPAddr, "pheromone_partition_idle"+labels) == "1"
		})
		wm, err := strconv.ParseFloat(scrape(t, n.info.HTTPAddr, "pheromone_watermark_seconds"+labels), 64)
		if err != nil || wm < 30 {
			t.Errorf("partition %s: pheromone_watermark_seconds = %v (%v), want >= 30", p, wm, err)
		}
		if got := scrape(t, n.info.HTTPAddr, "pheromone_oldest_open_window_seconds"+labels); got != "0" {
			t.Errorf("partition %s: oldest open window %s, want 0 (none open)", p, got)
		}
	}
	all := consume(t, brokers, "counts", 4, 300*time.Millisecond)
	equalLines(t, "all windows", sorted(values(all)), []string{
		`{"page":"/a","window_start":"1970-01-01T00:00:00.000Z","window_end":"1970-01-01T00:00:10.000Z","n":2}`,
		`{"page":"/a","window_start":"1970-01-01T00:00:20.000Z","window_end":"1970-01-01T00:00:30.000Z","n":1}`,
		`{"page":"/b","window_start":"1970-01-01T00:00:00.000Z","window_end":"1970-01-01T00:00:10.000Z","n":2}`,
		`{"page":"/b","window_start":"1970-01-01T00:00:10.000Z","window_end":"1970-01-01T00:00:20.000Z","n":1}`,
	})
}
