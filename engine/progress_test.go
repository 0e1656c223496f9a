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
	var ticket uint64
	lk := func(at time.Time) LookStart { ticket++; return LookStart{At: at, seq: ticket} }
	check := func(step string, now time.Duration, committed map[string]int64, want time.Time) {
		t.Helper()
		if got := p.since(topics, committed, at(now)); !got.Equal(want) {
			t.Errorf("%s: caught up since %v, want %v", step, got, want)
		}
	}

	check("nothing looked at yet", 0, nil, time.Time{})
	p.fetched("in", 10, 10, lk(at(0)))
	check("one topic unknown", 0, nil, time.Time{})
	p.observe("in.repartition", LogRange{0, 0}, lk(at(0)))
	check("both at their end", 0, nil, at(0))
	check("looks gone stale (stopped process)", 5*time.Second, nil, time.Time{})

	// A look that started before the stop and landed after it is stale too.
	p.observe("in", LogRange{0, 10}, lk(at(0)))
	check("late look", 10*time.Second, nil, time.Time{})

	// Fresh looks again, nothing moved: the run of caught-up looks goes on.
	p.observe("in", LogRange{0, 10}, lk(at(10*time.Second)))
	p.observe("in.repartition", LogRange{0, 0}, lk(at(10*time.Second)))
	check("fresh again", 10*time.Second, nil, at(0))

	// Records arrived meanwhile: behind, and the run ends.
	p.observe("in", LogRange{0, 15}, lk(at(11*time.Second)))
	check("behind", 11*time.Second, nil, time.Time{})
	p.fetched("in", 15, 15, lk(at(12*time.Second)))
	check("caught up anew", 12*time.Second, nil, at(12*time.Second))

	// The newest look wins.
	p.fetched("in", 15, 15, lk(at(13*time.Second)))
	p.observe("in", LogRange{0, 20}, lk(at(13*time.Second)))
	check("newer end wins", 13*time.Second, nil, time.Time{})
}

// TestCaughtUpPositions: a fresh task counts its committed offsets as its
// position, a log start beyond the position counts as consumed, and a
// fetch's position includes transaction markers (a transactional topic's
// end is past its last data record).
func TestCaughtUpPositions(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	topics := map[string]*app.Source{"in": {}}
	var ticket uint64
	lk := func(at time.Time) LookStart { ticket++; return LookStart{At: at, seq: ticket} }

	p := newProgress()
	p.observe("in", LogRange{0, 7}, lk(t0))
	if got := p.since(topics, map[string]int64{"in": 7}, t0); !got.Equal(t0) {
		t.Errorf("committed offset at the end: %v, want caught up", got)
	}

	p = newProgress()
	p.observe("in", LogRange{10, 10}, lk(t0))
	if got := p.since(topics, map[string]int64{"in": 3}, t0); !got.Equal(t0) {
		t.Errorf("log truncated past the position: %v, want caught up", got)
	}

	p = newProgress()
	p.fetched("in", 8, 9, lk(t0)) // records up to 7, marker at 8 not fetched yet
	if got := p.since(topics, nil, t0); !got.IsZero() {
		t.Errorf("before the transaction marker: caught up since %v", got)
	}
	p.fetched("in", 9, 9, lk(t0)) // a fetch of the marker alone
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
	var ticket uint64
	lk := func(at time.Time) LookStart { ticket++; return LookStart{At: at, seq: ticket} }
	p := newProgress()
	committed := map[string]int64{"in": 100}
	p.observe("in", LogRange{0, 100}, lk(t0))               // a look starts, sees 100
	p.fetched("in", 110, 110, lk(t0.Add(time.Millisecond))) // records 100..109 fetched just after
	if topic, _, _, lost := p.lost(committed, 0); lost {
		t.Fatalf("a look older than the records counted as a loss of %s", topic)
	}
	p.observe("in", LogRange{0, 3}, lk(t0.Add(time.Second))) // the topic was recreated
	if _, pos, r, lost := p.lost(committed, 0); !lost || pos != 110 || r.End != 3 {
		t.Fatalf("loss not found: %v %d %v", lost, pos, r)
	}
}

// TestOffsetLossOrdersByTicketNotTime pins a false alarm of the first
// version, found by TestYSBMatchesGenerator under load: with a ManualClock
// standing still, a look begun before 30,000 records were produced carried
// the same time as their fetches, and the committed offsets were compared
// with it regardless of when it began; four partitions stopped. Looks are
// ordered by ticket, and a task's start offsets count only for looks begun
// after it started.
func TestOffsetLossOrdersByTicketNotTime(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p := newProgress()
	early := LookStart{At: t0, seq: 1}                     // a look begins
	p.fetched("in", 2500, 2500, LookStart{At: t0, seq: 2}) // records fetched meanwhile, same time
	p.observe("in", LogRange{0, 577}, early)               // the look lands late
	if topic, _, _, lost := p.lost(map[string]int64{"in": 0}, 0); lost {
		t.Fatalf("an early look counted as a loss of %s", topic)
	}
	// A task that started (ticket 5) from offset 2500: a look begun before
	// says nothing about that offset; one begun after does.
	p = newProgress()
	p.observe("in", LogRange{0, 577}, LookStart{At: t0, seq: 4})
	if _, _, _, lost := p.lost(map[string]int64{"in": 2500}, 5); lost {
		t.Fatal("a look begun before the task started counted as a loss")
	}
	p.observe("in", LogRange{0, 577}, LookStart{At: t0, seq: 6})
	if _, pos, _, lost := p.lost(map[string]int64{"in": 2500}, 5); !lost || pos != 2500 {
		t.Fatalf("loss after the start not found: %v %d", lost, pos)
	}
}
