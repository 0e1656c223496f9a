package engine

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apache/arrow/go/v15/arrow"

	"github.com/pheromone-go/pheromone/engine/app"
	"github.com/pheromone-go/pheromone/engine/codec"
	"github.com/pheromone-go/pheromone/state"
	"github.com/pheromone-go/pheromone/triggers"
)

// task owns one partition number of the app: the records of that partition
// of every source topic, the partition of every bucket, their triggers, and
// the offsets. Exactly one goroutine (run) touches its fields after
// newTask returns, except inbox, quit and done (channels), cm (the
// committer's, see commit.go), prog and live (their own locks) and
// rewinding (under Node.mu).
//
// Work happens in cycles: a batch of input records (or a timer tick) is
// decoded and put into buckets, and firings run on the executor pool until
// no more fire; then the cycle's state batch (new bucket contents, trigger
// state and source offsets together) is built and queued to the committer,
// which commits it once the cycle's writes are acknowledged, while the task
// runs the next cycle.
type task struct {
	n    *Node
	part int32
	sess *durableSessions // durable invocations' sessions (durable.go), nil without

	inbox chan inbound
	// stats gathers this cycle's CycleStats (reported at its commit).
	stats CycleStats
	// What Node.Quiet reads of the task from other goroutines: whether it
	// waits for input, the deadline of its next timer (unix ns, 0: none) and
	// the sequence of the last cycle it handed to its committer.
	waiting   atomic.Bool
	waitUntil atomic.Int64
	queued    atomic.Uint64
	inflight  atomic.Int64 // inbound items sent and not yet processed
	quit      chan struct{}
	quitOnce  sync.Once
	done      chan struct{}

	buckets  map[string]*bucket
	order    []*bucket
	decoders map[string]*codec.JSONDecoder // by topic, json sources
	wired    map[string]RecordDecoder      // by topic, sources of a connector's format
	offsets  map[string]int64              // next offset per topic, committed
	pending  map[string]int64              // next offset per topic, this cycle

	results chan *result
	cyc     cycle

	tableWrites   []tableRow // this cycle's table upserts, in order
	applyingEarly bool       // apply is running for an early result

	// Commits are pipelined: at the end of a cycle the task builds its state
	// batch and hands it to the committer goroutine, which waits for the
	// cycle's Kafka acks, commits, and publishes the offsets; meanwhile the
	// task already runs the next cycle.
	cur      *acks
	cycleSeq uint64
	cm       *committer

	// w writes the task's records. With a transactional writer
	// (exactly-once) built batches wait in txnPending until the
	// transaction that holds their records commits (at most CommitInterval
	// after the first of them), and only then go to the committer.
	w          PartitionWriter
	txn        bool
	txnPending []*pendingCommit
	txnStart   time.Time
	// rewinding: restarted after an aborted transaction, waiting for the
	// source to seek back to its offsets (guarded by Node.mu).
	rewinding bool
	// repair lists keys of an unfinished changelog cycle found by restore;
	// the first commit writes their restored values to the changelog.
	repair [][]byte
	// firingBuf is reused by puts for their triggers' firings.
	firingBuf []triggers.Firing

	// sinkWriters write the rows of the app's sinks of connectors' kinds,
	// by sink name.
	sinkWriters map[string]SinkWriter

	// replies are this cycle's answers to invocations, by session.
	replies map[string][]reply

	// deferred holds the current cycle's changelog records at-least-once:
	// the committer writes them after the cycle's other acks.
	deferred []*OutRecord

	prog         progress         // position against the logs (idleness, offset loss)
	startOffsets map[string]int64 // offsets the task started from
	startSeq     uint64           // look ticket when it started
	lastReport   time.Time        // when the event-time gauges were last reported
	live         atomic.Pointer[liveStatus]
}

// acks counts the writes of one cycle that Kafka has not acknowledged yet.
type acks struct {
	wg  sync.WaitGroup
	mu  sync.Mutex
	err error
	// doneFn is done as a PartitionWriter callback, made once per cycle
	// rather than once per record.
	doneFn func(int64, error)
}

