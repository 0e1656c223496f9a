package engine_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pheromone-go/pheromone/connectors/kafka"
	"github.com/pheromone-go/pheromone/engine"
	"github.com/pheromone-go/pheromone/engine/app"
	"github.com/pheromone-go/pheromone/state"
	"github.com/pheromone-go/pheromone/state/pebblestore"
)

const fivesApp = `
app: fives
sources:
  - name: in
    topic: in
    partitions: 1
    schema: [{name: id, type: int64}]
    bucket: in
buckets: [{name: in}]
triggers: [{name: five, bucket: in, primitive: by_batch_size, count: 5, function: batch}]
functions:
  - name: batch
    kind: aggregate
    aggregates: [{name: lo, op: min, column: id}, {name: hi, op: max, column: id}]
    outputs: [out]
sinks: [{name: out, topic: out, partitions: 1}]
`

// changelogBroker starts a broker with the app's topics and changelog and
// returns the node options that write and restore it.
func changelogBroker(t *testing.T, a *app.App) ([]string, engine.Options) {
	t.Helper()
	brokers := startBroker(t, a)
	if err := kafka.EnsureCompactedTopics(context.Background(), kafka.Plain(brokers...), a.CompactedTopics()); err != nil {
		t.Fatal(err)
	}
	return brokers, engine.Options{ChangelogTopic: a.Kafka.ChangelogTopic,
		ChangelogReader: &kafka.ChangelogReader{Conn: kafka.Plain(brokers...), Topic: a.Kafka.ChangelogTopic}}
}

