package engine

import (
	"fmt"
	"sync"
	"time"

	"github.com/pheromone-go/pheromone/engine/app"
	"github.com/pheromone-go/pheromone/triggers"
)

// Progress against the log: when a partition counts as caught up.
//
// Idleness (idle_timeout) is the one place where processing time may move
// an event-time watermark, so it must never mistake "the data has not
// reached us yet" for "there is no data". A task is caught up when, for
// every topic it consumes, it has processed everything up to the log end
// that a fresh look at the log saw. Looks come from two places: every fetch
// (its high watermark, or last stable offset when reading committed) and a
// regular probe of the log ends by the source (Node.ObserveLogEnds). A look
// is stamped with the time it *started*, so one that was under way while
// the process was stopped is stale when it lands. While the newest look is
// older than staleAfter, the task is not idle — whatever it was before — and
// a look that shows it behind ends the caught-up run. Nothing of this is
// persisted: after a restart a task is behind until a look says otherwise,
// so time spent down, restoring or waiting for the group never counts.

// staleAfter is how old the newest look at a topic's log end may be for
// the task to count as caught up (the source probes several times a second).
const staleAfter = 2 * time.Second

type logLook struct {
	LogRange
	at  time.Time // when the look started, for freshness (idleness)
	seq uint64    // its ticket (Node.StartLook), for ordering against positions
}

// progress is a task's position against its logs. The task's goroutine
// owns everything but the observed map, which ObserveLogEnds fills under mu.
type progress struct {
	pos      map[string]int64   // offset after the last record processed (control records included)
	hist     map[string][]posAt // recent positions with when their records were fetched
	looks    map[string]logLook // newest look at each topic's log
	caughtUp time.Time          // start of the current caught-up run; zero: behind or unknown

	mu       sync.Mutex
	observed map[string]logLook // looks not yet taken by the task
	signal   chan struct{}      // cap 1: new looks wait
}

// posAt is a position a topic reached, with when and under which ticket
// its records were delivered: by then the log held them, so any look that
// started later (a higher ticket) must show them. Tickets, not times, order
// looks and positions: a ManualClock that stands still gives them all one
// time.
type posAt struct {
	at  time.Time
	seq uint64
	pos int64
}

func newProgress() progress {
	return progress{pos: map[string]int64{}, hist: map[string][]posAt{}, looks: map[string]logLook{},
		observed: map[string]logLook{}, signal: make(chan struct{}, 1)}
}

// reached is the largest position of topic whose records were delivered
// under a ticket up to seq (0 if none).
func (p *progress) reached(topic string, seq uint64) int64 {
	h := p.hist[topic]
	for i := len(h) - 1; i >= 0; i-- {
		if h[i].seq <= seq {
			return h[i].pos
		}
	}
	return 0
}

// observe records a look (any goroutine).
func (p *progress) observe(topic string, r LogRange, look LookStart) {
	p.mu.Lock()
	if o, ok := p.observed[topic]; !ok || look.seq > o.seq {
		p.observed[topic] = logLook{r, look.At, look.seq}
	}
	p.mu.Unlock()
}

func (p *progress) wake() {
	select {
	case p.signal <- struct{}{}:
	default:
	}
}

// take moves the observed looks into looks (task goroutine).
func (p *progress) take() {
	p.mu.Lock()
	for topic, o := range p.observed {
		if l, ok := p.looks[topic]; !ok || o.seq > l.seq {
			// The newest look wins, even with a smaller end: a log that went
			// backwards is what offset-loss detection looks for.
			p.looks[topic] = o
		}
	}
	clear(p.observed)
	p.mu.Unlock()
}

// fetched records what one delivered fetch (ticket look) showed (task
// goroutine).
func (p *progress) fetched(topic string, next, end int64, look LookStart) {
	if next > p.pos[topic] {
		p.pos[topic] = next
		h := p.hist[topic]
		// Keep the positions of the last seconds (looks older than
		// staleAfter do not count), and the newest one before them.
		for len(h) > 1 && look.At.Sub(h[1].at) > 2*staleAfter {
			h = h[1:]
		}
		p.hist[topic] = append(h, posAt{look.At, look.seq, next})
	}
	if end < 0 {
		return
	}
	l, ok := p.looks[topic]
	if ok && look.seq < l.seq {
		return
	}
	p.looks[topic] = logLook{LogRange{Start: l.Start, End: end}, look.At, look.seq}
}

// since evaluates the caught-up state at now for the task's topics and
// returns since when it has been caught up (zero: it is not, or the newest
// looks are stale). committed holds the task's committed offsets, used for
// topics of which it has processed nothing since it started.
func (p *progress) since(topics map[string]*app.Source, committed map[string]int64, now time.Time) time.Time {
	p.take()
	fresh := true
	for topic := range topics {
		l, ok := p.looks[topic]
		if !ok {
			p.caughtUp = time.Time{}
			return time.Time{}
		}
		pos, seen := p.pos[topic]
		if c, ok := committed[topic]; ok && (!seen || c > pos) {
			pos = c
		}
		pos = max(pos, l.Start) // nothing below the log start will come
		if pos < l.End {
			p.caughtUp = time.Time{} // behind: the run of caught-up looks ends
			return time.Time{}
		}
		if now.Sub(l.at) > staleAfter {
			fresh = false
		}
	}
	if !fresh {
		return time.Time{} // maybe caught up, but nobody looked lately
	}
	if p.caughtUp.IsZero() {
		p.caughtUp = now
	}
	return p.caughtUp
}

