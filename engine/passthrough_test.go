package engine_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pheromone-go/pheromone/engine"
)

const passApp = `
app: pass
sources: [{name: in, topic: in, partitions: 1, schema: [{name: id, type: int64}, {name: name, type: string}], bucket: in}]
buckets: [{name: in}]
triggers:
  - {name: each, bucket: in, primitive: immediate, function: big}
  - {name: each_keyed, bucket: in, primitive: immediate, function: big_keyed}
  - {name: each_routed, bucket: in, primitive: immediate, function: split}
functions:
  - {name: big, kind: filter, expr: "id > 1", outputs: [out]}
  - {name: big_keyed, kind: filter, expr: "id > 1", outputs: [keyed]}
  - {name: split, kind: route, routes: [{when: "id > 2", to: high}], default: low, outputs: [high, low]}
sinks:
  - {name: out, topic: out, partitions: 1}
  - {name: keyed, topic: keyed, partitions: 1, key: name}
  - {name: high, topic: high, partitions: 1}
  - {name: low, topic: low, partitions: 1}
`

// TestFilterPassesRecordsThrough: a filter whose sinks take JSON sends the
// kept records as they came — the same bytes (fields
// outside the schema and spacing included), key and headers — while a
// record that does not decode goes to the dead-letter topic without
// shifting which bytes go with which row; a sink with a key column keys
// them by the row's value of it. A route sends each record as it came to
// the one output its row goes to.
func TestFilterPassesRecordsThrough(t *testing.T) {
	a := parseApp(t, passApp)
	brokers := startBroker(t, a)
	f := start(t, a, t.TempDir(), brokers, engine.Options{})
	if err := f.node.Assign([]engine.TopicPartition{p0}); err != nil {
		t.Fatal(err)
	}
	recs := []engine.Record{
		{Offset: 0, Key: []byte("k1"), Value: []byte(`{ "id": 2, "name": "a", "extra": [1, 2] }`)},
		{Offset: 1, Value: []byte(`{"id":`)},
		{Offset: 2, Value: []byte(`{"id":1,"name":"b"}`)},
		{Offset: 3, Value: []byte(`{"name":"c","id":3}`), Headers: []engine.Header{{Key: "trace", Value: []byte("t-3")}}},
	}
	if err := f.node.Deliver(context.Background(), "in", 0, recs, -1); err != nil {
		t.Fatal(err)
	}
	waitCommitted(t, f.node, 4)
	got := readShown(t, brokers, "out", 2)
	want := []string{
		`key=k1 value={ "id": 2, "name": "a", "extra": [1, 2] } headers=[]`,
		`key= value={"name":"c","id":3} headers=[trace=t-3]`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("passed through:\n got %q\nwant %q", got, want)
	}
	keyed := readShown(t, brokers, "keyed", 2)
	want = []string{`key=a value={ "id": 2, "name": "a", "extra": [1, 2] } headers=[]`, `key=c value={"name":"c","id":3} headers=[trace=t-3]`}
	if strings.Join(keyed, "\n") != strings.Join(want, "\n") {
		t.Errorf("a sink with a key column:\n got %q\nwant %q", keyed, want)
	}
	high, low := readShown(t, brokers, "high", 1), readShown(t, brokers, "low", 2)
	if want := `key= value={"name":"c","id":3} headers=[trace=t-3]`; len(high) != 1 || high[0] != want {
		t.Errorf("routed high:\n got %q\nwant %q", high, want)
	}
	want = []string{`key=k1 value={ "id": 2, "name": "a", "extra": [1, 2] } headers=[]`, `key= value={"id":1,"name":"b"} headers=[]`}
	if strings.Join(low, "\n") != strings.Join(want, "\n") {
		t.Errorf("routed low:\n got %q\nwant %q", low, want)
	}
	if dead := readAll(t, brokers, a.Kafka.DLQTopic, 1); len(dead) != 1 {
		t.Errorf("dead letters: %q", dead)
	}
}

func readShown(t *testing.T, brokers []string, topic string, want int) []string {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []string
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for len(out) < want && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			var hs []string
			for _, h := range r.Headers {
				hs = append(hs, h.Key+"="+string(h.Value))
			}
			out = append(out, fmt.Sprintf("key=%s value=%s headers=[%s]", r.Key, r.Value, strings.Join(hs, " ")))
		})
	}
	return out
}
