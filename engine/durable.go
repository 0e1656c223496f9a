package engine

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/pheromone-go/pheromone/engine/app"
	"github.com/pheromone-go/pheromone/triggers"
)

// Durable invocations (docs/invocations.md). An accepted invocation is a
// record of the app's invocations topic, keyed by its session, on the
// partition PartitionOf(session) — so the task that owns that partition
// runs it, under the app's guarantee, like any input. The task keeps a
// record of each session in its state (Pebble and the changelog, written
// with the cycle): its status, its result, and its key for idempotency. A
// result emitted on another partition (a chain through a repartition
// topic) travels back to the owner as a result record on the same topic.
// Waiters — HTTP requests held open — are told once the cycle that
// finished the session is durable.

// HeaderInvocation names what a record of the invocations topic carries.
const HeaderInvocation = "pheromone.invocation"

// Kinds of invocation records.
const (
	InvocationRun    = "invoke" // rows of the entry source, one JSON object per line
	InvocationCancel = "cancel"
	InvocationResult = "result" // a result (a JSON array of rows) or a failure
)

// Headers of a result record.
const (
	headerRows   = "pheromone.rows"   // "<rows>/<kept>"
	headerFailed = "pheromone.failed" // the failure, instead of a result
)

// Session statuses as the API shows them.
const (
	StatusAccepted  = "accepted"
	StatusRunning   = "running"
	StatusDone      = "done"
	StatusFailed    = "failed"
	StatusTimedOut  = "timed_out"
	StatusCancelled = "cancelled"
)

type sessStatus uint8

const (
	sRunning sessStatus = iota + 1
	sDone
	sFailed
	sTimedOut
	sCancelled
)

func (s sessStatus) String() string {
	switch s {
	case sRunning:
		return StatusRunning
	case sDone:
		return StatusDone
	case sFailed:
		return StatusFailed
	case sTimedOut:
		return StatusTimedOut
	case sCancelled:
		return StatusCancelled
	}
	return "unknown"
}

// ErrSessionsFull refuses an invocation: its partition keeps as many
// running sessions as invoke.max_sessions allows.
var ErrSessionsFull = errors.New("engine: the session table of this partition is full")

// ErrTooManyWaiting refuses to hold one more request open
// (invoke.max_waiting).
var ErrTooManyWaiting = errors.New("engine: too many requests waiting for results")

// ErrNotOwner means this node does not run the session's partition.
var ErrNotOwner = errors.New("engine: this node does not own the session's partition")

// InvocationLimit bounds a durable invocation's request (its rows, one
// record of the invocations topic) and the result its session keeps (one
// state value, so one changelog record, and one record of the invocations
// topic when it comes from another partition): the topics' record limits
// less room for the key and headers. A longer result keeps whole replies
// up to it and says it is truncated.
func (n *Node) InvocationLimit() int {
	l := n.recordLimit(n.plan.app.InvocationsTopic())
	if n.o.ChangelogTopic != "" {
		l = min(l, n.recordLimit(n.o.ChangelogTopic))
	}
	return l - 1024
}

// sessionMeta is what a task keeps in memory of one durable session.
type sessionMeta struct {
	status  sessStatus
	created int64 // unix ms
}

// durableSessions is a task's table of its partition's sessions (task
// goroutine only).
type durableSessions struct {
	metas map[string]*sessionMeta
	// order lists sessions by creation from head on; the timeout sweep
	// has looked at those before timedOut. Entries whose meta is gone are
	// skipped.
	order    []orderEntry
	head     int
	timedOut int
	writes   map[string][]byte // to write with the next commit (nil: delete)
	events   []sessionEvent    // finished or refused this cycle
}

// orderEntry is a session in creation order; an entry whose session was
// dropped (or dropped and started again) no longer matches its meta.
type orderEntry struct {
	id      string
	created int64
}

