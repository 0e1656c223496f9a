package server

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pheromone-go/pheromone/engine"
)

// TestFileSinkAddedWithoutTheEngine: a sink of the file kind (a connector
// written against engine.SinkKind, wired here) gets exactly the rows a
// function emits to it, beside a Kafka sink fed by the same function.
func TestFileSinkAddedWithoutTheEngine(t *testing.T) {
	brokers := cluster(t)
	path := filepath.Join(t.TempDir(), "debug.jsonl")
	yaml := `
app: fs
sources:
  - {name: in, topic: in, partitions: 1, schema: [{name: id, type: int64}, {name: user, type: string}], bucket: in}
buckets: [{name: in}]
triggers: [{name: each, bucket: in, primitive: immediate, function: big}]
functions:
  - {name: big, kind: filter, expr: "id > 1", outputs: [out, debug]}
sinks:
  - {name: out, topic: out}
  - {name: debug, kind: file, options: {path: "` + path + `"}}
`
	n := startNode(t, yaml, brokers, engine.NewManualClock(time.Unix(0, 0)), t.TempDir())
	produce(t, brokers, "in", 0, `{"id":1,"user":"a"}`, `{"id":2,"user":"b"}`, `{"id":3,"user":"c"}`)
	want := []string{`{"id":2,"user":"b"}`, `{"id":3,"user":"c"}`}
	equalLines(t, "kafka sink", values(consume(t, brokers, "out", 2, 100*time.Millisecond)), want)
	waitFor(t, 10*time.Second, "the cycle committed", func() bool {
		return n.info.Node.Committed()[engine.TopicPartition{Topic: "in", Partition: 0}] == 3
	})
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	equalLines(t, "file sink", strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n"), want)
}
