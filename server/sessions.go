package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/apache/arrow/go/v15/arrow"

	"github.com/pheromone-go/pheromone/engine"
	"github.com/pheromone-go/pheromone/engine/codec"
)

// Durable invocations over HTTP (docs/invocations.md): POST writes the
// request to the invocations topic and answers once Kafka has it (async)
// or once the session's owner — this node or another, found through the
// group like a query's — reports it finished; GET, DELETE and the list of
// sessions work from any node.

// maxPoll bounds one wait a node asks of a session's owner; a longer wait
// asks again (the owner may change meanwhile).
const maxPoll = 10 * time.Second

// sessionID picks an invocation's session: from Idempotency-Key (the same
// key is the same session, so a retry runs once), else the client's own
// (?session= or the Pheromone-Session header), else a new one.
func sessionID(r *http.Request) (string, error) {
	if k := r.Header.Get("Idempotency-Key"); k != "" {
		sum := sha256.Sum256([]byte(k))
		return "idem-" + hex.EncodeToString(sum[:16]), nil
	}
	id := r.URL.Query().Get("session")
	if id == "" {
		id = r.Header.Get("Pheromone-Session")
	}
	if id == "" {
		return newSessionID(), nil
	}
	if len(id) > 128 || strings.ContainsFunc(id, func(c rune) bool {
		return !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':')
	}) {
		return "", errors.New("session: use at most 128 letters, digits, '-', '_', '.' and ':'")
	}
	return id, nil
}

// InvocationValue encodes an invocation's rows as the invocations topic
// carries them: one JSON object per line.
func InvocationValue(rec arrow.Record) []byte {
	var enc codec.JSONEncoder
	var out []byte
	for i := 0; i < int(rec.NumRows()); i++ {
		if i > 0 {
			out = append(out, '\n')
		}
		out = enc.AppendRow(out, rec, i)
	}
	return out
}

// produceSync writes r and waits for Kafka's acknowledgement.
func (h *apiHandler) produceSync(ctx context.Context, r *engine.OutRecord) error {
	done := make(chan error, 1)
	h.producer.Produce(r, func(err error) { done <- err })
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// invokeDurable accepts an invocation durably and, unless ?async=true,
// waits for its result.
func (h *apiHandler) invokeDurable(w http.ResponseWriter, r *http.Request, id string, rec arrow.Record) {
	value := InvocationValue(rec)
	rec.Release()
	if limit := h.node.InvocationLimit(); len(value) > limit {
		writeJSON(w, http.StatusRequestEntityTooLarge, SessionAnswer{Session: id, Status: "rejected",
			Error: fmt.Sprintf("request of %d bytes (as rows) over the %d a durable invocation takes (the invocations topic's record limit); send smaller requests, or use invoke.durable: false", len(value), limit)})
		return
	}
	part := h.node.SessionPartition(id)
	err := h.produceSync(r.Context(), &engine.OutRecord{Topic: h.app.InvocationsTopic(), Key: []byte(id), Value: value,
		Headers: []engine.Header{{Key: engine.HeaderInvocation, Value: []byte(engine.InvocationRun)}}, Partition: part, ToPartition: true})
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, SessionAnswer{Session: id, Status: "rejected", Error: "not accepted: " + err.Error()})
		return
	}
	if r.URL.Query().Get("async") == "true" {
		writeJSON(w, http.StatusAccepted, SessionAnswer{Session: id, Status: engine.StatusAccepted})
		return
	}
	timeout := h.app.Invoke.TimeoutDuration()
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	code, ans := h.await(ctx, id, part)
	if code == 0 {
		code, ans = http.StatusGatewayTimeout, SessionAnswer{Session: id, Status: engine.StatusAccepted,
			Error: fmt.Sprintf("no result within %s; poll GET /v1/sessions/%s", timeout, id)}
		if ans2, ok := h.lastKnown(id, part); ok {
			ans.Status = ans2
		}
	}
	writeJSON(w, code, ans)
}

// lastKnown is the session's status as its owner shows it now, if this
// node is the owner.
func (h *apiHandler) lastKnown(id string, part int32) (string, bool) {
	if !h.node.Owns(part) {
		return "", false
	}
	st, found, err := h.node.DurableSession(id, 0)
	if err != nil || !found {
		return "", false
	}
	return st.Status, true
}

