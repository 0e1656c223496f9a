package engine

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/pheromone-go/pheromone/state"
)

// maxPendingCommits bounds the cycles built but not yet durable per task;
// beyond it the task waits (backpressure on the disk).
const maxPendingCommits = 16

// pendingCommit is one cycle's state, committed once its acks are in.
type pendingCommit struct {
	acks    *acks
	batch   state.Batch
	offsets map[string]int64
	seq     uint64
	marker  int64 // changelog offset of the cycle's marker, -1 if none (set before acks complete)
	// changelog is the cycle's changelog, marker last, at-least-once: the
	// committer writes it after acks completed without error.
	changelog []*OutRecord
	// sessions are the durable sessions the cycle finished (or refused):
	// their waiters are told once it is durable.
	sessions []sessionEvent
}

// committer commits one partition task's cycles to the store, in order,
// each once Kafka acknowledged its writes, and publishes the offsets they
// reached. It is the commit pipeline of the task: the task builds a cycle's
// state batch at the end of the cycle and queues it, then runs the next
// cycle while the committer waits for the acks (and, at-least-once, writes
// the cycle's changelog only after them).
//
// Goroutines: task.run starts run and, on its way out, closes in and waits
// for done, so a task reports done only once every queued cycle is
// committed or dropped. Only the task goroutine calls queue and reads
// failed; only the committer goroutine writes the task's cycles to the
// store, touches unsynced and publishes offsets (Node.setCommitted).
// durable and restarts are atomics read by other goroutines.
type committer struct {
	n    *Node
	part int32
	w    PartitionWriter // writes the changelog at-least-once
	quit <-chan struct{} // the task's: abandons a commit waiting for disk space

	in     chan *pendingCommit
	done   chan struct{}
	failed chan error // the first failure; the committer commits nothing after it

	unsynced []*pendingCommit // committed without sync, awaiting the next sync
	durable  atomic.Uint64    // cycleSeq of the last synced batch
	// restarts counts the restarts since the partition last committed a
	// cycle (restartTask backs off by it).
	restarts atomic.Int64
	// cause is why the task was last restarted (see Node.Retrying).
	cause atomic.Pointer[string]
}

func newCommitter(n *Node, part int32, w PartitionWriter, quit <-chan struct{}) *committer {
	return &committer{n: n, part: part, w: w, quit: quit,
		in: make(chan *pendingCommit, maxPendingCommits), done: make(chan struct{}), failed: make(chan error, 1)}
}

// queue hands a built cycle to the committer (task goroutine); it blocks
// while maxPendingCommits cycles wait, and returns the committer's error
// once it failed.
func (c *committer) queue(pc *pendingCommit, blocked *time.Duration) error {
	select {
	case c.in <- pc:
		return nil
	default:
	}
	start := time.Now()
	defer func() { *blocked += time.Since(start) }()
	select {
	case c.in <- pc:
		return nil
	case err := <-c.failed:
		pc.acks.wg.Wait()
		pc.batch.Close()
		return err
	}
}