// lost reports a topic whose newest look shows that the log no longer
// holds a position the task had reached before the look started — the
// offsets it started from (for looks started after it), or what it
// processed since: the log end fell behind it, or the log start passed it.
// Positions reached after a look started are not compared with it: records
// fetched meanwhile may lie beyond the end it saw.
func (p *progress) lost(start map[string]int64, startSeq uint64) (topic string, pos int64, r LogRange, ok bool) {
	p.take()
	for topic, l := range p.looks {
		pos := p.reached(topic, l.seq)
		if c, seen := start[topic]; seen && l.seq > startSeq {
			pos = max(pos, c)
		}
		if pos == 0 {
			continue // nothing known consumed: the source starts at the log start
		}
		if l.End < pos || l.Start > pos {
			return topic, pos, l.LogRange, true
		}
	}
	return "", 0, LogRange{}, false
}

// OffsetLossError stops a partition whose log no longer holds its offset
// (kafka.on_offset_loss: fail).
type OffsetLossError struct {
	Topic     string
	Partition int32
	Offset    int64
	Log       LogRange
}

func (e *OffsetLossError) Error() string {
	what := "the log end fell behind it (broker data lost, or the topic recreated)"
	if e.Log.Start > e.Offset {
		what = "the log start passed it (retention deleted records not consumed yet)"
	}
	return fmt.Sprintf("engine: %s partition %d: the state resumes at offset %d but the log holds [%d, %d): %s; "+
		"the partition is stopped (set kafka.on_offset_loss: earliest or latest to resume instead)",
		e.Topic, e.Partition, e.Offset, e.Log.Start, e.Log.End, what)
}

// checkOffsets handles a log that no longer holds the task's offset, as
// kafka.on_offset_loss says: an *OffsetLossError (fail), or the offsets are
// moved to the log start or end — recorded in a commit, with the source
// rewound there — keeping the state. Never a silent skip. moved reports
// that records fetched before are to be dropped.
func (t *task) checkOffsets() (moved bool, err error) {
	topic, pos, r, ok := t.prog.lost(t.startOffsets, t.startSeq)
	if !ok {
		return false, nil
	}
	t.n.o.Metrics.OffsetLoss(topic, t.part)
	policy := t.n.plan.app.Kafka.OnOffsetLoss
	if policy == app.OffsetLossFail || policy == "" {
		return false, &OffsetLossError{Topic: topic, Partition: t.part, Offset: pos, Log: r}
	}
	to := r.Start
	if policy == app.OffsetLossLatest {
		to = r.End
	}
	t.n.log.Error("partition offset lost from the log; resuming elsewhere as kafka.on_offset_loss says, keeping the state",
		"topic", topic, "partition", t.part, "offset", pos, "log_start", r.Start, "log_end", r.End, "resume_at", to, "policy", policy)
	t.offsets[topic] = to
	t.pending[topic] = to
	t.prog.pos[topic] = to
	t.prog.hist[topic] = nil
	t.startOffsets[topic] = to // looks from now on compare with it
	t.startSeq = t.n.StartLook().seq
	t.n.rewind(t)
	return true, t.finish()
}

// refreshIdle re-evaluates the caught-up state and tells the event-time
// triggers (task goroutine).
func (t *task) refreshIdle(now time.Time) {
	if !t.n.plan.eventTime {
		return
	}
	since := t.prog.since(t.n.plan.sources, t.offsets, now)
	for _, b := range t.order {
		for _, tr := range b.triggers {
			if id, ok := tr.t.(triggers.Idler); ok {
				id.CaughtUp(since)
			}
		}
	}
}

// reportEventTime publishes the event-time gauges of the task's triggers,
// at most once a second.
func (t *task) reportEventTime(now time.Time) {
	if !t.n.plan.eventTime {
		return
	}
	if !t.lastReport.IsZero() && now.Sub(t.lastReport) < time.Second {
		return
	}
	t.lastReport = now
	ls := &liveStatus{caughtUp: !t.prog.caughtUp.IsZero(), idle: map[string]bool{}}
	for _, b := range t.order {
		for _, tr := range b.triggers {
			if w, ok := tr.t.(triggers.Watermarker); ok && tr.eventTime {
				wm, _ := w.Watermark()
				idle := w.Idle(now)
				ls.idle[b.name+"\x00"+tr.t.Name()] = idle
				t.n.o.Metrics.EventTime(b.name, tr.t.Name(), t.part, wm, idle, w.OldestWindow())
			}
		}
	}
	t.live.Store(ls)
}

// liveStatus is a task's progress as last reported, for queries (the
// committed state has the watermarks, not whether the partition is idle).
type liveStatus struct {
	caughtUp bool
	idle     map[string]bool // by bucket NUL trigger
}

// live returns partition part's last reported status (nil if none).
func (n *Node) live(part int32) *liveStatus {
	n.mu.Lock()
	t := n.tasks[part]
	n.mu.Unlock()
	if t == nil {
		return nil
	}
	return t.live.Load()
}
