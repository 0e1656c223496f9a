package engine

import (
	"fmt"
	"time"

	"github.com/apache/arrow/go/v15/arrow"

	"github.com/pheromone-go/pheromone/triggers"
)

// A cycle's firings: queued as triggers fire, dispatched to the executor
// pool, and their results applied by the task in firing order (or on
// completion for `order: completion`), which may queue more firings until
// none fire (drain).

// queueFirings queues the firings of tr and reports what it dropped.
func (t *task) queueFirings(b *bucket, tr *trigger, out []triggers.Firing) {
	for _, f := range out {
		t.cyc.queue = append(t.cyc.queue, queued{b: b, tr: tr, f: f, early: t.applyingEarly})
	}
	if d := tr.t.Dropped(); d != tr.dropped {
		t.n.o.Metrics.TriggerDropped(tr.t.Name(), int(d-tr.dropped))
		tr.dropped = d
	}
}

// drain dispatches queued firings and applies their results, in firing
// order, until nothing more fires.
func (t *task) drain() error {
	c := &t.cyc
	var next *job // built for c.queue[0], not yet accepted by the pool
	for len(c.queue) > 0 || c.inFlight > 0 {
		if len(c.queue) == 0 {
			if err := t.receive(<-t.results); err != nil {
				return t.abort(err)
			}
			continue
		}
		if q := c.queue[0]; (q.f.Expired || q.f.Overflow) && next == nil {
			// A session timed out: its objects go to the dead-letter topic
			// instead of to the function.
			c.queue[0] = queued{}
			c.queue = c.queue[1:]
			if err := t.expire(q); err != nil {
				return t.abort(err)
			}
			continue
		}
		if q := c.queue[0]; q.f.Late && next == nil {
			// Event-time objects that missed their windows: routed to the
			// late bucket when there is one, else dropped (and counted).
			c.queue[0] = queued{}
			c.queue = c.queue[1:]
			if err := t.routeLate(q); err != nil {
				return t.abort(err)
			}
			continue
		}
		if next == nil {
			var err error
			if next, err = t.newJob(c.queue[0]); err != nil {
				return t.abort(err)
			}
		}
		if next.inline() {
			t.dispatched(next)
			r := t.n.invoke(t.n.runCtx, next)
			next.release()
			next = nil
			if err := t.receive(r); err != nil {
				return t.abort(err)
			}
			continue
		}
		select {
		case t.n.jobs <- next:
		default:
			// The executor queue is full: wait for room (backpressure), or
			// for a result that frees a slot.
			start := time.Now()
			select {
			case t.n.jobs <- next:
				t.stats.BlockedExecutor += time.Since(start)
			case r := <-t.results:
				t.stats.BlockedExecutor += time.Since(start)
				if err := t.receive(r); err != nil {
					next.release()
					return t.abort(err)
				}
				continue
			}
		}
		t.dispatched(next)
		next = nil
	}
	c.queue = c.queue[:0]
	return nil
}

// dispatched takes the queue's first firing, whose job j runs now.
func (t *task) dispatched(j *job) {
	c := &t.cyc
	c.queue[0] = queued{}
	c.queue = c.queue[1:]
	c.inFlight++
	c.nextID++
	t.n.firings.Add(1)
	t.n.o.Metrics.Firings(j.firing.Trigger, 1)
}

// routeLate puts late objects into the trigger's late bucket.
func (t *task) routeLate(q queued) error {
	late := 0
	for _, sp := range q.f.Objects {
		late += sp.Len()
	}
	t.n.o.Metrics.Late(q.tr.t.Name(), late)
	if q.tr.lateBucket == "" {
		return nil
	}
	var recs []arrow.Record
	var err error
	for _, sp := range q.f.Objects {
		if recs, err = q.b.slices(t.n.o.Store, sp, recs); err != nil {
			for _, r := range recs {
				r.Release()
			}
			return err
		}
	}
	for _, r := range recs {
		t.put(t.buckets[q.tr.lateBucket], r, "")
	}
	return nil
}

