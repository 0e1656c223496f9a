package engine

import (
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pheromone-go/pheromone/state"
)

// DefaultMinFreeBytes is Options.MinFreeBytes when unset: room for a few
// memtable flushes and a compaction of the store's default sizes.
const DefaultMinFreeBytes = 256 << 20

// spaceGate pauses every write to the store while the disk under it has
// less than min bytes free, and lets them go on when space returns.
//
// The store cannot survive running out: Pebble stops for good on a failed
// write-ahead-log write. So the gate keeps writes from reaching that point,
// like a flood-stage watermark: a committer that finds the disk low waits
// (its partition's queues fill and the source stops fetching), /readyz says
// why, and the store resumes when space is freed. A write that still runs
// out (a burst larger than the margin) ends the process with one line, and
// a restart resumes from the last commit.
type spaceGate struct {
	st    state.SpaceReporter // nil: never pauses
	min   uint64
	clock Clock
	log   *slog.Logger

	checks atomic.Uint64
	low    atomic.Bool // the last look found the disk below min

	mu     sync.Mutex
	paused string // why writes wait; "" when they do not
}

// checkEvery is how many writes pass between two looks at the free space
// while it is well above the minimum (a look is a statfs call); the first
// write looks.
const checkEvery = 16

// wait returns once the disk has room for a write, or false when quit
// closes first (the write is abandoned, as in a crash).
func (g *spaceGate) wait(quit <-chan struct{}) bool {
	if g.st == nil {
		return true
	}
	if !g.low.Load() && g.checks.Add(1)%checkEvery != 1 {
		return true
	}
	for {
		free, err := g.st.FreeBytes()
		if err != nil || free >= g.min {
			// An unknown free space does not stop writes.
			g.low.Store(err == nil && free < 4*g.min)
			g.resume()
			return true
		}
		g.low.Store(true)
		g.pause(free)
		t := g.clock.NewTimer(time.Second)
		select {
		case <-t.C():
		case <-quit:
			t.Stop()
			return false
		}
	}
}

func (g *spaceGate) pause(free uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	first := g.paused == ""
	g.paused = fmt.Sprintf("the data dir has %.1f MiB free, less than the %.1f MiB kept free (--min-free-disk); state commits are paused and resume when space is freed",
		float64(free)/(1<<20), float64(g.min)/(1<<20))
	if first {
		g.log.Warn("disk nearly full: state commits paused", "free_bytes", free, "min_free_bytes", g.min)
	}
}

func (g *spaceGate) resume() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.paused != "" {
		g.paused = ""
		g.log.Info("disk space returned: state commits resume")
	}
}

// DiskPaused says why the node's state commits wait for disk space, or ""
// when they do not.
func (n *Node) DiskPaused() string {
	n.space.mu.Lock()
	defer n.space.mu.Unlock()
	return n.space.paused
}
