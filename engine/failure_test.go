package engine_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
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
			f.node.ObserveLogEnds(map[engine.TopicPartition]engine.LogRange{p0: c.look}, time.Now())
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
