package engine

import (
	"context"
	"fmt"
	"maps"
	"sync"

	"github.com/pheromone-go/pheromone/engine/app"
)

// Feed is the engine's side of a source: what a source connector calls to
// hand the node the records of the partitions it owns, and to learn where
// each partition resumes. A Kafka consumer group implements the source
// side today (connectors/kafka.Source); any source of partitioned, ordered,
// replayable records can (positions are offsets the engine stores with its
// state, committed with it). *Node implements Feed.
//
// The calling contract: Assign a partition before delivering its records,
// from StartOffset on (or the log start when it has none); deliver each
// partition's records in order, from one goroutine per partition; when
// RewindRequested fires, TakeRewinds says where partitions restart (a task
// discarded uncommitted cycles) and the source seeks there before
// delivering more; Revoke returns only once the partitions' state is
// committed. Committed is what the source may report as consumed (to its
// group, for lag tools). StartLook and ObserveLogEnds report what the
// source sees of each partition's log (its start and end), stamped before
// the look began: idleness and the offset-loss check use them.
type Feed interface {
	Assign(tps []TopicPartition) error
	Revoke(tps []TopicPartition)
	Assigned() []TopicPartition
	StartOffset(tp TopicPartition) (int64, bool)
	DeliverFetch(ctx context.Context, topic string, partition int32, recs []Record, next, end int64) error
	RewindRequested() <-chan struct{}
	TakeRewinds() map[TopicPartition]int64
	Committed() map[TopicPartition]int64
	StartLook() LookStart
	ObserveLogEnds(ranges map[TopicPartition]LogRange, look LookStart)
}

var _ Feed = (*Node)(nil)

// Assign creates (or extends) the tasks for newly assigned partitions. A
// new partition first opens its writer (a transactional one fences the
// previous owner) and restores its state from the changelog; partitions
// restore in parallel, and tasks already running keep processing. It
// returns once the new tasks are ready to process.
func (n *Node) Assign(tps []TopicPartition) error {
	<-n.started
	n.mu.Lock()
	var fresh []int32
	seen := map[int32]bool{}
	for _, tp := range tps {
		if n.plan.sources[tp.Topic] == nil {
			n.mu.Unlock()
			return fmt.Errorf("engine: assigned unknown topic %q", tp.Topic)
		}
		n.assigned[tp] = true
		if _, ok := n.tasks[tp.Partition]; !ok && !seen[tp.Partition] {
			seen[tp.Partition] = true
			fresh = append(fresh, tp.Partition)
			n.assigning[tp.Partition] = true
		}
	}
	n.mu.Unlock()

	type prepared struct {
		w      PartitionWriter
		repair [][]byte
		chunks map[string][]chunkRef
		err    error
	}
	prep := make([]prepared, len(fresh))
	var wg sync.WaitGroup
	for i, part := range fresh {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := &prep[i]
			if p.w, p.err = n.o.Writers(part); p.err != nil {
				return
			}
			tx, _ := p.w.(Transactional)
			if p.repair, p.chunks, p.err = n.restore(n.runCtx, part, tx != nil && tx.Transactional()); p.err != nil {
				p.w.Close()
				p.w = nil
			}
		}()
	}
	wg.Wait()

	n.mu.Lock()
	defer n.mu.Unlock()
	var firstErr error
	for i, part := range fresh {
		delete(n.assigning, part)
		p := prep[i]
		if p.err == nil && n.closing {
			p.w.Close()
			continue
		}
		if p.err == nil {
			var t *task
			if t, p.err = newTask(n, part, p.w, p.repair, p.chunks); p.err == nil {
				n.startTask(t)
				continue
			} // newTask closed the writer
		}
		if firstErr == nil {
			firstErr = fmt.Errorf("engine: partition %d: %w", part, p.err)
		}
	}
	n.ready.Store(true)
	return firstErr
}

// TakeRewinds returns the offsets the source must seek to for partitions
// whose task restarted, and lets records through to those tasks again. The
// source calls it from its poll goroutine before it delivers a fetch, so
// nothing fetched before the seek reaches a restarted task. A topic
// without a committed offset is rewound to its start.
func (n *Node) TakeRewinds() map[TopicPartition]int64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.rewinds) == 0 {
		return nil
	}
	out := map[TopicPartition]int64{}
	for part, offs := range n.rewinds {
		for topic := range n.plan.sources {
			tp := TopicPartition{topic, part}
			if !n.assigned[tp] {
				continue
			}
			off, ok := offs[tp]
			if !ok {
				off = 0
			}
			out[tp] = off
		}
		if t := n.tasks[part]; t != nil {
			t.rewinding = false
		}
		delete(n.rewinds, part)
	}
	return out
}

// RewindRequested is signalled when TakeRewinds has work, so a source
// blocked in a poll can wake up.
func (n *Node) RewindRequested() <-chan struct{} { return n.rewindC }

