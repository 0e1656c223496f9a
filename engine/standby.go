package engine

import (
	"context"
	"errors"
	"slices"
)

// Standby replicas: a node keeps a warm copy of partitions it does not own
// by following their changelog into its own store, cycle by cycle, exactly
// as a restore does but without stopping at the end. When the group later
// assigns such a partition to the node, restore only reads what the
// follower had not applied yet, so failover does not wait for a full
// restore. Followers never touch a partition the node owns: Assign stops a
// partition's follower before it restores it.

type follower struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// SetStandbys makes the node follow the changelog of exactly parts (minus
// those it owns): followers start for new ones and stop for dropped ones.
// The server calls it whenever the group's assignment may have changed
// (server/route.go: the standby ring).
func (n *Node) SetStandbys(parts []int32) {
	if n.o.ChangelogReader == nil || n.o.ChangelogTopic == "" {
		return
	}
	<-n.started
	n.standbyMu.Lock()
	defer n.standbyMu.Unlock()
	n.mu.Lock()
	closing := n.closing
	want := map[int32]bool{}
	for _, p := range parts {
		if _, owned := n.tasks[p]; !owned && !n.assigning[p] && !closing {
			want[p] = true
		}
	}
	n.mu.Unlock()
	for p, f := range n.followers {
		if !want[p] {
			f.cancel()
			<-f.done
			delete(n.followers, p)
		}
	}
	for p := range want {
		if _, ok := n.followers[p]; ok {
			continue
		}
		ctx, cancel := context.WithCancel(n.runCtx)
		f := &follower{cancel: cancel, done: make(chan struct{})}
		n.followers[p] = f
		n.standbyWG.Add(1)
		go func() {
			defer n.standbyWG.Done()
			defer close(f.done)
			if err := n.follow(ctx, p); err != nil && ctx.Err() == nil {
				n.log.Warn("standby replica stopped", "partition", p, "error", err)
			}
		}()
	}
}

// Standbys lists the partitions this node keeps warm copies of.
func (n *Node) Standbys() []int32 {
	n.standbyMu.Lock()
	defer n.standbyMu.Unlock()
	out := make([]int32, 0, len(n.followers))
	for p := range n.followers {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// stopStandby stops partition part's follower, if any, and waits for it.
func (n *Node) stopStandby(part int32) {
	n.standbyMu.Lock()
	defer n.standbyMu.Unlock()
	if f, ok := n.followers[part]; ok {
		f.cancel()
		<-f.done
		delete(n.followers, part)
	}
}

// stopStandbys stops every follower (Run, on the way out).
func (n *Node) stopStandbys() {
	n.standbyMu.Lock()
	for p, f := range n.followers {
		f.cancel()
		delete(n.followers, p)
	}
	n.standbyMu.Unlock()
	n.standbyWG.Wait()
}

// follow applies partition part's changelog until ctx ends.
func (n *Node) follow(ctx context.Context, part int32) error {
	from, err := n.checkpoint(part)
	if err != nil {
		return err
	}
	ap := n.newApplier(part)
	ap.quit = ctx.Done()
	defer ap.close()
	err = n.o.ChangelogReader.Follow(ctx, part, from, func(off int64, key, value []byte) error {
		_, err := ap.apply(off, key, value)
		return err
	})
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	if serr := ap.sync(); err == nil {
		err = serr
	}
	return err
}
