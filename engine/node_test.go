package engine_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pheromone-go/pheromone/connectors/kafka"
	"github.com/pheromone-go/pheromone/engine"
	"github.com/pheromone-go/pheromone/engine/app"
	"github.com/pheromone-go/pheromone/engine/fn"
	"github.com/pheromone-go/pheromone/state"
	"github.com/pheromone-go/pheromone/state/pebblestore"
)

// These tests drive a Node directly, playing the source connector
// (Assign, Deliver, Revoke), with real Pebble state and a real producer
// writing to kfake over TCP.

const copyApp = `
app: copy
sources:
  - name: in
    topic: in
    partitions: 1
    schema: [{name: id, type: int64}]
    bucket: in
buckets: [{name: in}]
triggers: [{name: each, bucket: in, primitive: immediate, function: pass}]
functions: [{name: pass, kind: emit, outputs: [out]}]
sinks: [{name: out, topic: out, partitions: 1}]
`

type fixture struct {
	node    *engine.Node
	brokers []string
	dir     string
	stop    func()
}

// parseApp parses and validates an app file for a test.
func parseApp(t testing.TB, yaml string) *app.App {
	t.Helper()
	a, err := app.Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Validate(); err != nil {
		t.Fatal(err)
	}
	return a
}

// startBroker runs a one-broker kfake cluster holding the app's topics.
func startBroker(t testing.TB, a *app.App) []string {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	if err := kafka.EnsureTopics(context.Background(), kafka.Plain(c.ListenAddrs()...), a.Topics()); err != nil {
		t.Fatal(err)
	}
	return c.ListenAddrs()
}

