package server

import (
	"fmt"
	"testing"
	"time"

	"github.com/pheromone-go/pheromone/engine"
)

const ordersApp = `
app: orders
sources:
  - name: orders
    topic: orders
    partitions: 2
    schema:
      - {name: id, type: int64}
      - {name: user, type: string}
      - {name: amount, type: float64}
    key: user
    bucket: orders
    max_record_bytes: 200
buckets:
  - name: orders
  - name: big
triggers:
  - {name: each, bucket: orders, primitive: immediate, function: keep_big}
  - {name: every3, bucket: big, primitive: by_batch_size, count: 3, function: batch_total, incremental: false}
  - {name: every10s, bucket: big, primitive: by_time, window: 10s, function: per_user}
functions:
  - name: keep_big
    kind: filter
    expr: amount >= 10
    outputs: [big]
  - name: batch_total
    kind: aggregate
    aggregates:
      - {name: n, op: count}
      - {name: total, op: sum, column: amount}
      - {name: first_id, op: min, column: id}
    outputs: [batch_totals]
  - name: per_user
    kind: aggregate
    group_by: [user]
    aggregates:
      - {name: n, op: count}
      - {name: total, op: sum, column: amount}
    outputs: [window_totals]
sinks:
  - {name: batch_totals, topic: batch-totals}
  - {name: window_totals, topic: window-totals, key: user}
`

func order(id int, user string, amount float64) string {
	return fmt.Sprintf(`{"id":%d,"user":%q,"amount":%g}`, id, user, amount)
}

// TestFilterAggregateWindows runs filter -> by_batch_size and by_time
// aggregates over kfake and compares the output topics exactly.
func TestFilterAggregateWindows(t *testing.T) {
	brokers := cluster(t)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := engine.NewManualClock(t0.Add(2 * time.Second))
	n := startNode(t, ordersApp, brokers, clock, t.TempDir())

	// Partition 0: ids 1..8, of which all but 3 pass the filter.
	produce(t, brokers, "orders", 0,
		order(1, "ann", 10), order(2, "bob", 20), order(3, "ann", 5),
		order(4, "ann", 30), order(5, "bob", 12.5), order(6, "cat", 19.5),
		order(7, "cat", 100), order(8, "ann", 10))
	// Partition 1: ids 11..14, of which 11,12,14 pass.
	produce(t, brokers, "orders", 1,
		order(11, "dan", 11), order(12, "dan", 12), order(13, "eve", 1), order(14, "eve", 14))

	batches := consume(t, brokers, "batch-totals", 3, 200*time.Millisecond)
	equalLines(t, "batch totals", sorted(values(batches)), []string{
		`{"n":3,"total":132,"first_id":5}`,
		`{"n":3,"total":37,"first_id":11}`,
		`{"n":3,"total":60,"first_id":1}`,
	})
	// The window has not closed: nothing may be in window-totals yet.
	if early := consume(t, brokers, "window-totals", 0, 300*time.Millisecond); len(early) != 0 {
		t.Fatalf("window fired before its end: %q", values(early))
	}
	clock.Advance(8 * time.Second) // reaches t0+10s: the window [t0, t0+10s) ends
	windows := consume(t, brokers, "window-totals", 5, 300*time.Millisecond)
	ws, we := `"window_start":"2026-01-01T00:00:00.000Z","window_end":"2026-01-01T00:00:10.000Z"`, ""
	_ = we
	equalLines(t, "window totals", sorted(values(windows)), sorted([]string{
		`{"user":"ann",` + ws + `,"n":3,"total":50}`,
		`{"user":"bob",` + ws + `,"n":2,"total":32.5}`,
		`{"user":"cat",` + ws + `,"n":2,"total":119.5}`,
		`{"user":"dan",` + ws + `,"n":2,"total":23}`,
		`{"user":"eve",` + ws + `,"n":1,"total":14}`,
	}))
	for _, r := range windows {
		var want string
		fmt.Sscanf(string(r.Value), `{"user":%q`, &want)
		if string(r.Key) != want {
			t.Errorf("window record %s has key %q, want %q", r.Value, r.Key, want)
		}
	}
	// An empty window never fires: advancing again writes nothing.
	clock.Advance(30 * time.Second)
	if extra := consume(t, brokers, "window-totals", 5, 300*time.Millisecond); len(extra) != 5 {
		t.Fatalf("empty windows fired: %q", values(extra))
	}

	addr := n.info.HTTPAddr
	waitFor(t, 5*time.Second, "metrics", func() bool {
		return scrape(t, addr, `pheromone_records_out_total{app="orders",sink="window_totals"}`) == "5"
	})
	for prefix, want := range map[string]string{
		`pheromone_records_in_total{app="orders",source="orders"}`:               "12",
		`pheromone_records_out_total{app="orders",sink="batch_totals"}`:          "3",
		`pheromone_trigger_firings_total{app="orders",trigger="every3"}`:         "3",
		`pheromone_trigger_firings_total{app="orders",trigger="every10s"}`:       "2",
		`pheromone_function_invocations_total{app="orders",function="keep_big"}`: "2",
		`pheromone_bucket_objects{app="orders",bucket="orders",partition="0"}`:   "0",
		`pheromone_consumer_lag{app="orders",partition="0",topic="orders"}`:      "0",
	} {
		if got := scrape(t, addr, prefix); got != want {
			t.Errorf("%s = %s, want %s", prefix, got, want)
		}
	}
	// Partition 0 keeps id 8 (short of a batch of 3), partition 1 nothing:
	// the by_time trigger fired, so only by_batch_size still holds objects.
	if got := scrape(t, addr, `pheromone_bucket_objects{app="orders",bucket="big",partition="0"}`); got != "1" {
		t.Errorf("big/0 holds %s objects, want 1 (consumption-aware GC)", got)
	}
	if got := scrape(t, addr, `pheromone_bucket_objects{app="orders",bucket="big",partition="1"}`); got != "0" {
		t.Errorf("big/1 holds %s objects, want 0 (consumption-aware GC)", got)
	}
}
