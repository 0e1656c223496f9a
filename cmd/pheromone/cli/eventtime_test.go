package cli

import (
	"testing"
	"time"

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
