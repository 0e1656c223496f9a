package prom

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestPartitionGoneDropsItsGauges: after a partition moves away its gauges
// no longer show its last values; the other partitions' stay.
func TestPartitionGoneDropsItsGauges(t *testing.T) {
	m := New("a")
	for _, p := range []int32{1, 2} {
		m.BucketSize("b", p, 5, 50)
		m.Lag("in", p, 7)
		m.EventTime("b", "w", p, time.Unix(100, 0), true, time.Unix(90, 0))
	}
	m.PartitionGone(1)
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, "pheromone_") && strings.Contains(line, `partition="1"`) {
			t.Errorf("a gauge of the gone partition remains: %s", line)
		}
	}
	for _, want := range []string{`pheromone_bucket_objects{app="a",bucket="b",partition="2"} 5`, `pheromone_consumer_lag{app="a",partition="2",topic="in"} 7`,
		`pheromone_partition_idle{app="a",bucket="b",partition="2",trigger="w"} 1`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("missing %s", want)
		}
	}
}
