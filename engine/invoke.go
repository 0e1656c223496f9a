package engine

import (
	"context"
	"errors"
	"hash/fnv"
	"slices"
	"sync"
	"time"

	"github.com/apache/arrow/go/v15/arrow"
)

// ErrNoPartition means the node owns no partition to run an invocation on.
var ErrNoPartition = errors.New("engine: this node owns no partition yet")

// SessionStatus is the state of one invocation.
type SessionStatus struct {
	Session string
	Done    bool
	// Result is a JSON array of the answer's rows From up to Next (or to
	// the end): the rows emitted to the result sink by the cycle that
	// first emitted any, in firing order, one page of at most
	// MaxResultPage bytes (and at least one row).
	Result []byte
	// Rows is how many rows the answer has; From is the first row in
	// Result; Next is the first row of the next page, 0 when Result
	// reaches the end of what is kept.
	Rows, From, Next int
	// Truncated says rows past the first Kept were not kept: the answer
	// was larger than MaxResultBytes.
	Truncated bool
	Kept      int
}

// MaxResultPage bounds one page of an invocation's result.
const MaxResultPage = 16 << 20

// MaxResultBytes bounds the finished results a node keeps, together and
// each: an answer larger than this keeps whole replies up to it and says it
// is truncated; older answers are forgotten to make room for newer ones.
const MaxResultBytes = 256 << 20

// answer is a finished invocation's result: a JSON array of rows.
type answer struct {
	body []byte
	rows int // rows of the whole answer
	kept int // rows in body
	// starts are the offsets of the rows in body, built when body is
	// larger than a page.
	starts []int
}

// joinReplies merges the JSON arrays of a session's replies into one,
// keeping whole replies up to limit bytes.
func joinReplies(reps []reply, limit int) answer {
	if len(reps) == 1 && len(reps[0].body) <= limit {
		return newAnswer(reps[0].body, reps[0].rows, reps[0].rows)
	}
	body := []byte{'['}
	rows, kept := 0, 0
	full := false
	for _, r := range reps {
		rows += r.rows
		inner := r.body[1 : len(r.body)-1]
		if full || len(body)+len(inner)+2 > limit {
			full = true
			continue
		}
		if len(body) > 1 && len(inner) > 0 {
			body = append(body, ',')
		}
		body = append(body, inner...)
		kept += r.rows
	}
	body = append(body, ']')
	return newAnswer(body, rows, kept)
}

func newAnswer(body []byte, rows, kept int) answer {
	a := answer{body: body, rows: rows, kept: kept}
	if len(body) > MaxResultPage {
		a.starts = rowStarts(body)
	}
	return a
}

// rowStarts returns the offset of each element of the JSON array body
// (the engine's own encoding of rows: objects, valid JSON).
func rowStarts(body []byte) []int {
	var starts []int
	depth := 0
	inStr, esc := false, false
	for i, c := range body {
		switch {
		case inStr:
			switch {
			case esc:
				esc = false
			case c == '\\':
				esc = true
			case c == '"':
				inStr = false
			}
		case c == '"':
			inStr = true
			if depth == 1 {
				starts = append(starts, i)
			}
		case c == '{' || c == '[':
			if depth == 1 {
				starts = append(starts, i)
			}
			depth++
		case c == '}' || c == ']':
			depth--
		case depth == 1 && c != ',' && c != ' ' && c != '\n' && c != '\t' && c != '\r' && (i == 0 || isDelim(body[i-1])):
			starts = append(starts, i) // a number, true, false or null
		}
	}
	return starts
}

func isDelim(c byte) bool {
	return c == '[' || c == ',' || c == ' ' || c == '\n' || c == '\t' || c == '\r'
}

// page returns the rows from row `from` on that fit in one page (at least
// one), and the first row after them (0: none).
func (a answer) page(from int) (body []byte, next int) {
	if a.starts == nil {
		if from > 0 {
			return []byte("[]"), 0
		}
		return a.body, 0
	}
	if from >= len(a.starts) {
		return []byte("[]"), 0
	}
	end := func(i int) int { // end of row i, before its comma or the ]
		if i+1 < len(a.starts) {
			return a.starts[i+1] - 1
		}
		return len(a.body) - 1
	}
	last := from
	for last+1 < len(a.starts) && end(last+1)-a.starts[from]+2 <= MaxResultPage {
		last++
	}
	out := make([]byte, 0, end(last)-a.starts[from]+2)
	out = append(out, '[')
	out = append(out, a.body[a.starts[from]:end(last)]...)
	out = append(out, ']')
	if last+1 < len(a.starts) {
		next = last + 1
	}
	return out, next
}