// expire dead-letters the objects of a timed-out session, or those a full
// session refused.
func (t *task) expire(q queued) error {
	reason, cause := ReasonSessionTimeout, fmt.Errorf("session %q of trigger %q timed out before it fired", q.f.Session, q.f.Trigger)
	if q.f.Overflow {
		reason = ReasonSessionFull
		cause = fmt.Errorf("session %q holds max_objects_per_session %d objects in trigger %q of bucket %q",
			q.f.Session, q.b.cfg.MaxObjectsPerSession, q.f.Trigger, q.b.name)
	}
	var recs []arrow.Record
	var err error
	for _, sp := range q.f.Objects {
		if recs, err = q.b.slices(t.n.o.Store, sp, recs); err != nil {
			break
		}
	}
	for _, r := range recs {
		if err == nil {
			t.deadRows(r, deadLetter{reason: reason, err: cause, trigger: q.f.Trigger, bucket: q.b.name, session: q.f.Session})
		}
		r.Release()
	}
	return err
}

// abort waits for in-flight invocations so no executor is left blocked on
// this task, then returns err.
func (t *task) abort(err error) error {
	for t.cyc.inFlight > 0 {
		r := <-t.results
		t.cyc.inFlight--
		r.release()
	}
	t.cur.wg.Wait()
	return err
}

// receive applies results in dispatch order.
func (t *task) receive(r *result) error {
	c := &t.cyc
	c.inFlight--
	if c.parked == nil {
		c.parked = map[uint64]*result{}
	}
	if r.early {
		// A function with order: completion (or a firing it caused) is
		// applied as soon as it returns — k-of-n straggler cuts need that;
		// its slot in the firing order is marked done.
		c.parked[r.id] = nil
		t.applyingEarly = true
		err := t.apply(r)
		t.applyingEarly = false
		if err != nil {
			return err
		}
	} else {
		c.parked[r.id] = r
	}
	for {
		r, ok := c.parked[c.applyID]
		if !ok {
			return nil
		}
		delete(c.parked, c.applyID)
		c.applyID++
		if r == nil {
			continue // applied early
		}
		if err := t.apply(r); err != nil {
			return err
		}
	}
}

func (t *task) apply(r *result) error {
	n := t.n
	if r.unavailable != nil {
		return &restartError{r.unavailable}
	}
	n.invocations.Add(1)
	var failed string // the session last failed: a job's dead rows share theirs
	for _, d := range r.dead {
		reason := ReasonFunction
		if v := d.header(HeaderReason); v != nil {
			reason = string(v)
		}
		if s := d.header(HeaderSession); t.sess != nil && len(s) > 0 && string(s) != failed {
			failed = string(s)
			t.sessionFailed(failed, fmt.Sprintf("%s: %s", reason, d.header(HeaderError)), t.n.o.Clock.Now())
		}
		t.dead(d, reason)
	}
	for _, p := range r.puts {
		if b := t.buckets[p.bucket]; b.cfg.PartitionBy != "" {
			t.repartition(b, p.rec, r.session)
		} else {
			t.put(b, p.rec, r.session)
		}
	}
	for _, rep := range r.replies {
		if r.early {
			// order: completion — the first answer goes out at once (a
			// k-of-n quorum must not wait for its straggler); a durable
			// session also records it with the cycle (below).
			if t.sess == nil {
				n.sessions.complete(rep.session, newAnswer(rep.body, rep.rows, rep.rows))
				continue
			}
			if m := t.sess.metas[rep.session]; m != nil && m.status == sRunning {
				// Only a session of this partition: its waiters are here,
				// and its cycle's commit clears the kept answer.
				n.waiting.earlyAnswer(rep.session, newAnswer(rep.body, rep.rows, rep.rows))
			}
		}
		// The answer is every reply of the function that replied first in
		// this cycle (a large input is put as several chunks, each firing
		// on its own); finish completes the session with all of them.
		if t.replies == nil {
			t.replies = map[string][]reply{}
		}
		if prev := t.replies[rep.session]; len(prev) == 0 || prev[0].fn == rep.fn {
			t.replies[rep.session] = append(prev, rep)
		}
	}
	// Every sink but the result gets its rows through its writer, which
	// joins the cycle's durability (sinks.go).
	for _, c := range r.rows {
		a := t.cur
		a.wg.Add(1)
		t.sinkWriters[c.sink].Write(c.rows, a.done)
		n.out.Add(int64(len(c.rows)))
		n.o.Metrics.RecordsOut(c.sink, len(c.rows))
	}
	r.puts = nil
	return nil
}