// live returns the entry's session if it is still the one the entry was
// made for.
func (ds *durableSessions) live(e orderEntry) *sessionMeta {
	if m := ds.metas[e.id]; m != nil && m.created == e.created {
		return m
	}
	return nil
}

// sessionEvent tells waiters about a session once its cycle is durable.
type sessionEvent struct {
	id      string
	refused bool
}

// invocationsSource adds the invocations topic as a source of the entry
// bucket: the entry source's schema, the session column from the record
// key, no column required (as POST /invoke decodes).
func invocationsSource(a *app.App, sources map[string]*app.Source) {
	if !a.DurableInvoke() {
		return
	}
	src := *a.EntrySource()
	src.Name, src.Topic, src.Format, src.Key, src.EventTime = "invocations", a.InvocationsTopic(), "json", "", ""
	src.SessionHeader, src.SessionColumn = HeaderSession, a.Bucket(a.Invoke.Entry).Session
	src.MaxRecordBytes, src.Partitions = math.MaxInt32, a.Partitions()
	sources[src.Topic] = &src
}

// loadSessions reads the partition's sessions from the store.
func (t *task) loadSessions() error {
	ds := &durableSessions{metas: map[string]*sessionMeta{}, writes: map[string][]byte{}}
	t.sess = ds
	prefix := sessionPrefix(t.n.plan.app.Name, t.part)
	type created struct {
		id string
		at int64
	}
	var all []created
	err := t.n.o.Store.Scan(prefix, func(k, v []byte) error {
		r, err := decodeSessionRecord(v)
		if err != nil {
			return err
		}
		id := string(k[len(prefix):])
		ds.metas[id] = &sessionMeta{status: r.status, created: r.created}
		all = append(all, created{id, r.created})
		return nil
	})
	slices.SortStableFunc(all, func(a, b created) int { return int(a.at - b.at) })
	for _, c := range all {
		ds.order = append(ds.order, orderEntry{c.id, c.at})
	}
	t.n.o.Metrics.DurableSessions(t.part, len(ds.metas))
	return err
}

// invocations handles records of the invocations topic.
func (t *task) invocations(src *app.Source, topic string, recs []Record) {
	now := t.n.o.Clock.Now()
	for i := range recs {
		r := &recs[i]
		id := string(r.Key)
		switch string(r.Header(HeaderInvocation)) {
		case InvocationRun:
			t.startSession(src, topic, id, r, now)
		case InvocationCancel:
			t.cancelSession(id, now)
		case InvocationResult:
			if msg := r.Header(headerFailed); msg != nil {
				t.finishSession(id, sFailed, nil, 0, 0, string(msg), now)
				continue
			}
			rows, kept := parseRows(r.Header(headerRows))
			t.finishSession(id, sDone, r.Value, rows, kept, "", now)
		default:
			t.deadRecord(src, topic, r, ReasonDecode, fmt.Errorf("invocation record of unknown kind %q", r.Header(HeaderInvocation)))
		}
	}
}

func parseRows(h []byte) (rows, kept int) {
	a, b, _ := bytes.Cut(h, []byte{'/'})
	rows, _ = strconv.Atoi(string(a))
	kept, _ = strconv.Atoi(string(b))
	return rows, kept
}

// startSession runs an invocation record unless its session is known (a
// retry: it runs once) or the table is full (refused).
func (t *task) startSession(src *app.Source, topic, id string, r *Record, now time.Time) {
	ds := t.sess
	if _, known := ds.metas[id]; known {
		t.n.o.Metrics.SessionEvent("deduplicated")
		return
	}
	if !ds.makeRoom(t.n.plan.app.Invoke.MaxSessions) {
		ds.events = append(ds.events, sessionEvent{id: id, refused: true})
		t.n.o.Metrics.SessionEvent("refused")
		return
	}
	d := t.decoders[topic]
	var err error
	for line := range bytes.SplitSeq(r.Value, []byte{'\n'}) {
		if len(line) == 0 {
			continue
		}
		if err = d.AppendWith(line, []byte(id)); err != nil {
			break
		}
	}
	rec := d.NewRecord()
	if err == nil && rec.NumRows() == 0 {
		err = errors.New("no rows")
	}
	t.setSession(id, &sessionRecord{status: sRunning, created: now.UnixMilli()})
	t.n.o.Metrics.SessionEvent("started")
	if err != nil {
		rec.Release()
		t.finishSession(id, sFailed, nil, 0, 0, "request: "+err.Error(), now)
		return
	}
	t.put(t.buckets[src.Bucket], rec, "")
}

