package engine

import (
	"context"
	"encoding/binary"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pheromone-go/pheromone/state"
)

// The node's side of durable invocations (durable.go has the task's): the
// stored form of a session, reading it for the API, and the requests held
// open until their sessions finish.

// DurableStatus is a durable session as its owner keeps it.
type DurableStatus struct {
	Session  string
	Status   string
	Created  time.Time
	Finished time.Time // zero while running
	Error    string
	// Result, Rows, From, Next, Truncated and Kept page the answer as
	// SessionStatus does.
	Result          []byte
	Rows, From      int
	Next, Kept      int
	Truncated, Done bool
}

// sessionRecord is the stored form of a session:
// version(1) status(1) created(8) finished(8) rows(4) kept(4) errLen(uvarint) err result.
type sessionRecord struct {
	status            sessStatus
	created, finished int64 // unix ms
	rows, kept        int
	err               string
	result            []byte
}

func (r *sessionRecord) encode() []byte {
	b := make([]byte, 0, 32+len(r.err)+len(r.result))
	b = append(b, 1, byte(r.status))
	b = binary.BigEndian.AppendUint64(b, uint64(r.created))
	b = binary.BigEndian.AppendUint64(b, uint64(r.finished))
	b = binary.BigEndian.AppendUint32(b, uint32(r.rows))
	b = binary.BigEndian.AppendUint32(b, uint32(r.kept))
	b = binary.AppendUvarint(b, uint64(len(r.err)))
	b = append(b, r.err...)
	return append(b, r.result...)
}

func decodeSessionRecord(b []byte) (sessionRecord, error) {
	if len(b) < 26 || b[0] != 1 {
		return sessionRecord{}, errors.New("engine: bad session record")
	}
	r := sessionRecord{status: sessStatus(b[1]),
		created: int64(binary.BigEndian.Uint64(b[2:])), finished: int64(binary.BigEndian.Uint64(b[10:])),
		rows: int(binary.BigEndian.Uint32(b[18:])), kept: int(binary.BigEndian.Uint32(b[22:]))}
	n, k := binary.Uvarint(b[26:])
	if k <= 0 || uint64(len(b)-26-k) < n {
		return sessionRecord{}, errors.New("engine: bad session record")
	}
	r.err = string(b[26+k : 26+k+int(n)])
	r.result = b[26+k+int(n):]
	return r, nil
}

// waiters are the requests held open for sessions' results.
type waiters struct {
	mu sync.Mutex
	m  map[string][]chan waitResult
	n  int
	// early holds the order: completion answers given before their cycle
	// is durable, until it is (tell): a request that starts waiting after
	// the answer came still gets it.
	early map[string]answer
}

// waitResult wakes a waiter: closed when the session finished durably;
// refused, or an early answer (order: completion) not durable yet.
type waitResult struct {
	refused bool
	early   *answer
}

// add registers a waiter for id, unless max are waiting.
func (w *waiters) add(id string, max int) (chan waitResult, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.n >= max {
		return nil, ErrTooManyWaiting
	}
	if w.m == nil {
		w.m = map[string][]chan waitResult{}
	}
	ch := make(chan waitResult, 1)
	w.m[id] = append(w.m[id], ch)
	w.n++
	return ch, nil
}

func (w *waiters) remove(id string, ch chan waitResult) {
	w.mu.Lock()
	defer w.mu.Unlock()
	chs := w.m[id]
	if i := slices.Index(chs, ch); i >= 0 {
		chs = slices.Delete(chs, i, i+1)
		w.n--
	}
	if len(chs) == 0 {
		delete(w.m, id)
	} else {
		w.m[id] = chs
	}
}

// tell wakes the waiters of durable events (committer goroutine).
func (w *waiters) tell(evs []sessionEvent) {
	if len(evs) == 0 {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, e := range evs {
		delete(w.early, e.id)
		for _, ch := range w.m[e.id] {
			if e.refused {
				ch <- waitResult{refused: true}
			} else {
				close(ch)
			}
			w.n--
		}
		delete(w.m, e.id)
	}
}

// earlyAnswer hands an answer of order: completion to the session's
// waiters before its cycle is durable, and keeps it for later ones until
// the cycle is (task goroutine).
func (w *waiters) earlyAnswer(id string, a answer) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.early == nil {
		w.early = map[string]answer{}
	}
	if _, first := w.early[id]; first {
		return // the first answer stands
	}
	w.early[id] = a
	for _, ch := range w.m[id] {
		ch <- waitResult{early: &a}
		w.n--
	}
	delete(w.m, id)
}

