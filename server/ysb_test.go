package server

import (
	"context"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pheromone-go/pheromone/connectors/generator"
	"github.com/pheromone-go/pheromone/connectors/kafka"
	"github.com/pheromone-go/pheromone/engine"
)

// TestYSBMatchesGenerator runs examples/ysb on a seeded stream of 30,000
// events (30 s of event time at 1000/s) and requires the campaign-counts
// topic to hold exactly the per-campaign, per-window view counts the
// generator computed, and the table to hold the latest window per campaign.
func TestYSBMatchesGenerator(t *testing.T) {
	raw, err := os.ReadFile("../examples/ysb/app.yaml")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	gen := generator.NewYSB(42, start, 1000)
	brokers := cluster(t)
	ctx := context.Background()
	if err := kafka.EnsureCompactedTopics(ctx, kafka.Plain(brokers...), map[string]int{"ysb-campaigns": 1}); err != nil {
		t.Fatal(err)
	}
	if err := kafka.EnsureTopics(ctx, kafka.Plain(brokers...), map[string]int{"ad-events": 4}); err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var recs []*kgo.Record
	gen.Campaigns(func(k, v []byte) { recs = append(recs, &kgo.Record{Topic: "ysb-campaigns", Key: k, Value: v}) })
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	clock := engine.NewManualClock(start)
	n := startNode(t, string(raw), brokers, clock, t.TempDir())
	recs = recs[:0]
	for i := 0; i < 30_000; i++ {
		v, k := gen.Next(nil)
		recs = append(recs, &kgo.Record{Topic: "ad-events", Key: k, Value: v})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	var total int64
	waitFor(t, 30*time.Second, "all events committed", func() bool {
		total = 0
		for tp, off := range n.info.Node.Committed() {
			if tp.Topic == "ad-events" {
				total += off
			}
		}
		return total == 30_000
	})
	// The input stopped: after the idle timeout the watermarks follow the
	// clock and the last windows close.
	clock.Advance(10 * time.Second)
	want := gen.ExpectedLines()
	sort.Strings(want)
	got := consume(t, brokers, "campaign-counts", len(want), 300*time.Millisecond)
	equalLines(t, "campaign counts", sorted(values(got)), want)
	if len(want) < 250 {
		t.Fatalf("only %d expected windows: the run is too small to mean anything", len(want))
	}
	// The table keeps each campaign's latest window.
	rows, err := n.info.Node.QueryTable("latest_by_campaign", "")
	if err != nil {
		t.Fatal(err)
	}
	latest := map[string]string{}
	for _, w := range want {
		c := w[len(`{"campaign_id":"`):strings.Index(w, `","window_start"`)]
		if w > latest[c] { // same prefix per campaign: the later window sorts last
			latest[c] = w
		}
	}
	if len(rows) != len(latest) {
		t.Fatalf("table has %d campaigns, want %d", len(rows), len(latest))
	}
	for _, r := range rows {
		if string(r.Row) != latest[r.Key] {
			t.Errorf("table %s = %s, want %s", r.Key, r.Row, latest[r.Key])
		}
	}
}
