package engine_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pheromone-go/pheromone/connectors/kafka"
	"github.com/pheromone-go/pheromone/engine"
)

// failOnce is a fault injector around the real at-least-once writer: the
// first write of the record whose value is `value` fails, as a broker that
// refuses or loses a record would make it fail.
type failOnce struct {
	engine.PartitionWriter
	value  string
	match  func(*engine.OutRecord) bool // instead of value, when set
	mu     *sync.Mutex
	failed *bool
}

func (w failOnce) Produce(r *engine.OutRecord, done func(int64, error)) {
	w.mu.Lock()
	hit := string(r.Value) == w.value
	if w.match != nil {
		hit = w.match(r)
	}
	fail := !*w.failed && hit
	if fail {
		*w.failed = true
	}
	w.mu.Unlock()
	if fail {
		done(-1, errors.New("injected: record not acknowledged"))
		return
	}
	w.PartitionWriter.Produce(r, done)
}

// TestFailedOutputNeverPassesTheOffsets pins issue 11's data loss: a cycle
// whose output was not acknowledged was still written whole to the
// changelog, so the restore that followed the failure applied it and the
// input was skipped. Now the cycle is not committed anywhere, the node
// keeps running, the partition restarts from its last commit (the source
// rewinds), and every input reaches the output.
func TestFailedOutputNeverPassesTheOffsets(t *testing.T) {
	a := parseApp(t, fivesApp)
	brokers, o := changelogBroker(t, a)
	prod, err := kafka.NewProducer(kafka.Plain(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	var mu sync.Mutex
	failed := false
	o.Executors = 2
	o.Writers = func(int32) (engine.PartitionWriter, error) {
		return failOnce{PartitionWriter: prod.Writer(), value: `{"lo":5,"hi":9}`, mu: &mu, failed: &failed}, nil
	}
	f := start(t, a, t.TempDir(), brokers, o)
	if err := f.node.Assign([]engine.TopicPartition{p0}); err != nil {
		t.Fatal(err)
	}
	deliverInFives(t, f.node, 20)
	mu.Lock()
	if !failed {
		t.Fatal("the fault was never injected")
	}
	mu.Unlock()
	out := readAll(t, f.brokers, "out", 4)
	slices.Sort(out)
	out = slices.Compact(out)
	var want []string
	for lo := 0; lo < 20; lo += 5 {
		want = append(want, fmt.Sprintf(`{"lo":%d,"hi":%d}`, lo, lo+4))
	}
	slices.Sort(want)
	if !slices.Equal(out, want) {
		t.Fatalf("outputs %q, want every batch %q", out, want)
	}
}

// TestOffsetLossIsNeverSilent pins issue 11's silent skip: the broker lost
// its data (the log end fell behind the state's offset) and the node
// skipped new records until the log reached its old offsets, lag 0. Now,
// with on_offset_loss: fail (the default) the partition stops with a clear
// error and the node is not ready; with earliest it resumes at the log
// start (and latest at its end), keeping its state, the new offsets
// committed and the source rewound there.
func TestOffsetLossIsNeverSilent(t *testing.T) {
	for _, c := range []struct {
		policy string
		look   engine.LogRange
		resume int64
	}{
		{"fail", engine.LogRange{Start: 0, End: 3}, -1},
		{"earliest", engine.LogRange{Start: 0, End: 3}, 0},
		{"latest", engine.LogRange{Start: 0, End: 3}, 3},
		{"earliest", engine.LogRange{Start: 20, End: 25}, 20}, // retention passed the offset
	} {
		t.Run(fmt.Sprint(c.policy, c.look), func(t *testing.T) {
			yaml := strings.Replace(copyApp, "app: copy\n", "app: copy\nkafka: {on_offset_loss: "+c.policy+"}\n", 1)
			a := parseApp(t, yaml)
			f := start(t, a, t.TempDir(), startBroker(t, a), engine.Options{Executors: 2})
			if err := f.node.Assign([]engine.TopicPartition{p0}); err != nil {
				t.Fatal(err)
			}
			if err := f.node.Deliver(context.Background(), "in", 0, records(0, 10), 10); err != nil {
				t.Fatal(err)
			}
			waitCommitted(t, f.node, 10)
			f.node.ObserveLogEnds(map[engine.TopicPartition]engine.LogRange{p0: c.look}, f.node.StartLook())
			deadline := time.Now().Add(10 * time.Second)
			if c.resume < 0 {
				for len(f.node.Stopped()) == 0 {
					if time.Now().After(deadline) {
						t.Fatal("the partition did not stop")
					}
					time.Sleep(2 * time.Millisecond)
				}
				why := f.node.Stopped()[0]
				if !strings.Contains(why, "resumes at offset 10 but the log holds [0, 3)") || f.node.Ready() {
					t.Errorf("stopped: %q, ready %v", why, f.node.Ready())
				}
				return
			}
			var rw map[engine.TopicPartition]int64
			for rw == nil {
				if time.Now().After(deadline) {
					t.Fatal("no rewind")
				}
				rw = f.node.TakeRewinds()
				time.Sleep(2 * time.Millisecond)
			}
			if rw[p0] != c.resume {
				t.Errorf("rewound to %d, want %d", rw[p0], c.resume)
			}
			waitCommitted(t, f.node, c.resume)
			// The new log's records are processed from there.
			if err := f.node.Deliver(context.Background(), "in", 0, records(int(c.resume), int(c.resume)+2), c.resume+2); err != nil {
				t.Fatal(err)
			}
			waitCommitted(t, f.node, c.resume+2)
			if len(f.node.Stopped()) != 0 {
				t.Errorf("stopped: %v", f.node.Stopped())
			}
		})
	}
}

const repartApp = `
app: rp
sources:
  - name: in
    topic: in
    partitions: 2
    schema: [{name: id, type: int64}, {name: k, type: string}, {name: pad, type: string}]
    bucket: in
buckets:
  - {name: in}
  - {name: by_k, partition_by: k}
triggers:
  - {name: each, bucket: in, primitive: immediate, function: rekey}
  - {name: each_k, bucket: by_k, primitive: immediate, function: out}
functions:
  - {name: rekey, kind: emit, outputs: [by_k]}
  - {name: out, kind: emit, outputs: [sink]}
sinks: [{name: sink, topic: out}]
`

// TestOversizeRepartitionRowIsDeadLettered: a row bound for another
// partition that the repartition topic would refuse goes to the
// dead-letter topic with reason too_large; the rows beside it travel on.
func TestOversizeRepartitionRowIsDeadLettered(t *testing.T) {
	a := parseApp(t, repartApp)
	brokers := startBroker(t, a)
	f := start(t, a, t.TempDir(), brokers, engine.Options{Executors: 2,
		RecordLimits: map[string]int{a.RepartitionTopic("by_k"): 200}})
	tps := []engine.TopicPartition{{Topic: "in", Partition: 0}, {Topic: "in", Partition: 1},
		{Topic: a.RepartitionTopic("by_k"), Partition: 0}, {Topic: a.RepartitionTopic("by_k"), Partition: 1}}
	if err := f.node.Assign(tps); err != nil {
		t.Fatal(err)
	}
	// Keys that live on partition 1, put on partition 0: they travel.
	var keys []string
	for i := 0; len(keys) < 2; i++ {
		if k := fmt.Sprint("k", i); engine.PartitionOf([]byte(k), 2) == 1 {
			keys = append(keys, k)
		}
	}
	recs := []engine.Record{
		{Offset: 0, Value: []byte(fmt.Sprintf(`{"id":1,"k":%q,"pad":"small"}`, keys[0]))},
		{Offset: 1, Value: []byte(fmt.Sprintf(`{"id":2,"k":%q,"pad":%q}`, keys[1], strings.Repeat("x", 500)))},
	}
	if err := f.node.Deliver(context.Background(), "in", 0, recs, -1); err != nil {
		t.Fatal(err)
	}
	dead := readAll(t, brokers, a.Kafka.DLQTopic, 1)
	if len(dead) != 1 || !strings.Contains(dead[0], `"id":2`) {
		t.Fatalf("dead letters %q, want the oversize row", dead)
	}
	// The small row was repartitioned: deliver partition 1's repartition
	// records as the source would, and it comes out.
	rp := readRecords(t, brokers, a.RepartitionTopic("by_k"), 1)
	if err := f.node.Deliver(context.Background(), a.RepartitionTopic("by_k"), 1, rp, -1); err != nil {
		t.Fatal(err)
	}
	if out := readAll(t, brokers, "out", 1); len(out) != 1 || !strings.Contains(out[0], `"id":1`) {
		t.Fatalf("outputs %q, want the small row", out)
	}
}

// readRecords reads want records of partition part of topic as the source
// would deliver them.
func readRecords(t *testing.T, brokers []string, topic string, part int32) []engine.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{
		topic: {part: kgo.NewOffset().AtStart()}}), kgo.FetchMaxWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []engine.Record
	deadline := time.Now().Add(10 * time.Second)
	for len(out) == 0 && time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			rec := engine.Record{Key: r.Key, Value: r.Value, Offset: r.Offset}
			for _, h := range r.Headers {
				rec.Headers = append(rec.Headers, engine.Header{Key: h.Key, Value: h.Value})
			}
			out = append(out, rec)
		})
		cancel()
	}
	return out
}

