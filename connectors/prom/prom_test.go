package prom

import (
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pheromone-go/pheromone/engine"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
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

// TestMetricsPassAStrictParser: with every metric set, /metrics parses
// with the Prometheus text parser and passes promlint (naming, units,
// help); the new signals are there with their values.
func TestMetricsPassAStrictParser(t *testing.T) {
	m := New("a")
	m.RecordsIn("s", 3)
	m.RecordsOut("k", 2)
	m.DecodeErrors("s", 1)
	m.DeadLetters("decode", 1)
	m.Firings("t", 4)
	m.TriggerDropped("t", 1)
	m.Invocation("f", time.Millisecond, nil)
	m.Invocation("f", time.Millisecond, errors.New("x"))
	m.FunctionDropped("f", 1)
	m.BucketSize("b", 0, 5, 50)
	m.Lag("in", 0, 7)
	m.Restore(0, 100, 0)
	m.EventTime("b", "t", 0, time.Unix(100, 0), false, time.Unix(90, 0))
	m.OffsetLoss("in", 0)
	m.Cycle(0, engine.CycleStats{BlockedExecutor: 2 * time.Second, BlockedCommit: time.Second, InboxFill: 0.5, ChangelogBytes: 4096})
	m.Commit(3*time.Millisecond, true)
	m.Transaction(20 * time.Millisecond)
	m.Late("t", 6)
	m.Sessions(2)
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	// The legacy (strictest) name rules: what every Prometheus accepts.
	p := expfmt.NewTextParser(model.LegacyValidation)
	if _, err := p.TextToMetricFamilies(strings.NewReader(body)); err != nil {
		t.Fatalf("the text parser refuses /metrics: %v", err)
	}
	problems, err := promlint.New(strings.NewReader(body)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, pr := range problems {
		if strings.HasPrefix(pr.Metric, "pheromone_") {
			t.Errorf("promlint: %s: %s", pr.Metric, pr.Text)
		}
	}
	for _, want := range []string{
		`pheromone_task_blocked_seconds_total{app="a",on="executor",partition="0"} 2`,
		`pheromone_task_blocked_seconds_total{app="a",on="commit",partition="0"} 1`,
		`pheromone_task_inbox_fill_ratio{app="a",partition="0"} 0.5`,
		`pheromone_changelog_written_bytes_total{app="a"} 4096`,
		`pheromone_commit_duration_seconds_count{app="a",synced="true"} 1`,
		`pheromone_transaction_duration_seconds_count{app="a"} 1`,
		`pheromone_trigger_late_total{app="a",trigger="t"} 6`,
		`pheromone_invocation_sessions{app="a"} 2`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("missing %s", want)
		}
	}
}
