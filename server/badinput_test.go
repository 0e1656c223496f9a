package server

import (
	"strings"
	"testing"
	"time"

	"github.com/pheromone-go/pheromone/engine"
)

// TestBadInputGoesToDeadLetters pins that malformed JSON, wrong types, a
// missing key column and an oversized record each land in <app>.dlq with
// their error and origin, counters move, and good records flow exactly.
func TestBadInputGoesToDeadLetters(t *testing.T) {
	brokers := cluster(t)
	clock := engine.NewManualClock(time.Date(2026, 1, 1, 0, 0, 2, 0, time.UTC))
	n := startNode(t, ordersApp, brokers, clock, t.TempDir())

	oversized := `{"id":99,"user":"zed","amount":50,"pad":"` + strings.Repeat("x", 300) + `"}`
	bad := []string{
		`{"id":2,"user":"bob","amount":`,          // offset 1: malformed
		`{"id":"three","user":"cat","amount":30}`, // offset 2: wrong type
		`{"id":4,"amount":40}`,                    // offset 3: missing key column
		oversized,                                 // offset 4: too large
		`[1,2,3]`,                                 // offset 5: not an object
		`{"id":6,"user":"dan","amount":"lots"}`,   // offset 6: wrong type
	}
	produce(t, brokers, "orders", 0, append(append([]string{order(1, "ann", 10)}, bad...), order(7, "eve", 20), order(8, "fay", 30))...)

	batches := consume(t, brokers, "batch-totals", 1, 200*time.Millisecond)
	equalLines(t, "batch totals", values(batches), []string{`{"n":3,"total":60,"first_id":1}`})

	dead := consume(t, brokers, "orders.dlq", len(bad), 200*time.Millisecond)
	if len(dead) != len(bad) {
		t.Fatalf("dead letters: got %d, want %d: %q", len(dead), len(bad), values(dead))
	}
	wantErr := []string{
		"invalid JSON: unexpected end of input",
		`column "id": want an integer, got a string`,
		`column "user": missing (required)`,
		"exceeds max_record_bytes 200",
		"want '{'",
		`column "amount": want a number, got a string`,
	}
	for i, r := range dead {
		if string(r.Value) != bad[i] {
			t.Errorf("dead letter %d value = %q, want the original %q", i, r.Value, bad[i])
		}
		if got := header(r, engine.HeaderError); !strings.Contains(got, wantErr[i]) {
			t.Errorf("dead letter %d error = %q, want it to contain %q", i, got, wantErr[i])
		}
		wantOff := []string{"1", "2", "3", "4", "5", "6"}[i]
		if header(r, engine.HeaderTopic) != "orders" || header(r, engine.HeaderPartition) != "0" || header(r, engine.HeaderOffset) != wantOff {
			t.Errorf("dead letter %d origin = %s/%s@%s, want orders/0@%s", i,
				header(r, engine.HeaderTopic), header(r, engine.HeaderPartition), header(r, engine.HeaderOffset), wantOff)
		}
	}
	if got := header(dead[3], engine.HeaderReason); got != engine.ReasonTooLarge {
		t.Errorf("oversized reason = %q", got)
	}
	addr := n.info.HTTPAddr
	for prefix, want := range map[string]string{
		`pheromone_decode_errors_total{app="orders",source="orders"}`:   "6",
		`pheromone_dead_letters_total{app="orders",reason="decode"}`:    "5",
		`pheromone_dead_letters_total{app="orders",reason="too_large"}`: "1",
		`pheromone_records_in_total{app="orders",source="orders"}`:      "9",
	} {
		if got := scrape(t, addr, prefix); got != want {
			t.Errorf("%s = %s, want %s", prefix, got, want)
		}
	}
}