// makeRoom makes room for one more session, dropping the oldest finished
// one if need be; false when every kept session is still running.
func (ds *durableSessions) makeRoom(limit int) bool {
	if len(ds.metas) < limit {
		return true
	}
	for i := ds.head; i < len(ds.order); i++ {
		if m := ds.live(ds.order[i]); m != nil && m.status != sRunning {
			delete(ds.metas, ds.order[i].id)
			ds.writes[ds.order[i].id] = nil
			return true
		}
	}
	return false
}

// setSession records a new session (or a new status of one).
func (t *task) setSession(id string, r *sessionRecord) {
	ds := t.sess
	m := ds.metas[id]
	if m == nil {
		m = &sessionMeta{created: r.created}
		ds.metas[id] = m
		ds.order = append(ds.order, orderEntry{id, r.created})
	}
	m.status = r.status
	r.created = m.created
	ds.writes[id] = r.encode()
}

// finishSession ends a running session (a result, a failure, a timeout);
// anything else about a session that is not running is ignored.
func (t *task) finishSession(id string, st sessStatus, result []byte, rows, kept int, errMsg string, now time.Time) {
	m := t.sess.metas[id]
	if m == nil || m.status != sRunning {
		return
	}
	t.setSession(id, &sessionRecord{status: st, finished: now.UnixMilli(), rows: rows, kept: kept, err: errMsg, result: result})
	if st != sDone {
		t.dropSessionState(id)
	}
	t.sess.events = append(t.sess.events, sessionEvent{id: id})
	t.n.o.Metrics.SessionEvent(st.String())
}

// cancelSession cancels a running session; an unknown one is recorded as
// cancelled, so an invocation that arrives after its cancel does not run.
func (t *task) cancelSession(id string, now time.Time) {
	if _, known := t.sess.metas[id]; !known {
		if !t.sess.makeRoom(t.n.plan.app.Invoke.MaxSessions) {
			return
		}
		t.setSession(id, &sessionRecord{status: sCancelled, created: now.UnixMilli(), finished: now.UnixMilli()})
		t.sess.events = append(t.sess.events, sessionEvent{id: id})
		return
	}
	t.finishSession(id, sCancelled, nil, 0, 0, "cancelled", now)
}

// dropSessionState drops what the triggers of every bucket hold for the
// session (and the partial aggregates of its folded batches).
func (t *task) dropSessionState(id string) {
	for _, b := range t.order {
		for _, tr := range b.triggers {
			d, ok := tr.t.(triggers.SessionDropper)
			if !ok {
				continue
			}
			for _, pane := range d.DropSession(id) {
				if tr.fold != nil {
					tr.fold.take(pane)
				}
			}
		}
	}
}

