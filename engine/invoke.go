package engine

import (
	"context"
	"errors"
	"hash/fnv"
	"slices"
	"sync"

	"github.com/apache/arrow/go/v15/arrow"
)

// ErrNoPartition means the node owns no partition to run an invocation on.
var ErrNoPartition = errors.New("engine: this node owns no partition yet")

// SessionStatus is the state of one invocation.
type SessionStatus struct {
	Session string
	Done    bool
	// Result is the JSON array of the rows emitted to the result sink by
	// the cycle that first emitted any, in firing order.
	Result []byte
	// Rows is how many rows that was; Truncated says Result holds only the
	// first of them (it would have exceeded maxReplyBytes).
	Rows      int
	Truncated bool
}

// maxReplyBytes bounds an invocation's result held in memory and returned.
const maxReplyBytes = 16 << 20

// answer is a finished invocation's result.
type answer struct {
	body      []byte
	rows      int
	truncated bool
}

// joinReplies merges the JSON arrays of a session's replies into one,
// keeping whole rows up to limit bytes.
func joinReplies(reps []reply, limit int) answer {
	if len(reps) == 1 && len(reps[0].body) <= limit {
		return answer{body: reps[0].body, rows: reps[0].rows}
	}
	a := answer{body: []byte{'['}}
	for _, r := range reps {
		a.rows += r.rows
		inner := r.body[1 : len(r.body)-1]
		if a.truncated || len(a.body)+len(inner)+2 > limit {
			a.truncated = true
			continue
		}
		if len(a.body) > 1 && len(inner) > 0 {
			a.body = append(a.body, ',')
		}
		a.body = append(a.body, inner...)
	}
	a.body = append(a.body, ']')
	return a
}

// Invoke puts rec (rows of the invoke entry bucket's schema, session column
// set to session) into the entry bucket on a partition this node owns,
// chosen by the session, without a Kafka round trip. The returned channel
// is closed when a function emits to the result sink in that session; read
// the outcome with Session. The engine owns rec after the call.
func (n *Node) Invoke(ctx context.Context, session string, rec arrow.Record) (<-chan struct{}, error) {
	iv := n.plan.app.Invoke
	if iv == nil {
		rec.Release()
		return nil, errors.New("engine: the app has no invoke section")
	}
	n.mu.Lock()
	var parts []int32
	for p := range n.tasks {
		parts = append(parts, p)
	}
	n.mu.Unlock()
	if len(parts) == 0 {
		rec.Release()
		return nil, ErrNoPartition
	}
	slices.Sort(parts)
	h := fnv.New32a()
	h.Write([]byte(session))
	part := parts[int(h.Sum32()%uint32(len(parts)))]
	done := n.sessions.start(session)
	n.mu.Lock()
	t := n.tasks[part]
	n.mu.Unlock()
	if t == nil {
		rec.Release()
		return nil, ErrNoPartition
	}
	select {
	case t.inbox <- inbound{invoke: rec}:
		return done, nil
	case <-t.done:
		rec.Release()
		return nil, ErrNoPartition
	case <-ctx.Done():
		rec.Release()
		return nil, ctx.Err()
	}
}

// Session returns the state of an invocation, and false for an unknown one.
func (n *Node) Session(id string) (SessionStatus, bool) { return n.sessions.get(id) }

// sessionTable tracks invocations: pending ones and the most recent
// finished ones (bounded).
type sessionTable struct {
	mu       sync.Mutex
	pending  map[string]chan struct{}
	finished map[string]answer
	order    []string
}

const keepFinished = 10_000

func (s *sessionTable) start(id string) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pending == nil {
		s.pending, s.finished = map[string]chan struct{}{}, map[string]answer{}
	}
	ch := make(chan struct{})
	s.pending[id] = ch
	return ch
}

// complete records the first result of a pending session; later results
// and unknown sessions are ignored.
func (s *sessionTable) complete(id string, result answer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch, ok := s.pending[id]
	if !ok {
		return
	}
	delete(s.pending, id)
	s.finished[id] = result
	s.order = append(s.order, id)
	if len(s.order) > keepFinished {
		delete(s.finished, s.order[0])
		s.order = s.order[1:]
	}
	close(ch)
}

func (s *sessionTable) get(id string) (SessionStatus, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.pending[id]; ok {
		return SessionStatus{Session: id}, true
	}
	if r, ok := s.finished[id]; ok {
		return SessionStatus{Session: id, Done: true, Result: r.body, Rows: r.rows, Truncated: r.truncated}, true
	}
	return SessionStatus{}, false
}