// Invoke is the in-memory invocation (invoke.durable: false; durable ones
// are records of the invocations topic, durable.go): it puts rec (rows of
// the invoke entry bucket's schema, session column set to session) into
// the entry bucket on a partition this node owns, chosen by the session,
// without a Kafka round trip. The returned channel is closed when a
// function emits to the result sink in that session; read the outcome with
// Session. ErrTooManyWaiting when invoke.max_waiting sessions are pending.
// The engine owns rec after the call.
func (n *Node) Invoke(ctx context.Context, session string, rec arrow.Record) (<-chan struct{}, error) {
	iv := n.plan.app.Invoke
	if iv == nil {
		rec.Release()
		return nil, errors.New("engine: the app has no invoke section")
	}
	n.mu.Lock()
	var parts []int32
	for p := range n.tasks {
		if _, stopped := n.stopped[p]; !stopped {
			parts = append(parts, p) // a stopped partition answers nothing
		}
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
	done, err := n.sessions.start(session, n.o.Clock.Now(), iv.SessionTimeoutDuration(), iv.MaxWaiting)
	if err != nil {
		rec.Release()
		return nil, err
	}
	n.mu.Lock()
	t := n.tasks[part]
	n.mu.Unlock()
	if t == nil {
		rec.Release()
		return nil, ErrNoPartition
	}
	t.inflight.Add(1) // until processed: Node.Quiet counts it
	select {
	case t.inbox <- inbound{invoke: rec}:
		return done, nil
	case <-t.done:
		t.inflight.Add(-1)
		rec.Release()
		return nil, ErrNoPartition
	case <-ctx.Done():
		t.inflight.Add(-1)
		rec.Release()
		return nil, ctx.Err()
	}
}

// Session returns the state of an invocation with the page of its result
// that starts at row from, and false for an unknown session.
func (n *Node) Session(id string, from int) (SessionStatus, bool) { return n.sessions.get(id, from) }

// sessionTable tracks invocations: pending ones and the most recent
// finished ones (bounded by count and by MaxResultBytes).
type sessionTable struct {
	mu       sync.Mutex
	pending  map[string]pendingSession
	finished map[string]answer
	order    []string
	bytes    int       // of the finished answers
	report   func(int) // the number pending, after each change (Metrics.Sessions)
	swept    time.Time // when pending sessions past their timeout were last dropped
}

const keepFinished = 10_000

// pendingSession is an in-memory session waiting for its answer.
type pendingSession struct {
	done    chan struct{}
	started time.Time
}

// start records a pending session. Sessions pending longer than timeout
// are forgotten (a chain that never answers must not stay for good), and
// at most max are pending: beyond, ErrTooManyWaiting.
func (s *sessionTable) start(id string, now time.Time, timeout time.Duration, max int) (<-chan struct{}, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pending == nil {
		s.pending, s.finished = map[string]pendingSession{}, map[string]answer{}
	}
	if len(s.pending) >= max || now.Sub(s.swept) >= time.Second {
		s.swept = now
		for k, p := range s.pending {
			if now.Sub(p.started) >= timeout {
				delete(s.pending, k)
			}
		}
	}
	if len(s.pending) >= max {
		return nil, ErrTooManyWaiting
	}
	ch := make(chan struct{})
	s.pending[id] = pendingSession{done: ch, started: now}
	if s.report != nil {
		s.report(len(s.pending))
	}
	return ch, nil
}

// complete records the first result of a pending session; later results
// and unknown sessions are ignored.
func (s *sessionTable) complete(id string, result answer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.pending[id]
	if !ok {
		return
	}
	ch := p.done
	delete(s.pending, id)
	if s.report != nil {
		s.report(len(s.pending))
	}
	s.finished[id] = result
	s.order = append(s.order, id)
	s.bytes += len(result.body)
	for len(s.order) > 1 && (len(s.order) > keepFinished || s.bytes > MaxResultBytes) {
		s.bytes -= len(s.finished[s.order[0]].body)
		delete(s.finished, s.order[0])
		s.order = s.order[1:]
	}
	close(ch)
}

// get returns a session's state with the page of its result that starts
// at row from.
func (s *sessionTable) get(id string, from int) (SessionStatus, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.pending[id]; ok {
		return SessionStatus{Session: id}, true
	}
	r, ok := s.finished[id]
	if !ok {
		return SessionStatus{}, false
	}
	body, next := r.page(from)
	return SessionStatus{Session: id, Done: true, Result: body, Rows: r.rows, From: from, Next: next,
		Truncated: r.kept < r.rows, Kept: r.kept}, true
}
