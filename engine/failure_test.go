package engine_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pheromone-go/pheromone/connectors/kafka"
	"github.com/pheromone-go/pheromone/engine"
)

// failOnce is a fault injector around the real at-least-once writer: the
// first write of the record whose value is `value` fails, as a broker that
// refuses or loses a record would make it fail.
type failOnce struct {
	engine.PartitionWriter
	value  string
	mu     *sync.Mutex
	failed *bool
}

func (w failOnce) Produce(r *engine.OutRecord, done func(int64, error)) {
	w.mu.Lock()
	fail := !*w.failed && string(r.Value) == w.value
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
	prod, err := kafka.NewProducer(brokers)
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
	ctx := context.Background()
	// Play the connector: deliver in batches of five; after a restart, seek
	// back to what TakeRewinds says.
	next := 0
	deadline := time.Now().Add(30 * time.Second)
	for next < 20 || f.node.Committed()[p0] < 20 {
		if time.Now().After(deadline) {
			t.Fatalf("committed %d of 20", f.node.Committed()[p0])
		}
		if rw := f.node.TakeRewinds(); rw != nil {
			next = int(rw[p0])
		}
		if next < 20 {
			if err := f.node.Deliver(ctx, "in", 0, records(next, next+5), -1); err != nil {
				t.Fatal(err)
			}
			next += 5
			continue
		}
		time.Sleep(2 * time.Millisecond)
	}
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