// run commits the queued cycles in order, each once Kafka acknowledged its
// writes (the committer goroutine). After a failure it commits nothing
// more.
func (c *committer) run() {
	defer close(c.done)
	var failed bool
	var lastSync time.Time
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		var due <-chan time.Time
		if len(c.unsynced) > 0 && !failed {
			wait := time.Until(lastSync.Add(c.n.o.SyncInterval))
			if timer == nil {
				timer = time.NewTimer(wait)
			} else {
				timer.Reset(wait)
			}
			due = timer.C
		}
		var pc *pendingCommit
		select {
		case p, ok := <-c.in:
			if !ok {
				// The task stopped: what it committed is made durable.
				if len(c.unsynced) > 0 && !failed {
					if err := c.sync(); err != nil {
						// Their offsets stay unpublished: consumed again.
						c.n.log.Warn("syncing the last commits at stop failed", "partition", c.part, "error", err)
					}
				}
				return
			}
			pc = p
		case <-due:
			if err := c.sync(); err != nil {
				failed = true
				c.failed <- err
			}
			lastSync = time.Now()
			continue
		}
		pc.acks.wg.Wait()
		if failed {
			pc.batch.Close()
			continue
		}
		err := pc.acks.err
		if err == nil && len(pc.changelog) > 0 {
			err = c.writeChangelog(pc)
		}
		if err != nil {
			// The cycle is not committed: the task restarts from the last
			// commit and the input is consumed again.
			err = &restartError{fmt.Errorf("produce: %w", err)}
			pc.batch.Close()
		} else {
			// Group commit: when more cycles are already queued, or the
			// last sync is more recent than SyncInterval, the commit is not
			// synced; a sync makes every earlier commit durable too.
			// Offsets are published only after a sync. A cycle that
			// finished durable sessions syncs at once (unless more cycles
			// are queued): a client waits for its answer.
			sync := !c.n.o.NoSync && len(c.in) == 0 && (time.Since(lastSync) >= c.n.o.SyncInterval || len(pc.sessions) > 0)
			if pc.marker >= 0 {
				pc.batch.Set(checkpointKey(c.n.plan.app.Name, c.part), binary.BigEndian.AppendUint64(nil, uint64(pc.marker+1)))
			}
			if !c.n.space.wait(c.quit) {
				// Stopped while the disk was full: the cycles left are
				// dropped as a crash would drop them; their offsets were
				// never published, so they are consumed again.
				c.n.log.Warn("partition stopped while its commits waited for disk space; its uncommitted cycles are discarded", "partition", c.part)
				pc.batch.Close()
				failed = true
				continue
			}
			start := time.Now()
			err = pc.batch.Commit(sync)
			c.n.o.Metrics.Commit(time.Since(start), sync)
			if sync {
				lastSync = time.Now()
			}
			if err == nil && !sync && !c.n.o.NoSync {
				c.unsynced = append(c.unsynced, pc)
				continue
			}
		}
		if err != nil {
			failed = true
			c.failed <- err
			continue
		}
		c.published(pc)
	}
}

// sync makes the unsynced commits durable and publishes them.
func (c *committer) sync() error {
	start := time.Now()
	err := c.n.o.Store.Sync()
	c.n.o.Metrics.Commit(time.Since(start), true)
	if err != nil {
		return err
	}
	last := c.unsynced[len(c.unsynced)-1]
	c.unsynced = c.unsynced[:len(c.unsynced)-1]
	c.published(last)
	return nil
}

// published records that pc, and every unsynced commit before it, is
// durable: their offsets are published.
func (c *committer) published(pc *pendingCommit) {
	for _, u := range c.unsynced {
		if u.offsets != nil {
			c.n.setCommitted(c.part, u.offsets)
		}
		c.n.waiting.tell(u.sessions)
	}
	c.unsynced = c.unsynced[:0]
	c.durable.Store(pc.seq)
	c.restarts.Store(0)
	if pc.offsets != nil {
		c.n.setCommitted(c.part, pc.offsets)
	}
	c.n.waiting.tell(pc.sessions)
}

// writeChangelog writes an at-least-once cycle's changelog (marker last)
// and waits for it (committer goroutine).
func (c *committer) writeChangelog(pc *pendingCommit) error {
	a := newAcks()
	last := len(pc.changelog) - 1
	for i, r := range pc.changelog {
		a.wg.Add(1)
		if i == last {
			c.w.Produce(r, func(off int64, err error) {
				if err == nil {
					pc.marker = off
				}
				a.done(err)
			})
			continue
		}
		c.w.Produce(r, a.doneFn)
	}
	a.wg.Wait()
	pc.changelog = nil
	return a.err
}

// restartError is a cycle that could not be committed — its transaction
// was aborted, or a record of it was not acknowledged: the task restarts
// from its last commit instead of failing the node.
type restartError struct{ err error }

func (e *restartError) Error() string { return "cycle not committed: " + e.err.Error() }
func (e *restartError) Unwrap() error { return e.err }