// sweepSessions times out sessions that ran past session_timeout and drops
// the records of those past session_ttl; it reports whether it changed
// anything.
func (t *task) sweepSessions(now time.Time) bool {
	ds := t.sess
	if ds == nil {
		return false
	}
	iv := t.n.plan.app.Invoke
	ms := now.UnixMilli()
	changed := false
	for ; ds.timedOut < len(ds.order); ds.timedOut++ {
		id := ds.order[ds.timedOut].id
		m := ds.live(ds.order[ds.timedOut])
		if m == nil {
			continue
		}
		if m.created+iv.SessionTimeoutDuration().Milliseconds() > ms {
			break
		}
		if m.status == sRunning {
			t.finishSession(id, sTimedOut, nil, 0, 0, fmt.Sprintf("no result within session_timeout %s", iv.SessionTimeoutDuration()), now)
			changed = true
		}
	}
	for ; ds.head < len(ds.order); ds.head++ {
		id := ds.order[ds.head].id
		m := ds.live(ds.order[ds.head])
		if m == nil {
			continue
		}
		if m.created+iv.SessionTTLDuration().Milliseconds() > ms {
			break
		}
		delete(ds.metas, id)
		ds.writes[id] = nil
		t.n.o.Metrics.SessionEvent("expired")
		changed = true
	}
	if ds.head > 1024 && ds.head > len(ds.order)/2 {
		n := copy(ds.order, ds.order[ds.head:])
		clear(ds.order[n:])
		ds.order = ds.order[:n]
		ds.timedOut = max(ds.timedOut-ds.head, 0)
		ds.head = 0
	}
	return changed
}

// nextSessionTick is when the next session times out or expires (zero:
// none).
func (t *task) nextSessionTick() time.Time {
	ds := t.sess
	if ds == nil {
		return time.Time{}
	}
	iv := t.n.plan.app.Invoke
	var next int64
	for i := ds.timedOut; i < len(ds.order); i++ {
		if m := ds.live(ds.order[i]); m != nil {
			next = m.created + iv.SessionTimeoutDuration().Milliseconds()
			break
		}
	}
	for i := ds.head; i < len(ds.order); i++ {
		if m := ds.live(ds.order[i]); m != nil {
			if at := m.created + iv.SessionTTLDuration().Milliseconds(); next == 0 || at < next {
				next = at
			}
			break
		}
	}
	if next == 0 {
		return time.Time{}
	}
	return time.UnixMilli(next)
}

// sendResults hands the cycle's answers to their sessions' owners: this
// task's own sessions are finished here, others get a result record on the
// invocations topic (part of the cycle).
func (t *task) sendResults(now time.Time) {
	a := t.n.plan.app
	for session, reps := range t.replies {
		ans := joinReplies(reps, t.n.InvocationLimit())
		owner := PartitionOf([]byte(session), a.Partitions())
		if owner == t.part {
			t.finishSession(session, sDone, ans.body, ans.rows, ans.kept, "", now)
			continue
		}
		t.produce(&OutRecord{Topic: a.InvocationsTopic(), Key: []byte(session), Value: ans.body, Partition: owner, ToPartition: true,
			Headers: []Header{{HeaderInvocation, []byte(InvocationResult)}, {headerRows, fmt.Appendf(nil, "%d/%d", ans.rows, ans.kept)}}})
	}
	clear(t.replies)
}

// sessionFailed fails a session whose input was dead-lettered.
func (t *task) sessionFailed(session, why string, now time.Time) {
	a := t.n.plan.app
	owner := PartitionOf([]byte(session), a.Partitions())
	if owner == t.part {
		t.finishSession(session, sFailed, nil, 0, 0, why, now)
		return
	}
	t.produce(&OutRecord{Topic: a.InvocationsTopic(), Key: []byte(session), Partition: owner, ToPartition: true,
		Headers: []Header{{HeaderInvocation, []byte(InvocationResult)}, {headerFailed, []byte(why)}}})
}

// writeSessions adds the cycle's session changes to its batch and returns
// the events to tell once it is durable.
func (t *task) writeSessions(batch interface {
	Set(k, v []byte)
	Delete(k []byte)
}) []sessionEvent {
	ds := t.sess
	if ds == nil || (len(ds.writes) == 0 && len(ds.events) == 0) {
		return nil
	}
	a := t.n.plan.app.Name
	for id, v := range ds.writes {
		k := sessionKey(a, t.part, id)
		if v == nil {
			batch.Delete(k)
		} else {
			batch.Set(k, v)
		}
	}
	clear(ds.writes)
	ev := ds.events
	ds.events = nil
	t.n.o.Metrics.DurableSessions(t.part, len(ds.metas))
	return ev
}