// await waits until session id finishes, asking its owner (this node, or
// the member that owns part, again if the owner changes); code 0 when ctx
// ended first.
func (h *apiHandler) await(ctx context.Context, id string, part int32) (int, SessionAnswer) {
	for ctx.Err() == nil {
		if h.router == nil || h.node.Owns(part) {
			// A second at a time: a partition this node loses meanwhile
			// is noticed, and the new owner asked.
			wctx, cancel := context.WithTimeout(ctx, time.Second)
			st, found, err := h.node.WaitSession(wctx, id)
			cancel()
			switch {
			case err == nil && found && st.Status != engine.StatusRunning:
				return http.StatusOK, durableJSON(st)
			case errors.Is(err, engine.ErrSessionsFull), errors.Is(err, engine.ErrTooManyWaiting):
				h.refused()
				return http.StatusTooManyRequests, SessionAnswer{Session: id, Status: "refused", Error: err.Error()}
			case ctx.Err() != nil:
				return 0, SessionAnswer{}
			case err == nil:
				continue // still running: wait again (the wait paced the loop)
			}
		} else if base, err := h.router.owner(ctx, part); err == nil {
			if code, ans, ok := h.pollOwner(ctx, base, id); ok {
				return code, ans
			}
		}
		select { // the owner is changing or not reachable: ask again
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
	return 0, SessionAnswer{}
}

// pollOwner asks the owner at base to wait for session id; ok when it
// answered with the session finished (or refused).
func (h *apiHandler) pollOwner(ctx context.Context, base, id string) (int, SessionAnswer, bool) {
	wait := maxPoll
	if dl, ok := ctx.Deadline(); ok {
		wait = min(wait, time.Until(dl))
	}
	u := fmt.Sprintf("%s/v1/sessions/%s?routed=%s&wait=%s", base, id, routedToOwner, wait.Round(time.Millisecond))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, SessionAnswer{}, false
	}
	resp, err := h.router.client.Do(req)
	if err != nil {
		return 0, SessionAnswer{}, false
	}
	defer resp.Body.Close()
	var ans SessionAnswer
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&ans); err != nil {
		return 0, SessionAnswer{}, false
	}
	switch {
	case resp.StatusCode == http.StatusTooManyRequests:
		return resp.StatusCode, ans, true
	case resp.StatusCode == http.StatusOK && ans.Status != engine.StatusRunning && ans.Status != engine.StatusAccepted:
		return resp.StatusCode, ans, true
	}
	return 0, SessionAnswer{}, false
}

func (h *apiHandler) refused() {
	if h.metrics != nil {
		h.metrics.InvocationRefused()
	}
}

// durableJSON is the API's view of a durable session.
func durableJSON(st engine.DurableStatus) SessionAnswer {
	j := SessionAnswer{Session: st.Session, Status: st.Status, Error: st.Error, Created: st.Created.UTC().Format(time.RFC3339Nano)}
	if !st.Finished.IsZero() {
		j.Finished = st.Finished.UTC().Format(time.RFC3339Nano)
	}
	if st.Done {
		j.Result, j.Rows, j.From, j.Next, j.Truncated = st.Result, st.Rows, st.From, st.Next, st.Truncated
		if st.Truncated {
			j.KeptRows = st.Kept
		}
	}
	return j
}