// TestFailedMarkerLeavesTheCycleUnfinished kills a cycle between its
// output's ack and its changelog marker: the marker of the third cycle is
// not acknowledged. The cycle is committed nowhere, the partition restarts
// and repeats it, and the changelog ends up describing exactly the live
// state: a node restoring it from scratch holds the same keys and values.
func TestFailedMarkerLeavesTheCycleUnfinished(t *testing.T) {
	a := parseApp(t, fivesApp)
	brokers, o := changelogBroker(t, a)
	prod, err := kafka.NewProducer(kafka.Plain(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	var mu sync.Mutex
	failed := false
	markers := 0
	o.Writers = func(int32) (engine.PartitionWriter, error) {
		return failOnce{PartitionWriter: prod.Writer(), mu: &mu, failed: &failed, match: func(r *engine.OutRecord) bool {
			if r.Topic != a.Kafka.ChangelogTopic || !strings.Contains(string(r.Key), "/x/") {
				return false
			}
			markers++
			return markers == 3
		}}, nil
	}
	dirA := t.TempDir()
	f := start(t, a, dirA, brokers, o)
	if err := f.node.Assign([]engine.TopicPartition{p0}); err != nil {
		t.Fatal(err)
	}
	deliverInFives(t, f.node, 20)
	mu.Lock()
	if !failed {
		t.Fatal("the marker's failure was never injected")
	}
	mu.Unlock()
	f.stop()
	out := readAll(t, brokers, "out", 4)
	slices.Sort(out)
	out = slices.Compact(out)
	if len(out) != 4 {
		t.Fatalf("outputs %q, want the 4 batches", out)
	}
	// A node restoring the changelog from scratch gets the live state.
	o2 := o
	o2.Writers = nil
	dirB := t.TempDir()
	g := start(t, a, dirB, brokers, o2)
	if err := g.node.Assign([]engine.TopicPartition{p0}); err != nil {
		t.Fatal(err)
	}
	g.stop()
	live, restored := dump(t, dirA), dump(t, dirB)
	if !maps.Equal(live, restored) {
		t.Fatalf("restored state differs from the live one:\nlive     %q\nrestored %q", live, restored)
	}
}

// deliverInFives plays the connector for partition 0 of "in": records
// 0..total-1 in batches of five, seeking back to what TakeRewinds says
// after a task restart, until everything is committed (deadline 30 s).
func deliverInFives(t *testing.T, n *engine.Node, total int) {
	t.Helper()
	next := 0
	deadline := time.Now().Add(30 * time.Second)
	for next < total || n.Committed()[p0] < int64(total) {
		if time.Now().After(deadline) {
			t.Fatalf("committed %d of %d", n.Committed()[p0], total)
		}
		if rw := n.TakeRewinds(); rw != nil {
			next = int(rw[p0])
		}
		if next < total {
			if err := n.Deliver(context.Background(), "in", 0, records(next, next+5), -1); err != nil {
				t.Fatal(err)
			}
			next += 5
			continue
		}
		time.Sleep(2 * time.Millisecond)
	}
}