// StartOffset is the next offset to consume for tp according to the node's
// state, and whether the state has one.
func (n *Node) StartOffset(tp TopicPartition) (int64, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.tasks[tp.Partition]; !ok {
		return 0, false
	}
	off, ok := n.committed[tp]
	return off, ok
}

// Deliver hands a partition's records to its task. It blocks while the
// task's queue is full (backpressure) and returns ctx.Err() if ctx ends
// first. Records for a partition this node does not own are dropped. The
// engine owns recs after the call. hwm is the partition's high watermark
// (-1 if unknown), used for the lag metric and idleness.
func (n *Node) Deliver(ctx context.Context, topic string, partition int32, recs []Record, hwm int64) error {
	return n.DeliverFetch(ctx, topic, partition, recs, -1, hwm)
}

// DeliverFetch is Deliver with the fetch's log position: next is the offset
// after the last record fetched, control records (transaction markers)
// included, or -1 for "after the last of recs"; end is the partition's log
// end as the fetch saw it (the high watermark, or the last stable offset
// when reading committed), -1 if unknown. A fetch of control records only
// is delivered with no recs: it moves the task's position, which is how a
// task learns it has caught up with a transactional topic.
func (n *Node) DeliverFetch(ctx context.Context, topic string, partition int32, recs []Record, next, end int64) error {
	n.mu.Lock()
	t := n.tasks[partition]
	if t != nil && t.rewinding {
		t = nil // fetched before the seek to its last commit
	}
	n.mu.Unlock()
	if t == nil || (len(recs) == 0 && next < 0) {
		return nil
	}
	t.inflight.Add(1) // until processed: Node.Quiet counts it
	select {
	case t.inbox <- inbound{topic: topic, recs: recs, hwm: end, next: next, look: n.StartLook()}:
		return nil
	case <-t.done:
		t.inflight.Add(-1)
		return nil
	case <-ctx.Done():
		t.inflight.Add(-1)
		return ctx.Err()
	}
}

// StartLook returns the stamp of a look at the logs about to begin.
func (n *Node) StartLook() LookStart {
	return LookStart{At: n.o.Clock.Now(), seq: n.lookSeq.Add(1)}
}

// ObserveLogEnds tells the partition tasks what a look at their logs,
// begun at look (StartLook, taken before the look), found. A task counts
// as caught up — the only state in which idleness may move an event-time
// watermark — only while such looks are fresh and show it at the end of
// every one of its topics. The source calls it regularly (see
// connectors/kafka: the log-end probe).
func (n *Node) ObserveLogEnds(ranges map[TopicPartition]LogRange, look LookStart) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for seen := n.lookSeen.Load(); look.seq > seen && !n.lookSeen.CompareAndSwap(seen, look.seq); seen = n.lookSeen.Load() {
	}
	for tp, r := range ranges {
		if t := n.tasks[tp.Partition]; t != nil {
			t.prog.observe(tp.Topic, r, look)
		}
	}
	for _, t := range n.tasks {
		t.prog.wake()
	}
}

// Revoke stops the tasks whose partitions were all revoked; it returns after
// each of them committed its last complete cycle.
func (n *Node) Revoke(tps []TopicPartition) {
	n.mu.Lock()
	var stopping []*task
	for _, tp := range tps {
		delete(n.assigned, tp)
		delete(n.stopped, tp.Partition)
	}
	for p, t := range n.tasks {
		owned := false
		for tp := range n.assigned {
			if tp.Partition == p {
				owned = true
				break
			}
		}
		if !owned {
			t.stop()
			stopping = append(stopping, t)
			delete(n.tasks, p)
		}
	}
	n.mu.Unlock()
	for _, t := range stopping {
		<-t.done
		// Its gauges would otherwise show its last values for good.
		n.o.Metrics.PartitionGone(t.part)
	}
}

// Assigned lists the topic partitions assigned to this node.
func (n *Node) Assigned() []TopicPartition {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]TopicPartition, 0, len(n.assigned))
	for tp := range n.assigned {
		out = append(out, tp)
	}
	return out
}

// Committed returns the next offset to consume of every partition whose
// state this node committed, for the connector to commit to Kafka.
func (n *Node) Committed() map[TopicPartition]int64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	return maps.Clone(n.committed)
}

// SourceKind is a source kind a connector provides beyond Kafka topics
// (and the generator, which writes into one): it reads source s's records
// and hands them to the node through feed, from the offsets the node
// stores with its state. A binary registers it by name and starts it
// beside the node (server does); the engine needs nothing else.
type SourceKind interface {
	// Run feeds source s until ctx ends, then revokes what it assigned and
	// returns (nil when ctx ended).
	Run(ctx context.Context, s *app.Source, feed Feed) error
}