// commit ends a cycle: it builds the batch of bucket contents, trigger state
// and source offsets as they are now, and queues it for the committer. It
// blocks only while maxPendingCommits earlier cycles still wait
// (backpressure).
func (t *task) commit() error {
	t.cycleSeq++
	inner := t.n.o.Store.NewBatch()
	batch := inner
	logged := t.n.o.ChangelogTopic != ""
	if logged {
		batch = &loggedBatch{Batch: inner, t: t}
	}
	for _, k := range t.repair {
		switch v, err := t.n.o.Store.Get(k); {
		case err == nil:
			batch.Set(k, v)
		case errors.Is(err, state.ErrNotFound):
			batch.Delete(k)
		default:
			batch.Close()
			return err
		}
	}
	t.repair = nil
	for _, b := range t.order {
		if err := b.gc(batch, t.cycleSeq); err != nil {
			batch.Close()
			return err
		}
	}
	a := t.n.plan.app.Name
	for _, tr := range t.tableWrites {
		batch.Set(tableKey(a, tr.table, t.part, tr.key), tr.value)
	}
	t.tableWrites = t.tableWrites[:0]
	sessions := t.writeSessions(batch)
	var offs map[string]int64
	if len(t.pending) > 0 {
		offs = make(map[string]int64, len(t.pending))
		for topic, off := range t.pending {
			batch.Set(offsetKey(a, topic, t.part), binary.BigEndian.AppendUint64(nil, uint64(off)))
			offs[topic] = off
			t.offsets[topic] = off
		}
		clear(t.pending)
	}
	durable := t.cm.durable.Load()
	for _, b := range t.order {
		b.saved = b.next
		b.evict(t.n.o.MemoryBudget/int64(len(t.order)), durable)
		t.n.o.Metrics.BucketSize(b.name, t.part, b.pending(), b.bytes)
	}
	pc := &pendingCommit{acks: t.cur, batch: inner, offsets: offs, seq: t.cycleSeq, marker: -1, sessions: sessions}
	if logged {
		// The marker closes the cycle in the changelog: restore applies
		// only cycles whose marker it read.
		k := markerKey(a, t.part)
		inner.Set(k, binary.BigEndian.AppendUint64(nil, t.cycleSeq))
		mr := &OutRecord{Topic: t.n.o.ChangelogTopic, Key: k, Value: markerValue(t.cycleSeq), Partition: t.part, ToPartition: true}
		if t.txn {
			t.produceTo(mr, func(off int64) { pc.marker = off })
		} else {
			pc.changelog = append(t.deferred, mr)
			t.deferred = nil
		}
	}
	t.cur = newAcks()
	t.cyc.nextID, t.cyc.applyID = 0, 0
	if t.txn {
		now := t.n.o.Clock.Now()
		if len(t.txnPending) == 0 {
			t.txnStart = now
		}
		t.txnPending = append(t.txnPending, pc)
		if now.Sub(t.txnStart) >= t.n.o.CommitInterval {
			return t.endTxn()
		}
		return nil
	}
	return t.cm.queue(pc, &t.stats.BlockedCommit)
}

// endTxn commits the open transaction and hands its cycles to the
// committer. On failure the transaction is aborted and its cycles are
// dropped: the task must restart from its last committed state.
func (t *task) endTxn() error {
	if len(t.txnPending) == 0 {
		return nil
	}
	pend := t.txnPending
	t.txnPending = nil
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	start := time.Now()
	err := t.w.Commit(ctx)
	t.n.o.Metrics.Transaction(time.Since(start))
	cancel()
	if err != nil {
		for _, pc := range pend {
			pc.acks.wg.Wait()
			pc.batch.Close()
		}
		return &restartError{fmt.Errorf("transaction aborted: %w", err)}
	}
	for _, pc := range pend {
		if err := t.cm.queue(pc, &t.stats.BlockedCommit); err != nil {
			return err
		}
	}
	return nil
}
