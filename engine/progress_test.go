package engine

import (
	"testing"
	"time"

	"github.com/pheromone-go/pheromone/engine/app"
)

// TestCaughtUpAgainstTheLog pins the rule idleness rests on: a partition is
// caught up only while fresh looks at its log ends show it at the end of
// every topic; a stale look (the process was stopped, or the probe is
// stuck) says nothing, and a look showing it behind ends the run.
func TestCaughtUpAgainstTheLog(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	topics := map[string]*app.Source{"in": {}, "in.repartition": {}}
	p := newProgress()
	check := func(step string, now time.Duration, committed map[string]int64, want time.Time) {
		t.Helper()
		if got := p.since(topics, committed, at(now)); !got.Equal(want) {
			t.Errorf("%s: caught up since %v, want %v", step, got, want)
		}
	}

	check("nothing looked at yet", 0, nil, time.Time{})
	p.fetched("in", 10, 10, at(0))
	check("one topic unknown", 0, nil, time.Time{})
	p.observe("in.repartition", LogRange{0, 0}, at(0))
	check("both at their end", 0, nil, at(0))
	check("looks gone stale (stopped process)", 5*time.Second, nil, time.Time{})

	// A look that started before the stop and landed after it is stale too.
	p.observe("in", LogRange{0, 10}, at(0))
	check("late look", 10*time.Second, nil, time.Time{})

	// Fresh looks again, nothing moved: the run of caught-up looks goes on.
	p.observe("in", LogRange{0, 10}, at(10*time.Second))
	p.observe("in.repartition", LogRange{0, 0}, at(10*time.Second))
	check("fresh again", 10*time.Second, nil, at(0))

	// Records arrived meanwhile: behind, and the run ends.
	p.observe("in", LogRange{0, 15}, at(11*time.Second))
	check("behind", 11*time.Second, nil, time.Time{})
	p.fetched("in", 15, 15, at(12*time.Second))
	check("caught up anew", 12*time.Second, nil, at(12*time.Second))

	// The newest look wins.
	p.fetched("in", 15, 15, at(13*time.Second))
	p.observe("in", LogRange{0, 20}, at(13*time.Second))
	check("newer end wins", 13*time.Second, nil, time.Time{})
}

// TestCaughtUpPositions: a fresh task counts its committed offsets as its
// position, a log start beyond the position counts as consumed, and a
// fetch's position includes transaction markers (a transactional topic's
// end is past its last data record).
func TestCaughtUpPositions(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	topics := map[string]*app.Source{"in": {}}

	p := newProgress()
	p.observe("in", LogRange{0, 7}, t0)
	if got := p.since(topics, map[string]int64{"in": 7}, t0); !got.Equal(t0) {
		t.Errorf("committed offset at the end: %v, want caught up", got)
	}

	p = newProgress()
	p.observe("in", LogRange{10, 10}, t0)
	if got := p.since(topics, map[string]int64{"in": 3}, t0); !got.Equal(t0) {
		t.Errorf("log truncated past the position: %v, want caught up", got)
	}

	p = newProgress()
	p.fetched("in", 8, 9, t0) // records up to 7, marker at 8 not fetched yet
	if got := p.since(topics, nil, t0); !got.IsZero() {
		t.Errorf("before the transaction marker: caught up since %v", got)
	}
	p.fetched("in", 9, 9, t0) // a fetch of the marker alone
	if got := p.since(topics, nil, t0); !got.Equal(t0) {
		t.Errorf("past the marker: %v, want caught up", got)
	}
}

// TestOffsetLossNeedsALookAfterTheRecords: a look at the log taken before
// records were produced, processed after the task consumed them, shows an
// end below the task's position; that is not a loss. A look taken after
// is.
func TestOffsetLossNeedsALookAfterTheRecords(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p := newProgress()
	committed := map[string]int64{"in": 100}
	p.observe("in", LogRange{0, 100}, t0)               // a look starts, sees 100
	p.fetched("in", 110, 110, t0.Add(time.Millisecond)) // records 100..109 fetched just after
	if topic, _, _, lost := p.lost(committed); lost {
		t.Fatalf("a look older than the records counted as a loss of %s", topic)
	}
	p.observe("in", LogRange{0, 3}, t0.Add(time.Second)) // the topic was recreated
	if _, pos, r, lost := p.lost(committed); !lost || pos != 110 || r.End != 3 {
		t.Fatalf("loss not found: %v %d %v", lost, pos, r)
	}
}