// start runs a Node for app a with its state in dir and a producer to
// brokers; o supplies the optional settings. stop (also run at cleanup)
// stops it softly and closes the store, so dir can be reopened.
func start(t testing.TB, a *app.App, dir string, brokers []string, o engine.Options) *fixture {
	t.Helper()
	var st state.Store = o.Store // a store the caller gives is the caller's to close
	if st == nil {
		ps, err := pebblestore.Open(dir, pebblestore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		st = ps
	}
	owned := o.Store == nil
	prod, err := kafka.NewProducer(kafka.Plain(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	o.App, o.Store, o.Producer = a, st, prod
	if o.ChangelogTopic != "" && o.Writers == nil {
		o.Writers = func(int32) (engine.PartitionWriter, error) { return prod.Writer(), nil }
	}
	n, err := engine.New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	f := &fixture{node: n, brokers: brokers, dir: dir}
	stopped := false
	f.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("node: %v", err)
		}
		prod.Close()
		if owned {
			st.Close()
		}
	}
	t.Cleanup(f.stop)
	return f
}

func newFixture(t *testing.T, dir string, brokers []string, fns map[string]fn.Function, queue int) *fixture {
	t.Helper()
	a := parseApp(t, copyApp)
	if brokers == nil {
		brokers = startBroker(t, a)
	}
	return start(t, a, dir, brokers, engine.Options{Functions: fns, QueueDepth: queue, Executors: 2})
}

func records(from, to int) []engine.Record {
	var out []engine.Record
	for i := from; i < to; i++ {
		out = append(out, engine.Record{Offset: int64(i), Value: fmt.Appendf(nil, `{"id":%d}`, i)})
	}
	return out
}

var p0 = engine.TopicPartition{Topic: "in", Partition: 0}

func waitCommitted(t *testing.T, n *engine.Node, want int64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for n.Committed()[p0] != want {
		if time.Now().After(deadline) {
			t.Fatalf("committed offset %d, want %d", n.Committed()[p0], want)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func readAll(t *testing.T, brokers []string, topic string, want int) []string {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []string
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		fs := cl.PollFetches(ctx)
		cancel()
		got := 0
		fs.EachRecord(func(r *kgo.Record) { out = append(out, string(r.Value)); got++ })
		if len(out) >= want && got == 0 {
			break
		}
	}
	return out
}

// TestRedeliveryBelowCommittedIsSkipped pins that records the state already
// reflects are dropped when Kafka delivers them again (the group commit
// lags the state commit), so they are neither re-put nor re-emitted.
func TestRedeliveryBelowCommittedIsSkipped(t *testing.T) {
	f := newFixture(t, t.TempDir(), nil, nil, 0)
	if err := f.node.Assign([]engine.TopicPartition{p0}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := f.node.Deliver(ctx, "in", 0, records(0, 10), -1); err != nil {
		t.Fatal(err)
	}
	waitCommitted(t, f.node, 10)
	if err := f.node.Deliver(ctx, "in", 0, records(5, 15), -1); err != nil {
		t.Fatal(err)
	}
	waitCommitted(t, f.node, 15)
	out := readAll(t, f.brokers, "out", 15)
	if len(out) != 15 {
		t.Fatalf("%d outputs, want 15: %q", len(out), out)
	}
	for i, v := range out {
		if want := fmt.Sprintf(`{"id":%d}`, i); v != want {
			t.Fatalf("output %d = %s, want %s", i, v, want)
		}
	}
}

// TestRevokeLeavesStateAndOffsetsAgreeing pins that Revoke returns only
// after the task committed: the offset in Pebble is the one the node
// reports to the connector, and a new node on the same directory resumes
// there.
func TestRevokeLeavesStateAndOffsetsAgreeing(t *testing.T) {
	dir := t.TempDir()
	f := newFixture(t, dir, nil, nil, 0)
	if err := f.node.Assign([]engine.TopicPartition{p0}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		if err := f.node.Deliver(context.Background(), "in", 0, records(i*50, (i+1)*50), -1); err != nil {
			t.Fatal(err)
		}
	}
	f.node.Revoke([]engine.TopicPartition{p0})
	reported := f.node.Committed()[p0]
	if reported == 0 {
		t.Fatal("nothing committed before Revoke returned")
	}
	f.stop()
	st, err := pebblestore.Open(dir, pebblestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	v, err := st.Get(engine.OffsetKey("copy", "in", 0))
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	if stored := int64(binary.BigEndian.Uint64(v)); stored != reported {
		t.Fatalf("state holds offset %d, node reported %d", stored, reported)
	}
	g := newFixture(t, dir, f.brokers, nil, 0)
	if err := g.node.Assign([]engine.TopicPartition{p0}); err != nil {
		t.Fatal(err)
	}
	if off, ok := g.node.StartOffset(p0); !ok || off != reported {
		t.Fatalf("restarted node starts at %d (%v), want %d", off, ok, reported)
	}
	if got := readAll(t, f.brokers, "out", int(reported)); len(got) < int(reported) {
		t.Fatalf("%d outputs for %d committed inputs: acknowledged outputs were lost", len(got), reported)
	}
}

type blocking struct{ release chan struct{} }

func (b blocking) Invoke(ctx context.Context, in fn.Input, out fn.Output) error {
	select {
	case <-b.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	for _, r := range in.Records {
		r.Retain()
		if err := out.Emit(r); err != nil {
			return err
		}
	}
	return nil
}

// TestSlowFunctionBackpressure pins that a slow function makes Deliver
// block once the partition's bounded queue is full, instead of buffering
// without limit, and that everything flows once the function speeds up.
func TestSlowFunctionBackpressure(t *testing.T) {
	b := blocking{release: make(chan struct{})}
	f := newFixture(t, t.TempDir(), nil, map[string]fn.Function{"pass": b}, 2)
	if err := f.node.Assign([]engine.TopicPartition{p0}); err != nil {
		t.Fatal(err)
	}
	// One batch goes into the (blocked) function and two wait in the
	// queue: these three Delivers return. Then the queue is full and stays
	// full while the function is blocked, so the fourth must block until
	// its context ends (it can never get in, whatever the timing).
	const delivered = 3
	for i := 0; i < delivered; i++ {
		if err := f.node.Deliver(context.Background(), "in", 0, records(i*10, (i+1)*10), -1); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	err := f.node.Deliver(ctx, "in", 0, records(30, 40), -1)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a fourth batch was accepted while the function was blocked and the queue full: err %v", err)
	}
	close(b.release)
	waitCommitted(t, f.node, int64(delivered*10))
	if out := readAll(t, f.brokers, "out", delivered*10); len(out) != delivered*10 {
		t.Fatalf("%d outputs, want %d", len(out), delivered*10)
	}
}

const countApp = `
app: bounded
sources:
  - name: in
    topic: in
    partitions: 1
    schema: [{name: id, type: int64}]
    bucket: in
buckets: [{name: in, max_objects: 50000}]
triggers:
  - {name: each, bucket: in, primitive: immediate, function: nothing}
  - {name: thousands, bucket: in, primitive: by_batch_size, count: 1000, function: count}
functions:
  - {name: nothing, kind: filter, expr: "id < 0", outputs: [out]}
  - {name: count, kind: aggregate, aggregates: [{name: n, op: count}, {name: hi, op: max, column: id}], outputs: [out]}
sinks: [{name: out, topic: out, partitions: 1}]
`

// TestMillionObjectsLeaveNothingBehind feeds 1,000,000 objects through a
// bucket whose triggers consume them all: the bucket (bounded at 50,000
// objects, so it must be emptied as it goes) ends empty in memory and in
// Pebble, and every batch was emitted.
func TestMillionObjectsLeaveNothingBehind(t *testing.T) {
	const total, per = 1_000_000, 5_000
	a := parseApp(t, countApp)
	brokers := startBroker(t, a)
	dir := t.TempDir()
	f := start(t, a, dir, brokers, engine.Options{})
	n := f.node
	if err := n.Assign([]engine.TopicPartition{p0}); err != nil {
		t.Fatal(err)
	}
	for from := 0; from < total; from += per {
		recs := make([]engine.Record, per)
		for i := range recs {
			recs[i] = engine.Record{Offset: int64(from + i), Value: fmt.Appendf(nil, `{"id":%d}`, from+i)}
		}
		if err := n.Deliver(context.Background(), "in", 0, recs, -1); err != nil {
			t.Fatal(err)
		}
	}
	waitCommitted(t, n, total)
	f.stop()
	st, err := pebblestore.Open(dir, pebblestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	chunks := 0
	if err := st.Scan(engine.BucketChunkPrefix("bounded", "in", 0), func(k, v []byte) error { chunks++; return nil }); err != nil {
		t.Fatal(err)
	}
	if chunks != 0 {
		t.Errorf("%d chunks left in Pebble after every object was consumed", chunks)
	}
	out := readAll(t, brokers, "out", total/1000)
	if len(out) != total/1000 {
		t.Fatalf("%d batches emitted, want %d", len(out), total/1000)
	}
	if want := fmt.Sprintf(`{"n":1000,"hi":%d}`, total-1); out[len(out)-1] != want {
		t.Errorf("last batch %s, want %s", out[len(out)-1], want)
	}
}