// SessionPartition is the partition that owns session id.
func (n *Node) SessionPartition(id string) int32 {
	return PartitionOf([]byte(id), n.plan.app.Partitions())
}

// ListSessions lists the durable sessions of the partitions this node
// owns whose id is after `after`, by id, at most limit, without their
// results; status filters ("" for all).
func (n *Node) ListSessions(after string, limit int, status string) ([]DurableStatus, error) {
	var out []DurableStatus
	for _, part := range n.Partitions() {
		prefix := sessionPrefix(n.plan.app.Name, part)
		err := n.o.Store.Scan(prefix, func(k, v []byte) error {
			id := string(k[len(prefix):])
			if id <= after {
				return nil
			}
			r, err := decodeSessionRecord(v)
			if err != nil {
				return err
			}
			if status != "" && r.status.String() != status {
				return nil
			}
			st := DurableStatus{Session: id, Status: r.status.String(), Created: time.UnixMilli(r.created), Error: r.err, Rows: r.rows}
			if r.status != sRunning {
				st.Finished = time.UnixMilli(r.finished)
			}
			out = append(out, st)
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	slices.SortFunc(out, func(a, b DurableStatus) int { return strings.Compare(a.Session, b.Session) })
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// DurableSession returns a durable session's status with the page of its
// result from row from, as its owner keeps it; found is false for a
// session its owner has not read (yet) or no longer keeps.
func (n *Node) DurableSession(id string, from int) (st DurableStatus, found bool, err error) {
	part := n.SessionPartition(id)
	if !n.Owns(part) {
		return DurableStatus{}, false, ErrNotOwner
	}
	v, err := n.o.Store.Get(sessionKey(n.plan.app.Name, part, id))
	if err != nil {
		if errors.Is(err, state.ErrNotFound) {
			return DurableStatus{}, false, nil
		}
		return DurableStatus{}, false, err
	}
	r, err := decodeSessionRecord(v)
	if err != nil {
		return DurableStatus{}, false, err
	}
	st = DurableStatus{Session: id, Status: r.status.String(), Created: time.UnixMilli(r.created), Error: r.err}
	if r.status != sRunning {
		st.Finished = time.UnixMilli(r.finished)
	}
	if r.status == sDone {
		ans := newAnswer(r.result, r.rows, r.kept)
		st.Result, st.Next = ans.page(from)
		st.Rows, st.From, st.Kept, st.Truncated, st.Done = r.rows, from, r.kept, r.kept < r.rows, true
	}
	return st, true, nil
}

// WaitSession waits until durable session id is no longer running or ctx
// ends, on the node that owns it, and returns it as DurableSession does —
// or, for an answer of order: completion, before its cycle is durable.
// ErrSessionsFull when its invocation was refused.
func (n *Node) WaitSession(ctx context.Context, id string) (DurableStatus, bool, error) {
	ch, err := n.waiting.add(id, n.plan.app.Invoke.MaxWaiting)
	if err != nil {
		return DurableStatus{}, false, err
	}
	defer n.waiting.remove(id, ch)
	// Registered first, so a session finishing now is not missed.
	n.waiting.mu.Lock()
	a, early := n.waiting.early[id]
	n.waiting.mu.Unlock()
	if early {
		return earlyStatus(id, &a), true, nil
	}
	st, found, err := n.DurableSession(id, 0)
	if err != nil || (found && st.Status != StatusRunning) {
		return st, found, err
	}
	select {
	case res, ok := <-ch:
		switch {
		case ok && res.refused:
			return DurableStatus{}, false, ErrSessionsFull
		case ok && res.early != nil:
			return earlyStatus(id, res.early), true, nil
		}
		return n.DurableSession(id, 0)
	case <-ctx.Done():
		return n.DurableSession(id, 0)
	}
}

// earlyStatus is a session answered early (order: completion).
func earlyStatus(id string, a *answer) DurableStatus {
	body, next := a.page(0)
	return DurableStatus{Session: id, Status: StatusDone, Result: body, Next: next, Rows: a.rows,
		Kept: a.kept, Truncated: a.kept < a.rows, Done: true}
}