func newAcks() *acks {
	a := &acks{}
	a.doneFn = func(_ int64, err error) { a.done(err) }
	return a
}

func (a *acks) done(err error) {
	if err != nil {
		a.mu.Lock()
		if a.err == nil {
			a.err = err
		}
		a.mu.Unlock()
	}
	a.wg.Done()
}

type inbound struct {
	topic  string
	recs   []Record
	hwm    int64        // log end the fetch saw, -1 unknown
	next   int64        // offset after the fetch (control records included), -1: after recs
	look   LookStart    // when the fetch was delivered, and its ticket
	invoke arrow.Record // an invocation's input, instead of records
}

// cycle is the bookkeeping of one unit of work.
type cycle struct {
	queue    []queued // firings not yet dispatched
	inFlight int
	nextID   uint64 // id of the next dispatched firing
	applyID  uint64 // id of the next result to apply
	parked   map[uint64]*result
}

type queued struct {
	b  *bucket
	tr *trigger
	f  triggers.Firing
	// early: caused by a result applied on completion, so it is applied on
	// completion too (it is downstream of timing already, and must not wait
	// behind unrelated slower invocations).
	early bool
}

// newTask loads partition part's state and takes over w.
// known lists the chunks a restore from offset 0 wrote (nil: scan them).
func newTask(n *Node, part int32, w PartitionWriter, repair [][]byte, known map[string][]chunkRef) (*task, error) {
	tx, _ := w.(Transactional)
	t := &task{
		n: n, part: part, w: w, repair: repair, txn: tx != nil && tx.Transactional(),
		inbox:    make(chan inbound, n.o.QueueDepth),
		quit:     make(chan struct{}),
		done:     make(chan struct{}),
		buckets:  map[string]*bucket{},
		decoders: map[string]*codec.JSONDecoder{},
		wired:    map[string]RecordDecoder{},
		offsets:  map[string]int64{},
		pending:  map[string]int64{},
		results:  make(chan *result, n.o.Executors),

		cur:  newAcks(),
		prog: newProgress(),
	}
	t.cm = newCommitter(n, part, w, t.quit)
	if err := t.openSinks(); err != nil {
		t.releaseAll()
		return nil, fmt.Errorf("engine: partition %d: %w", part, err)
	}
	a := n.plan.app
	for i := range a.Buckets {
		b, err := loadBucket(n.o.Store, a.Name, n.plan.buckets[a.Buckets[i].Name], part, known)
		if err != nil {
			t.releaseAll()
			return nil, fmt.Errorf("engine: partition %d: %w", part, err)
		}
		t.buckets[b.name] = b
		t.order = append(t.order, b)
	}
	for topic, src := range n.plan.sources {
		v, err := n.o.Store.Get(offsetKey(a.Name, topic, part))
		switch {
		case errors.Is(err, state.ErrNotFound):
		case err != nil:
			t.releaseAll()
			return nil, err
		case len(v) == 8:
			t.offsets[topic] = int64(binary.BigEndian.Uint64(v))
		}
		if bucket := n.plan.repart[topic]; bucket != "" {
			d, err := codec.NewJSONDecoder(n.plan.app.BucketSchema(bucket))
			if err != nil {
				t.releaseAll()
				return nil, err
			}
			t.decoders[topic] = d
			continue
		}
		if wf := n.o.Formats[src.Format]; wf != nil {
			d, err := wf.NewDecoder(src)
			if err != nil {
				t.releaseAll()
				return nil, fmt.Errorf("engine: source %s: %w", src.Name, err)
			}
			t.wired[topic] = d
		} else if src.Format == "json" {
			var req []string
			if src.Key != "" {
				req = append(req, src.Key)
			}
			if src.EventTime != "" {
				req = append(req, src.EventTime)
			}
			d, err := codec.NewJSONDecoder(src.ArrowSchema(), req...)
			if err != nil {
				t.releaseAll()
				return nil, err
			}
			if src.SessionHeader != "" {
				if err := d.SetExternal(src.SessionColumn); err != nil {
					d.Release()
					t.releaseAll()
					return nil, err
				}
			}
			t.decoders[topic] = d
		}
	}
	if n.plan.app.DurableInvoke() {
		if err := t.loadSessions(); err != nil {
			t.releaseAll()
			return nil, err
		}
	}
	// Looks started from now on compare with the offsets it starts from.
	t.startOffsets, t.startSeq = maps.Clone(t.offsets), n.StartLook().seq
	return t, nil
}

