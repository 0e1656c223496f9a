package engine

import (
	"maps"
	"sort"
)

// What Node tells the server and operators: readiness, the partitions it
// owns, partitions stopped for good, and running totals. Safe to call from
// any goroutine.

// Stopped lists partitions stopped for good (until the node restarts or
// the partition moves), with the reason.
func (n *Node) Stopped() map[int32]string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return maps.Clone(n.stopped)
}

// Ready reports whether the node has been assigned partitions and loaded
// their state, and no partition is restoring.
func (n *Node) Ready() bool {
	if !n.ready.Load() {
		return false
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.restoring) == 0 && len(n.stopped) == 0
}

// Retrying lists the partitions restarted from their last commit that
// have not committed a cycle since (a dependency such as a schema registry
// keeps failing them), with why.
func (n *Node) Retrying() map[int32]string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out map[int32]string
	for p, t := range n.tasks {
		if t.cm.restarts.Load() == 0 {
			continue
		}
		if why := t.cm.cause.Load(); why != nil {
			if out == nil {
				out = map[int32]string{}
			}
			out[p] = *why
		}
	}
	return out
}

// Quiet reports whether the node has nothing left to do until new input
// arrives or its clock reaches a timer: it owns partitions, none restores,
// every partition task waits with an empty inbox and no timer already due,
// and every cycle it ran is committed. With a ManualClock and input that
// has been delivered (committed offsets at the log ends), a quiet node's
// outputs are complete: `pheromone test` steps on it.
func (n *Node) Quiet() bool {
	if !n.ready.Load() {
		return false
	}
	now := n.o.Clock.Now().UnixNano()
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.tasks) == 0 || len(n.restoring) > 0 {
		return false
	}
	for _, t := range n.tasks {
		if !t.waiting.Load() || t.inflight.Load() > 0 || len(t.prog.signal) > 0 {
			return false
		}
		if u := t.waitUntil.Load(); u != 0 && u <= now {
			return false
		}
		if t.cm.durable.Load() < t.queued.Load() {
			return false
		}
	}
	return true
}

// LookedSince reports whether a look at the logs that began after
// LookTicket returned ticket has been observed: for event-time idleness, a
// test that moved its clock waits for one before it calls the node quiet.
func (n *Node) LookedSince(ticket uint64) bool { return n.lookSeen.Load() > ticket }

// LookTicket is the ticket of the newest look begun so far.
func (n *Node) LookTicket() uint64 { return n.lookSeq.Load() }

// EventTime reports whether the app has event-time triggers.
func (n *Node) EventTime() bool { return n.plan.eventTime }

// Owns reports whether this node runs partition part (a task that stopped
// after an aborted transaction and waits to restart does not count).
func (n *Node) Owns(part int32) bool {
	n.mu.Lock()
	t := n.tasks[part]
	n.mu.Unlock()
	if t == nil {
		return false
	}
	select {
	case <-t.done:
		return false
	default:
		return true
	}
}

// Partitions lists the partition tasks this node runs.
func (n *Node) Partitions() []int32 {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]int32, 0, len(n.tasks))
	for p := range n.tasks {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// Stats returns running totals.
func (n *Node) Stats() Stats {
	return Stats{
		RecordsIn:   n.in.Load(),
		RecordsOut:  n.out.Load(),
		Firings:     n.firings.Load(),
		DeadLetters: n.dead.Load(),
		Invocations: n.invocations.Load(),
	}
}
