package server

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pheromone-go/pheromone/engine"
)

const headerSessionApp = `
app: hdr
sources:
  - name: parts
    topic: parts
    partitions: 1
    schema: [{name: part, type: string}, {name: v, type: int64}]
    key: part
    session_header: x-request
    session_column: request
    bucket: parts
buckets: [{name: parts}]
triggers: [{name: both, bucket: parts, primitive: by_set, keys: [left, right], function: pair}]
functions: [{name: pair, kind: emit, outputs: [pairs]}]
sinks: [{name: pairs, topic: pairs}]
`

// TestSessionFromKafkaHeader: the session id comes from a record header; it
// becomes the request column and keeps the two requests' sets apart.
func TestSessionFromKafkaHeader(t *testing.T) {
	brokers := cluster(t)
	startNode(t, headerSessionApp, brokers, engine.NewManualClock(time.Unix(0, 0)), t.TempDir())
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	rec := func(req, v string) *kgo.Record {
		return &kgo.Record{Topic: "parts", Value: []byte(v), Headers: []kgo.RecordHeader{{Key: "x-request", Value: []byte(req)}}}
	}
	if err := cl.ProduceSync(context.Background(),
		rec("r1", `{"part":"left","v":1}`),
		rec("r2", `{"part":"right","v":2}`),
		rec("r2", `{"part":"left","v":3}`),
		rec("r1", `{"part":"right","v":4}`),
	).FirstErr(); err != nil {
		t.Fatal(err)
	}
	equalLines(t, "pairs per request header", values(consume(t, brokers, "pairs", 4, 200*time.Millisecond)), []string{
		`{"part":"left","v":3,"request":"r2"}`,
		`{"part":"right","v":2,"request":"r2"}`,
		`{"part":"left","v":1,"request":"r1"}`,
		`{"part":"right","v":4,"request":"r1"}`,
	})
}