func (t *task) stop() { t.quitOnce.Do(func() { close(t.quit) }) }

func (t *task) releaseAll() {
	t.w.Close()
	for name, w := range t.sinkWriters {
		if err := w.Close(); err != nil {
			t.n.log.Warn("closing a sink failed", "sink", name, "partition", t.part, "error", err)
		}
	}
	for _, b := range t.buckets {
		b.release()
	}
	for _, d := range t.decoders {
		d.Release()
	}
	for _, d := range t.wired {
		d.Release()
	}
}

// run is the task's goroutine.
func (t *task) run() (err error) {
	defer close(t.done)
	defer t.releaseAll()
	go t.cm.run()
	defer func() {
		// Every cycle handed over is committed (or failed) before the task
		// reports done: a revoke returns only after the state is durable.
		close(t.cm.in)
		<-t.cm.done
		if err == nil {
			select {
			case err = <-t.cm.failed:
			default:
			}
		}
	}()
	// A restart may find windows that ended while the node was down.
	if err := t.tick(); err != nil {
		return err
	}
	for {
		var timerC <-chan time.Time
		var timer Timer
		if next := t.nextTick(); !next.IsZero() {
			d := next.Sub(t.n.o.Clock.Now())
			if d < 0 {
				d = 0
			}
			timer = t.n.o.Clock.NewTimer(d)
			timerC = timer.C()
		}
		var txnC <-chan time.Time
		var txnTimer Timer
		if len(t.txnPending) > 0 {
			clk := t.n.o.Clock
			txnTimer = clk.NewTimer(t.txnStart.Add(t.n.o.CommitInterval).Sub(clk.Now()))
			txnC = txnTimer.C()
		}
		until := int64(0)
		if timer != nil {
			until = t.nextTick().UnixNano()
		}
		if txnTimer != nil && (until == 0 || t.txnStart.Add(t.n.o.CommitInterval).UnixNano() < until) {
			until = t.txnStart.Add(t.n.o.CommitInterval).UnixNano()
		}
		t.waitUntil.Store(until)
		t.queued.Store(t.cycleSeq)
		t.waiting.Store(true)
		select {
		case <-t.quit:
			if timer != nil {
				timer.Stop()
			}
			if txnTimer != nil {
				txnTimer.Stop()
			}
			return t.endTxn()
		case in := <-t.inbox:
			err = t.process(in)
			t.inflight.Add(-1)
		case <-timerC:
			err = t.tick()
		case <-t.prog.signal:
			// New looks at the log ends: the partition may be caught up (or
			// behind) now.
			err = t.tick()
		case <-txnC:
			err = t.endTxn()
		case err = <-t.cm.failed:
		}
		t.waiting.Store(false)
		if timer != nil {
			timer.Stop()
		}
		if txnTimer != nil {
			txnTimer.Stop()
		}
		if err != nil {
			return err
		}
	}
}

func (t *task) nextTick() time.Time {
	next := t.nextSessionTick()
	for _, b := range t.order {
		for _, tr := range b.triggers {
			if nt := tr.t.NextTick(); !nt.IsZero() && (next.IsZero() || nt.Before(next)) {
				next = nt
			}
		}
	}
	return next
}

