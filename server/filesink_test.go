package server

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pheromone-go/pheromone/engine"
	"github.com/pheromone-go/pheromone/engine/app"
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

// memSink is a sink kind written in a test: rows kept in memory.
type memSink struct {
	mu   sync.Mutex
	rows []string
}

func (m *memSink) Open(*app.Sink, int32) (engine.SinkWriter, error) { return m, nil }
func (m *memSink) Write(rows []engine.SinkRow, done func(error)) {
	m.mu.Lock()
	for _, r := range rows {
		m.rows = append(m.rows, string(r.Value))
	}
	m.mu.Unlock()
	done(nil)
}
func (m *memSink) Close() error { return nil }

// TestSinkKindAddedByAnOption: a binary adds a sink kind of its own with
// server.SinkKind — nothing in server or engine names it — and the same
// option makes the app file's validation accept it.
func TestSinkKindAddedByAnOption(t *testing.T) {
	brokers := cluster(t)
	mem := &memSink{}
	kind := SinkKind(app.SinkKind{Name: "memory", Options: []app.Option{{Name: "label"}}}, mem)
	a, err := app.Parse([]byte(`
app: mem
sources: [{name: in, topic: in, partitions: 1, schema: [{name: id, type: int64}], bucket: in}]
buckets: [{name: in}]
triggers: [{name: each, bucket: in, primitive: immediate, function: pass}]
functions: [{name: pass, kind: emit, outputs: [kept]}]
sinks: [{name: kept, kind: memory, options: {label: x}}]
`))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.ValidateWith(Connectors()); err == nil || !strings.Contains(err.Error(), `unknown sink kind "memory"`) {
		t.Fatalf("without the option: %v", err)
	}
	if err := a.ValidateWith(Connectors(kind)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	started := make(chan Info, 1)
	go func() {
		done <- Run(ctx, a, DataDir(t.TempDir()), Brokers(brokers...), kind, OnStarted(func(i Info) { started <- i }))
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("node: %v", err)
		}
	}()
	select {
	case <-started:
	case err := <-done:
		done <- err
		t.Fatalf("node did not start: %v", err)
	}
	produce(t, brokers, "in", 0, `{"id":1}`, `{"id":2}`)
	waitFor(t, 20*time.Second, "both rows in the memory sink", func() bool {
		mem.mu.Lock()
		defer mem.mu.Unlock()
		return len(mem.rows) == 2
	})
	mem.mu.Lock()
	defer mem.mu.Unlock()
	equalLines(t, "memory sink", mem.rows, []string{`{"id":1}`, `{"id":2}`})
}