// dump returns every state key of the app in dir except the local
// changelog checkpoint (which differs between nodes by design).
func dump(t *testing.T, dir string) map[string]string {
	t.Helper()
	st, err := pebblestore.Open(dir, pebblestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	out := map[string]string{}
	if err := st.Scan([]byte("a/fives/"), func(k, v []byte) error {
		if !bytes.HasPrefix(k, []byte("a/fives/k/")) {
			out[string(k)] = string(v)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestRestoreDropsUnfinishedCycle pins the at-least-once changelog
// protocol: a node that died in the middle of writing a cycle's changes
// leaves them in the changelog without the cycle's marker. A node that
// restores the partition must not apply them (here: a bogus chunk and a
// corrupt trigger state), must continue with exactly the state of the last
// finished cycle (the next batch holds ids 10..14), and its first commit
// must overwrite those keys in the changelog, so a third node restoring
// later gets exactly the second node's state.
func TestRestoreDropsUnfinishedCycle(t *testing.T) {
	a := parseApp(t, fivesApp)
	brokers, o := changelogBroker(t, a)
	ctx := context.Background()
	opts := func() engine.Options { return o }
	run := func(dir string, from, to int) {
		t.Helper()
		f := start(t, a, dir, brokers, opts())
		if err := f.node.Assign([]engine.TopicPartition{p0}); err != nil {
			t.Fatal(err)
		}
		if err := f.node.Deliver(ctx, "in", 0, records(from, to), -1); err != nil {
			t.Fatal(err)
		}
		waitCommitted(t, f.node, int64(to))
		f.stop()
	}
	run(t.TempDir(), 0, 12) // fires [0,4] and [5,9]; 10 and 11 pending

	// The unfinished cycle of a node that died mid-write.
	chunk := append(engine.BucketChunkPrefix("fives", "in", 0), binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, 12), 99)...)
	trig := engine.TriggerKey("fives", "in", 0, "five")
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(ctx,
		&kgo.Record{Topic: a.Kafka.ChangelogTopic, Partition: 0, Key: chunk, Value: []byte("sgarbage")},
		&kgo.Record{Topic: a.Kafka.ChangelogTopic, Partition: 0, Key: trig, Value: []byte("s\xff\xff\xff")},
	).FirstErr(); err != nil {
		t.Fatal(err)
	}
	cl.Close()

	dirB, dirC := t.TempDir(), t.TempDir()
	run(dirB, 12, 15) // restores, then 12..14 complete the batch [10,14]
	out := readAll(t, brokers, "out", 3)
	want := []string{`{"lo":0,"hi":4}`, `{"lo":5,"hi":9}`, `{"lo":10,"hi":14}`}
	if fmt.Sprint(out) != fmt.Sprint(want) {
		t.Fatalf("batches %q, want %q", out, want)
	}
	b := dump(t, dirB)
	if _, ok := b[string(chunk)]; ok {
		t.Errorf("the unfinished cycle's chunk was restored")
	}

	// A third node restores B's state exactly: the repair overwrote the
	// unfinished cycle's keys in the changelog.
	f := start(t, a, dirC, brokers, opts())
	if err := f.node.Assign([]engine.TopicPartition{p0}); err != nil {
		t.Fatal(err)
	}
	f.stop()
	c := dump(t, dirC)
	if fmt.Sprint(c) != fmt.Sprint(b) {
		t.Errorf("restored state differs from the node that wrote it:\n got %q\nwant %q", c, b)
	}
	st, _ := pebblestore.Open(dirC, pebblestore.Options{})
	defer st.Close()
	if _, err := st.Get(chunk); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("unfinished chunk key in the third node's state: %v", err)
	}
}

// TestLargePutSplitIntoChunks pins that a put larger than a chunk's bound
// is stored as several chunks, each a changelog record under the broker's
// 1 MB message limit, and that a node restoring them (fresh data dir)
// fires exactly the batch an uninterrupted run would.
func TestLargePutSplitIntoChunks(t *testing.T) {
	a := parseApp(t, `
app: fives
sources:
  - name: in
    topic: in
    partitions: 1
    schema: [{name: id, type: int64}, {name: pad, type: string}]
    bucket: in
buckets: [{name: in}]
triggers: [{name: five, bucket: in, primitive: by_batch_size, count: 6000, function: batch}]
functions:
  - name: batch
    kind: aggregate
    aggregates: [{name: n, op: count}, {name: lo, op: min, column: id}, {name: hi, op: max, column: id}, {name: pads, op: count_distinct, column: pad}]
    outputs: [out]
sinks: [{name: out, topic: out, partitions: 1}]
`)
	brokers, opts := changelogBroker(t, a)
	ctx := context.Background()
	recs := func(from, to int) []engine.Record {
		var out []engine.Record
		for i := from; i < to; i++ {
			out = append(out, engine.Record{Offset: int64(i), Value: fmt.Appendf(nil, `{"id":%d,"pad":"%0400d"}`, i, i)})
		}
		return out
	}
	f := start(t, a, t.TempDir(), brokers, opts)
	if err := f.node.Assign([]engine.TopicPartition{p0}); err != nil {
		t.Fatal(err)
	}
	if err := f.node.Deliver(ctx, "in", 0, recs(0, 5000), -1); err != nil { // ~2.5 MB in one put
		t.Fatal(err)
	}
	waitCommitted(t, f.node, 5000)
	f.stop()

	g := start(t, a, t.TempDir(), brokers, opts)
	if err := g.node.Assign([]engine.TopicPartition{p0}); err != nil {
		t.Fatal(err)
	}
	if err := g.node.Deliver(ctx, "in", 0, recs(5000, 6000), -1); err != nil {
		t.Fatal(err)
	}
	waitCommitted(t, g.node, 6000)
	out := readAll(t, brokers, "out", 1)
	if want := `{"n":6000,"lo":0,"hi":5999,"pads":6000}`; len(out) != 1 || out[0] != want {
		t.Fatalf("batch %q, want %s", out, want)
	}
}

// TestLargeTriggerStateIsFragmented pins that a state value larger than a
// broker message (here a by_set holding 60,000 open sessions) reaches the
// changelog as fragments and a node restoring the partition reassembles
// it: completing one session on the restored node fires exactly it.
func TestLargeTriggerStateIsFragmented(t *testing.T) {
	a := parseApp(t, `
app: sets
sources:
  - name: in
    topic: in
    partitions: 1
    schema: [{name: session, type: string}, {name: key, type: string}]
    key: key
    bucket: in
buckets: [{name: in, session: session}]
triggers: [{name: pair, bucket: in, primitive: by_set, keys: [a, b], function: pairs}]
functions:
  - name: pairs
    kind: aggregate
    group_by: [session]
    aggregates: [{name: n, op: count}]
    outputs: [out]
sinks: [{name: out, topic: out, partitions: 1}]
`)
	brokers, opts := changelogBroker(t, a)
	ctx := context.Background()
	const sessions = 60000
	var recs []engine.Record
	for i := 0; i < sessions; i++ {
		recs = append(recs, engine.Record{Offset: int64(i), Value: fmt.Appendf(nil, `{"session":"s%05d","key":"a"}`, i)})
	}
	dirA := t.TempDir()
	f := start(t, a, dirA, brokers, opts)
	if err := f.node.Assign([]engine.TopicPartition{p0}); err != nil {
		t.Fatal(err)
	}
	if err := f.node.Deliver(ctx, "in", 0, recs, -1); err != nil {
		t.Fatal(err)
	}
	waitCommitted(t, f.node, sessions)
	f.stop()
	st, err := pebblestore.Open(dirA, pebblestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	v, err := st.Get(engine.TriggerKey("sets", "in", 0, "pair"))
	st.Close()
	if err != nil || len(v) < 1<<20 {
		t.Fatalf("trigger state is %d bytes (%v); the test needs one over the broker's 1 MB limit", len(v), err)
	}

	g := start(t, a, t.TempDir(), brokers, opts)
	if err := g.node.Assign([]engine.TopicPartition{p0}); err != nil {
		t.Fatal(err)
	}
	if err := g.node.Deliver(ctx, "in", 0, []engine.Record{{Offset: sessions, Value: []byte(`{"session":"s01234","key":"b"}`)}}, -1); err != nil {
		t.Fatal(err)
	}
	waitCommitted(t, g.node, sessions+1)
	out := readAll(t, brokers, "out", 1)
	if want := `{"session":"s01234","n":2}`; len(out) != 1 || out[0] != want {
		t.Fatalf("fired %q, want %s", out, want)
	}
}
