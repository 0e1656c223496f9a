package engine_test

import (
	"context"
	"testing"
	"time"

	"github.com/pheromone-go/pheromone/connectors/kafka"
	"github.com/pheromone-go/pheromone/engine"
)

// TestTransactionIntervalRunsOnTheClock: under exactly-once a task's
// transaction gathers cycles for commit_interval of the injected clock, not
// of the wall clock, so a test drives it with a ManualClock. (It used
// time.Now and a real timer.)
func TestTransactionIntervalRunsOnTheClock(t *testing.T) {
	a := parseApp(t, copyApp)
	brokers := startBroker(t, a)
	clock := engine.NewManualClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	f := start(t, a, t.TempDir(), brokers, engine.Options{Clock: clock, Executors: 2, CommitInterval: 100 * time.Millisecond,
		Writers: func(part int32) (engine.PartitionWriter, error) {
			return kafka.NewTxnWriter(context.Background(), kafka.Plain(brokers...), kafka.TransactionalID("copy", part))
		}})
	if err := f.node.Assign([]engine.TopicPartition{p0}); err != nil {
		t.Fatal(err)
	}
	if err := f.node.Deliver(context.Background(), "in", 0, records(0, 10), -1); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for f.node.Stats().Invocations < 1 {
		if time.Now().After(deadline) {
			t.Fatal("the records were not processed")
		}
		time.Sleep(2 * time.Millisecond)
	}
	// Five commit intervals of wall time pass; the clock stands still, so
	// the transaction stays open and nothing is committed.
	time.Sleep(500 * time.Millisecond)
	if got := f.node.Committed()[p0]; got != 0 {
		t.Fatalf("committed offset %d while the clock stood still, want 0 (the transaction must wait for the clock)", got)
	}
	clock.Advance(100 * time.Millisecond)
	waitCommitted(t, f.node, 10)
}
