package engine

import (
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
	at time.Time
}

// progress is a task's position against its logs. The task's goroutine
// owns everything but the observed map, which ObserveLogEnds fills under mu.
type progress struct {
	pos      map[string]int64   // offset after the last record processed (control records included)
	looks    map[string]logLook // newest look at each topic's log
	caughtUp time.Time          // start of the current caught-up run; zero: behind or unknown

	mu       sync.Mutex
	observed map[string]logLook // looks not yet taken by the task
	signal   chan struct{}      // cap 1: new looks wait
}

func newProgress() progress {
	return progress{pos: map[string]int64{}, looks: map[string]logLook{}, observed: map[string]logLook{}, signal: make(chan struct{}, 1)}
}

// observe records a look (any goroutine).
func (p *progress) observe(topic string, r LogRange, at time.Time) {
	p.mu.Lock()
	if o, ok := p.observed[topic]; !ok || !at.Before(o.at) {
		p.observed[topic] = logLook{r, at}
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
		if l, ok := p.looks[topic]; !ok || !o.at.Before(l.at) {
			if ok {
				o.End = max(o.End, l.End) // a log end never moves back
			}
			p.looks[topic] = o
		}
	}
	clear(p.observed)
	p.mu.Unlock()
}

// fetched records what one delivered fetch showed (task goroutine).
func (p *progress) fetched(topic string, next, end int64, at time.Time) {
	if next > p.pos[topic] {
		p.pos[topic] = next
	}
	if end < 0 {
		return
	}
	l, ok := p.looks[topic]
	if ok && at.Before(l.at) {
		return
	}
	if ok {
		end = max(end, l.End)
	}
	p.looks[topic] = logLook{LogRange{Start: l.Start, End: end}, at}
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
