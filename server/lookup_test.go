package server

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pheromone-go/pheromone/connectors/kafka"
	"github.com/pheromone-go/pheromone/engine"
)

const lookupApp = `
app: ads
tables:
  - name: campaigns
    topic: ad-campaigns
    key: ad_id
    schema: [{name: ad_id, type: string}, {name: campaign_id, type: string}]
sources:
  - name: events
    topic: events
    partitions: 1
    schema: [{name: ad_id, type: string}, {name: event_type, type: string}]
    bucket: events
buckets: [{name: events}]
triggers: [{name: each, bucket: events, primitive: immediate, function: enrich}]
functions:
  - {name: enrich, kind: lookup, table: campaigns, on: ad_id, outputs: [enriched]}
sinks: [{name: enriched, topic: enriched}]
`

// TestLookupAgainstCompactedTopic: the table is read in full before the
// first event, events join with it (unmatched ones are dropped and
// counted), and a row added to the topic while the node runs is joined from
// then on.
func TestLookupAgainstCompactedTopic(t *testing.T) {
	brokers := cluster(t)
	if err := kafka.EnsureCompactedTopics(context.Background(), kafka.Plain(brokers...), map[string]int{"ad-campaigns": 1}); err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic("ad-campaigns"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	row := func(ad, campaign string) *kgo.Record {
		return &kgo.Record{Key: []byte(ad), Value: []byte(`{"ad_id":"` + ad + `","campaign_id":"` + campaign + `"}`)}
	}
	if err := cl.ProduceSync(context.Background(), row("a1", "c0"), row("a2", "c1"), row("a3", "c2"), row("a1", "c1")).FirstErr(); err != nil {
		t.Fatal(err)
	}
	n := startNode(t, lookupApp, brokers, engine.NewManualClock(time.Unix(0, 0)), t.TempDir())
	if got := n.info.Node.TableSize("campaigns"); got != 3 {
		t.Fatalf("table holds %d rows at start, want 3", got)
	}
	produce(t, brokers, "events", 0, `{"ad_id":"a1","event_type":"view"}`, `{"ad_id":"a3","event_type":"click"}`, `{"ad_id":"a9","event_type":"view"}`)
	equalLines(t, "joined", values(consume(t, brokers, "enriched", 2, 200*time.Millisecond)), []string{
		`{"ad_id":"a1","event_type":"view","campaign_id":"c1"}`,
		`{"ad_id":"a3","event_type":"click","campaign_id":"c2"}`,
	})
	// The unmatched event is counted.
	waitFor(t, 10*time.Second, "the miss counted", func() bool {
		return scrape(t, n.info.HTTPAddr, `pheromone_function_dropped_total{app="ads",function="enrich"}`) == "1"
	})
	if err := cl.ProduceSync(context.Background(), row("a9", "c3")).FirstErr(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "table update", func() bool { return n.info.Node.TableSize("campaigns") == 4 })
	produce(t, brokers, "events", 0, `{"ad_id":"a9","event_type":"view"}`)
	out := consume(t, brokers, "enriched", 3, 200*time.Millisecond)
	if len(out) != 3 || string(out[2].Value) != `{"ad_id":"a9","event_type":"view","campaign_id":"c3"}` {
		t.Fatalf("after update: %q", values(out))
	}
}

// TestLookupFromFileKeepUnmatched: a table from a JSON-lines file, with
// keep_unmatched (a left join).
func TestLookupFromFileKeepUnmatched(t *testing.T) {
	dir := t.TempDir()
	file := writeFile(t, dir, "countries.jsonl", "{\"code\":\"DE\",\"name\":\"Germany\"}\n{\"code\":\"FR\",\"name\":\"France\"}\n")
	yaml := `
app: geo
tables: [{name: countries, file: ` + file + `, key: code, schema: [{name: code, type: string}, {name: name, type: string}]}]
sources:
  - {name: users, topic: users, partitions: 1, schema: [{name: user, type: string}, {name: country, type: string}], bucket: users}
buckets: [{name: users}]
triggers: [{name: each, bucket: users, primitive: immediate, function: country_name}]
functions:
  - {name: country_name, kind: lookup, table: countries, on: country, table_columns: [name], keep_unmatched: true, outputs: [out]}
sinks: [{name: out, topic: out}]
`
	brokers := cluster(t)
	startNode(t, yaml, brokers, engine.NewManualClock(time.Unix(0, 0)), dir)
	produce(t, brokers, "users", 0, `{"user":"u1","country":"FR"}`, `{"user":"u2","country":"XX"}`, `{"user":"u3"}`)
	equalLines(t, "left join", values(consume(t, brokers, "out", 3, 200*time.Millisecond)), []string{
		`{"user":"u1","country":"FR","name":"France"}`,
		`{"user":"u2","country":"XX","name":null}`,
		`{"user":"u3","country":null,"name":null}`,
	})
}

// TestLookupIntoAnEmptyTable pins issue 11's YSB undercount: a node started
// before its table's topic had rows dropped every event as unmatched,
// without a trace. Now a lookup into an empty table fails (retried, then
// the input is dead-lettered with the reason), and joins once rows arrive.
func TestLookupIntoAnEmptyTable(t *testing.T) {
	brokers := cluster(t)
	if err := kafka.EnsureCompactedTopics(context.Background(), kafka.Plain(brokers...), map[string]int{"ad-campaigns": 1}); err != nil {
		t.Fatal(err)
	}
	clock := engine.NewManualClock(time.Unix(0, 0))
	n := startNode(t, lookupApp, brokers, clock, t.TempDir())
	produce(t, brokers, "events", 0, `{"ad_id":"a1","event_type":"view"}`)
	advanceUntil(t, clock, 10*time.Millisecond, "the empty-table lookup dead-lettered", func() bool {
		return scrape(t, n.info.HTTPAddr, `pheromone_dead_letters_total{app="ads",reason="function"}`) == "1"
	})
	dead := consume(t, brokers, "ads.dlq", 1, 100*time.Millisecond)
	if len(dead) != 1 || string(dead[0].Value) != `{"ad_id":"a1","event_type":"view"}` || !strings.Contains(header(dead[0], engine.HeaderError), `table "campaigns"`) {
		t.Fatalf("dead letters: %q", values(dead))
	}
	produce(t, brokers, "ad-campaigns", 0, `{"ad_id":"a1","campaign_id":"c1"}`)
	waitFor(t, 10*time.Second, "the table row", func() bool { return n.info.Node.TableSize("campaigns") == 1 })
	produce(t, brokers, "events", 0, `{"ad_id":"a1","event_type":"click"}`)
	equalLines(t, "joined", values(consume(t, brokers, "enriched", 1, 100*time.Millisecond)), []string{
		`{"ad_id":"a1","event_type":"click","campaign_id":"c1"}`,
	})
}