// tick runs the timers that are due, as one cycle.
func (t *task) tick() error {
	now := t.n.o.Clock.Now()
	if _, err := t.checkOffsets(); err != nil {
		return err
	}
	t.refreshIdle(now)
	fired := t.sweepSessions(now)
	var out []triggers.Firing
	for _, b := range t.order {
		for _, tr := range b.triggers {
			out = tr.t.Tick(now, out[:0])
			for _, f := range out {
				t.cyc.queue = append(t.cyc.queue, queued{b: b, tr: tr, f: f})
				fired = true
			}
		}
	}
	if !t.publishWatermarks() && !fired {
		t.reportEventTime(now)
		return nil
	}
	if err := t.drain(); err != nil {
		return err
	}
	return t.finish()
}

// finish ends a cycle: it publishes the watermarks that changed (and runs
// what they fire), then commits.
func (t *task) finish() error {
	for range 8 {
		if !t.publishWatermarks() {
			break
		}
		if err := t.drain(); err != nil {
			return err
		}
	}
	t.reportEventTime(t.n.o.Clock.Now())
	if t.sess != nil {
		t.sendResults(t.n.o.Clock.Now())
	}
	for session, reps := range t.replies {
		t.n.sessions.complete(session, joinReplies(reps, MaxResultBytes))
	}
	clear(t.replies)
	err := t.commit()
	t.stats.InboxFill = float64(len(t.inbox)) / float64(max(cap(t.inbox), 1))
	t.n.o.Metrics.Cycle(t.part, t.stats)
	t.stats = CycleStats{}
	return err
}

// process runs one batch of input records as one cycle.
func (t *task) process(in inbound) error {
	if in.invoke != nil {
		t.put(t.buckets[t.n.plan.app.Invoke.Entry], in.invoke, "")
		if err := t.drain(); err != nil {
			return err
		}
		return t.finish()
	}
	src := t.n.plan.sources[in.topic]
	next, seen := t.offsets[in.topic]
	recs := in.recs
	// Records below the committed offset are already in the state (the
	// Kafka group commit can lag the state commit); skip them.
	for seen && len(recs) > 0 && recs[0].Offset < next {
		recs = recs[1:]
	}
	pos := in.next
	if pos < 0 && len(in.recs) > 0 {
		pos = in.recs[len(in.recs)-1].Offset + 1
	}
	t.prog.fetched(in.topic, pos, in.hwm, in.look)
	if moved, err := t.checkOffsets(); moved || err != nil {
		return err // moved: these records were fetched before the seek
	}
	if len(recs) == 0 {
		// Control records only (or a re-delivery): the position moved.
		return t.tick()
	}
	if t.sess != nil && in.topic == t.n.plan.app.InvocationsTopic() {
		t.invocations(src, in.topic, recs)
	} else if t.n.plan.repart[in.topic] != "" {
		t.decodeRepartitioned(src, in.topic, recs)
	} else if err := t.decode(src, in.topic, recs); err != nil {
		return err
	}
	t.pending[in.topic] = recs[len(recs)-1].Offset + 1
	if in.hwm >= 0 {
		t.n.o.Metrics.Lag(in.topic, t.part, in.hwm-t.pending[in.topic])
	}
	t.refreshIdle(t.n.o.Clock.Now())
	if err := t.drain(); err != nil {
		return err
	}
	return t.finish()
}

