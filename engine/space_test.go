package engine_test

import (
	"context"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pheromone-go/pheromone/engine"
	"github.com/pheromone-go/pheromone/state/pebblestore"
)

// lowDisk is a real Pebble store whose file system reports the free space
// the test sets.
type lowDisk struct {
	*pebblestore.Store
	free atomic.Uint64
}

func (s *lowDisk) FreeBytes() (uint64, error) { return s.free.Load(), nil }

// TestDiskNearlyFullPausesCommits pins issue 11's full disk: Pebble stops
// for good on a failed log write, so the node must not reach it. Below the
// free-space minimum the partition's commits wait (its offsets do not
// advance, /readyz says why), and when space returns they go on with
// nothing lost or repeated.
func TestDiskNearlyFullPausesCommits(t *testing.T) {
	a := parseApp(t, fivesApp)
	brokers, o := changelogBroker(t, a)
	ps, err := pebblestore.Open(t.TempDir(), pebblestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ps.Close()
	st := &lowDisk{Store: ps}
	const min = 100 << 20
	st.free.Store(3 * min) // near enough to the minimum that every commit looks
	clock := engine.NewManualClock(time.Unix(1_700_000_000, 0))
	o.Store, o.MinFreeBytes, o.Clock = st, min, clock
	f := start(t, a, "", brokers, o)
	if err := f.node.Assign([]engine.TopicPartition{p0}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := f.node.Deliver(ctx, "in", 0, records(0, 5), -1); err != nil {
		t.Fatal(err)
	}
	waitCommitted(t, f.node, 5)

	st.free.Store(10 << 20)
	if err := f.node.Deliver(ctx, "in", 0, records(5, 10), -1); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for f.node.DiskPaused() == "" {
		if time.Now().After(deadline) {
			t.Fatal("commits never paused on a nearly full disk")
		}
		time.Sleep(2 * time.Millisecond)
	}
	if why := f.node.DiskPaused(); !strings.Contains(why, "10.0 MiB free, less than the 100.0 MiB kept free") {
		t.Fatalf("paused with %q", why)
	}
	if got := f.node.Committed()[p0]; got != 5 {
		t.Fatalf("committed offset %d while the disk is full, want 5", got)
	}
	// The clock moving on while the disk stays full changes nothing.
	clock.Advance(time.Second)
	if got := f.node.Committed()[p0]; got != 5 || f.node.DiskPaused() == "" {
		t.Fatalf("committed %d, paused %q: a full disk let a commit through", got, f.node.DiskPaused())
	}

	st.free.Store(1 << 30)
	deadline = time.Now().Add(20 * time.Second)
	for f.node.Committed()[p0] != 10 {
		if time.Now().After(deadline) {
			t.Fatalf("committed %d after space returned, want 10", f.node.Committed()[p0])
		}
		clock.Advance(time.Second)
		time.Sleep(2 * time.Millisecond)
	}
	if why := f.node.DiskPaused(); why != "" {
		t.Fatalf("still paused after space returned: %q", why)
	}
	f.stop()
	out := readAll(t, brokers, "out", 2)
	want := []string{`{"lo":0,"hi":4}`, `{"lo":5,"hi":9}`}
	slices.Sort(out)
	if !slices.Equal(out, want) {
		t.Fatalf("outputs %q, want %q", out, want)
	}
}