// durableSession answers GET /v1/sessions/{id} of a durable app: from the
// owner (forwarded there), waiting up to ?wait= for it to finish.
func (h *apiHandler) durableSession(w http.ResponseWriter, r *http.Request, id string, from int) {
	part := h.node.SessionPartition(id)
	if h.router != nil && r.URL.Query().Get("routed") == "" && !h.node.Owns(part) {
		base, err := h.router.owner(r.Context(), part)
		if err != nil {
			writeJSON(w, http.StatusServiceUnavailable, SessionAnswer{Session: id, Error: err.Error()})
			return
		}
		h.router.forward(w, r, base)
		return
	}
	if wait := r.URL.Query().Get("wait"); wait != "" {
		d, err := time.ParseDuration(wait)
		if err != nil || d < 0 {
			writeJSON(w, http.StatusBadRequest, SessionAnswer{Session: id, Error: "wait: want a duration"})
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), min(d, maxPoll))
		st, found, err := h.node.WaitSession(ctx, id)
		cancel()
		switch {
		case errors.Is(err, engine.ErrSessionsFull) || errors.Is(err, engine.ErrTooManyWaiting):
			h.refused()
			writeJSON(w, http.StatusTooManyRequests, SessionAnswer{Session: id, Status: "refused", Error: err.Error()})
			return
		case err == nil && found && st.Done && from == 0:
			writeJSON(w, http.StatusOK, durableJSON(st)) // maybe an early answer
			return
		}
	}
	st, found, err := h.node.DurableSession(id, from)
	switch {
	case errors.Is(err, engine.ErrNotOwner):
		writeJSON(w, http.StatusServiceUnavailable, SessionAnswer{Session: id, Error: "the session's partition is moving between nodes; retry"})
	case err != nil:
		writeJSON(w, http.StatusInternalServerError, SessionAnswer{Session: id, Error: err.Error()})
	case !found:
		writeJSON(w, http.StatusNotFound, SessionAnswer{Session: id,
			Error: "unknown session (not read by its partition yet, or past its session_ttl)"})
	default:
		writeJSON(w, http.StatusOK, durableJSON(st))
	}
}

// cancel answers DELETE /v1/sessions/{id}: a cancel record goes to the
// session's partition, from any node.
func (h *apiHandler) cancel(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if h.app.Invoke == nil || !h.app.Invoke.IsDurable() {
		writeJSON(w, http.StatusMethodNotAllowed, SessionAnswer{Session: id, Error: "only durable invocations can be cancelled (invoke.durable)"})
		return
	}
	err := h.produceSync(r.Context(), &engine.OutRecord{Topic: h.app.InvocationsTopic(), Key: []byte(id),
		Headers:   []engine.Header{{Key: engine.HeaderInvocation, Value: []byte(engine.InvocationCancel)}},
		Partition: h.node.SessionPartition(id), ToPartition: true})
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, SessionAnswer{Session: id, Error: err.Error()})
		return
	}
	writeJSON(w, http.StatusAccepted, SessionAnswer{Session: id, Status: "cancelling"})
}

// SessionList is the answer of GET /v1/sessions.
type SessionList struct {
	Sessions []SessionAnswer `json:"sessions"`
	// Next, when set, is the ?after= of the next page.
	Next string `json:"next,omitempty"`
}

// list answers GET /v1/sessions?status=&after=&limit=: the durable
// sessions of every node, by id, without their results.
func (h *apiHandler) list(w http.ResponseWriter, r *http.Request) {
	if h.app.Invoke == nil || !h.app.Invoke.IsDurable() {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "the app has no durable invoke section"})
		return
	}
	q := r.URL.Query()
	limit := 100
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10_000 {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "limit: want 1..10000"})
			return
		}
		limit = n
	}
	sts, err := h.node.ListSessions(q.Get("after"), limit+1, q.Get("status"))
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
		return
	}
	var out []SessionAnswer
	for _, st := range sts {
		st.Result = nil
		out = append(out, durableJSON(st))
	}
	if h.router != nil && q.Get("routed") == "" {
		others, err := gather[SessionList](h.router, r)
		if err != nil {
			writeJSON(w, http.StatusBadGateway, map[string]string{"error": err.Error()})
			return
		}
		for _, o := range others {
			out = append(out, o.Sessions...)
		}
		slices.SortFunc(out, func(a, b SessionAnswer) int { return strings.Compare(a.Session, b.Session) })
		out = slices.CompactFunc(out, func(a, b SessionAnswer) bool { return a.Session == b.Session })
	}
	list := SessionList{Sessions: out}
	if len(out) > limit {
		list.Sessions, list.Next = out[:limit], out[limit-1].Session
	}
	if list.Sessions == nil {
		list.Sessions = []SessionAnswer{}
	}
	writeJSON(w, http.StatusOK, list)
}