// decode turns records into one Arrow batch put into the source's bucket.
// Bad records go to the dead-letter topic.
func (t *task) decode(src *app.Source, topic string, recs []Record) error {
	n := t.n
	n.in.Add(int64(len(recs)))
	n.o.Metrics.RecordsIn(src.Name, len(recs))
	var rec arrow.Record
	var raws []rawRec
	if d := t.wired[topic]; d != nil {
		var err error
		if rec, err = t.decodeWired(src, topic, d, recs); err != nil {
			return err
		}
	} else if src.Format == "raw" {
		rec = rawRecord(src, recs, func(r *Record, reason string, err error) { t.deadRecord(src, topic, r, reason, err) })
	} else {
		d := t.decoders[topic]
		d.Reserve(len(recs))
		if t.n.plan.rawTopics[topic] {
			raws = make([]rawRec, 0, len(recs))
		}
		for i := range recs {
			r := &recs[i]
			if len(r.Value) > src.MaxRecordBytes {
				t.deadRecord(src, topic, r, ReasonTooLarge, fmt.Errorf("record of %d bytes exceeds max_record_bytes %d", len(r.Value), src.MaxRecordBytes))
				continue
			}
			var ext []byte
			if src.SessionHeader != "" {
				ext = r.Header(src.SessionHeader)
			}
			if err := d.AppendWith(r.Value, ext); err != nil {
				t.deadRecord(src, topic, r, ReasonDecode, err)
			} else if raws != nil {
				raws = append(raws, rawRec{key: r.Key, value: r.Value, headers: r.Headers})
			}
		}
		rec = d.NewRecord()
	}
	if rec.NumRows() == 0 {
		rec.Release()
		return nil
	}
	t.putFrom(t.buckets[src.Bucket], rec, "", nil, raws)
	return nil
}

// decodeWired decodes records of a connector's format (see WireFormat).
// A decoder that cannot reach what it depends on fails the cycle: the
// partition restarts from its last commit rather than lose good records.
func (t *task) decodeWired(src *app.Source, topic string, d RecordDecoder, recs []Record) (arrow.Record, error) {
	d.Reserve(len(recs))
	for i := range recs {
		r := &recs[i]
		if len(r.Value) > src.MaxRecordBytes {
			t.deadRecord(src, topic, r, ReasonTooLarge, fmt.Errorf("record of %d bytes exceeds max_record_bytes %d", len(r.Value), src.MaxRecordBytes))
			continue
		}
		err := d.Append(r)
		var bad *BadRecord
		switch {
		case err == nil:
		case errors.As(err, &bad):
			t.deadRecord(src, topic, r, bad.Reason, bad.Err)
		default:
			d.NewRecord().Release()
			return nil, &restartError{fmt.Errorf("source %s, offset %d: %w", src.Name, r.Offset, err)}
		}
	}
	return d.NewRecord(), nil
}

// deadRecord sends one bad input record to the dead-letter topic.
func (t *task) deadRecord(src *app.Source, topic string, r *Record, reason string, err error) {
	n := t.n
	if reason == ReasonDecode || reason == ReasonTooLarge || reason == ReasonSchema {
		n.o.Metrics.DecodeErrors(src.Name, 1)
	}
	n.logBadInput("bad input record sent to the dead-letter topic",
		"source", src.Name, "topic", topic, "partition", t.part, "offset", r.Offset, "reason", reason, "error", err)
	d := deadLetter{reason: reason, err: err, partition: t.part, topic: topic, offset: r.Offset}
	t.dead(d.record(r.Key, r.Value), reason)
}

// dead produces r to the dead-letter topic as part of this cycle, cut to
// the topic's record limit if need be.
func (t *task) dead(r *OutRecord, reason string) {
	r.Topic = t.n.plan.app.Kafka.DLQTopic
	fitDeadLetter(r, t.n.recordLimit(r.Topic))
	t.n.dead.Add(1)
	t.n.o.Metrics.DeadLetters(reason, 1)
	t.produce(r)
}

// produce writes r; the cycle commits only after it is acknowledged.
func (t *task) produce(r *OutRecord) { t.produceTo(r, nil) }

// produceTo is produce that also reports the record's offset to onOffset
// before the cycle's acks complete.
func (t *task) produceTo(r *OutRecord, onOffset func(int64)) {
	a := t.cur
	a.wg.Add(1)
	if onOffset == nil {
		t.w.Produce(r, a.doneFn)
		return
	}
	t.w.Produce(r, func(off int64, err error) {
		if err == nil {
			onOffset(off)
		}
		a.done(err)
	})
}

// deadRows sends every row of rec to the dead-letter topic as JSON.
func (t *task) deadRows(rec arrow.Record, d deadLetter) {
	d.partition = t.part
	for _, r := range d.rows(rec) {
		t.dead(r, d.reason)
	}
}
