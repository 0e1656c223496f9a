package server

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/ipc"
	"github.com/apache/arrow/go/v15/arrow/memory"

	"github.com/pheromone-go/pheromone/connectors/prom"
	"github.com/pheromone-go/pheromone/engine"
	"github.com/pheromone-go/pheromone/engine/app"
	"github.com/pheromone-go/pheromone/engine/codec"
	"github.com/pheromone-go/pheromone/internal/arrowx"
)

// apiHandler serves the HTTP API: invocations, sessions, and bucket and
// table queries.
type apiHandler struct {
	app  *app.App
	node *engine.Node
	// producer writes durable invocations and cancellations; metrics
	// counts refused requests (either may be nil in tests).
	producer engine.Producer
	metrics  *prom.Metrics
	// router forwards queries to the node that owns the partition; nil
	// answers from this node only.
	router *router
}

func (h *apiHandler) register(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/apps/{app}/invoke", h.invoke)
	mux.HandleFunc("GET /v1/sessions/{id}", h.session)
	mux.HandleFunc("DELETE /v1/sessions/{id}", h.cancel)
	mux.HandleFunc("GET /v1/sessions", h.list)
	mux.HandleFunc("GET /v1/apps/{app}/buckets/{bucket}", h.bucket)
	mux.HandleFunc("GET /v1/apps/{app}/tables/{table}", h.table)
}

// table serves the latest row per key of a table sink (?key= for one key).
func (h *apiHandler) table(w http.ResponseWriter, r *http.Request) {
	if !h.ownApp(w, r) {
		return
	}
	part, one, handled := h.route(w, r)
	if handled {
		return
	}
	q := r.URL.Query()
	rows, err := h.node.QueryTable(r.PathValue("table"), q.Get("key"))
	if err != nil {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": err.Error()})
		return
	}
	// A table's key need not be what its rows were partitioned by (the
	// source's key, or none): ?key= is routed to the partition the key
	// hashes to, but answered from every partition this node owns, and
	// when none holds it, from the other nodes too.
	byKey := q.Get("partition") == "" && q.Get("key") != ""
	switch {
	case one && !byKey:
		rows = slices.DeleteFunc(rows, func(t engine.TableRow) bool { return t.Partition != part })
	case h.router != nil:
		// A node keeps the state of partitions it no longer owns (or
		// follows as a standby): only its own answer.
		rows = slices.DeleteFunc(rows, func(t engine.TableRow) bool { return !h.node.Owns(t.Partition) })
	}
	// A key the hashed owner does not hold is asked of every node.
	keyMissing := byKey && len(rows) == 0 && h.router != nil && q.Get("routed") != routedFanOut && !wantsArrow(r)
	if h.fanOut(r, one) || keyMissing {
		others, err := gather[tableJSON](h.router, r)
		if err != nil {
			writeJSON(w, http.StatusBadGateway, map[string]string{"error": err.Error()})
			return
		}
		for _, o := range others {
			rows = append(rows, o.Rows...)
		}
		sort.SliceStable(rows, func(i, j int) bool {
			if rows[i].Partition != rows[j].Partition {
				return rows[i].Partition < rows[j].Partition
			}
			return rows[i].Key < rows[j].Key
		})
	}
	if wantsArrow(r) {
		rec, err := h.node.TableRecord(r.PathValue("table"), rows)
		if err != nil {
			writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
			return
		}
		writeArrow(w, rec.Schema(), []arrow.Record{rec})
		return
	}
	writeJSON(w, http.StatusOK, tableJSON{Table: r.PathValue("table"), Rows: rows})
}

type tableJSON struct {
	Table string            `json:"table"`
	Rows  []engine.TableRow `json:"rows"`
}

// bucket serves the live state of a bucket: objects held and, per trigger,
// how close it is to firing. Query parameters: key, session, limit.
func (h *apiHandler) bucket(w http.ResponseWriter, r *http.Request) {
	if !h.ownApp(w, r) {
		return
	}
	part, one, handled := h.route(w, r)
	if handled {
		return
	}
	limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
	asArrow := wantsArrow(r)
	view, err := h.node.QueryBucket(r.PathValue("bucket"), engine.BucketQuery{
		Key: r.URL.Query().Get("key"), Session: r.URL.Query().Get("session"), Limit: limit, Arrow: asArrow})
	if err != nil {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": err.Error()})
		return
	}
	if asArrow {
		writeArrow(w, h.node.BucketSchema(r.PathValue("bucket")), view.Records)
		return
	}
	if one {
		view.Partitions = slices.DeleteFunc(view.Partitions, func(p engine.PartitionView) bool { return p.Partition != part })
	}
	if h.fanOut(r, one) {
		others, err := gather[engine.BucketView](h.router, r)
		if err != nil {
			writeJSON(w, http.StatusBadGateway, map[string]string{"error": err.Error()})
			return
		}
		for _, o := range others {
			view.Partitions = append(view.Partitions, o.Partitions...)
		}
		sort.SliceStable(view.Partitions, func(i, j int) bool { return view.Partitions[i].Partition < view.Partitions[j].Partition })
	}
	writeJSON(w, http.StatusOK, view)
}

// SessionAnswer is the JSON answer of the invocation API (POST
// /v1/apps/{app}/invoke and GET /v1/sessions/{id}).
type SessionAnswer struct {
	Session string          `json:"session"`
	Status  string          `json:"status"`
	Result  json.RawMessage `json:"result,omitempty"`
	// Rows counts the answer's rows. Result holds one page of them, from
	// row From; Next, when set, is the first row of the next page (GET
	// /v1/sessions/{id}?from=Next). Truncated says only the first
	// KeptRows were kept (the answer exceeded engine.MaxResultBytes).
	Rows      int    `json:"rows,omitempty"`
	From      int    `json:"from,omitempty"`
	Next      int    `json:"next,omitempty"`
	Truncated bool   `json:"truncated,omitempty"`
	KeptRows  int    `json:"kept_rows,omitempty"`
	Error     string `json:"error,omitempty"`
	// Created and Finished (RFC 3339) are set for durable sessions.
	Created  string `json:"created,omitempty"`
	Finished string `json:"finished,omitempty"`
}

// doneJSON is the answer of a finished session.
func doneJSON(st engine.SessionStatus) SessionAnswer {
	j := SessionAnswer{Session: st.Session, Status: "done", Result: st.Result, Rows: st.Rows, From: st.From, Next: st.Next, Truncated: st.Truncated}
	if st.Truncated {
		j.KeptRows = st.Kept
	}
	return j
}

// ownApp answers 404 unless the path names this node's app.
func (h *apiHandler) ownApp(w http.ResponseWriter, r *http.Request) bool {
	if r.PathValue("app") != h.app.Name {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": fmt.Sprintf("no app %q on this node", r.PathValue("app"))})
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// maxInvokeBody bounds an invocation's request body (413 beyond).
const maxInvokeBody = 16 << 20

// invoke decodes the body (one JSON object or an array of them, in the
// entry source's schema), starts a session and, unless ?async=true, waits
// for its result.
func (h *apiHandler) invoke(w http.ResponseWriter, r *http.Request) {
	if !h.ownApp(w, r) {
		return
	}
	if h.app.Invoke == nil {
		writeJSON(w, http.StatusNotFound, SessionAnswer{Error: "the app has no invoke section"})
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxInvokeBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeJSON(w, http.StatusRequestEntityTooLarge, SessionAnswer{Status: "rejected",
				Error: fmt.Sprintf("request body over the limit of %d bytes", mbe.Limit)})
			return
		}
		writeJSON(w, http.StatusBadRequest, SessionAnswer{Error: err.Error()})
		return
	}
	id, err := sessionID(r)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, SessionAnswer{Status: "rejected", Error: err.Error()})
		return
	}
	var rec arrow.Record
	if strings.HasPrefix(r.Header.Get("Content-Type"), ArrowStream) {
		rec, err = h.decodeArrow(body, id)
	} else {
		rec, err = h.decode(body, id)
	}
	if err != nil {
		writeJSON(w, http.StatusBadRequest, SessionAnswer{Session: id, Status: "rejected", Error: err.Error()})
		return
	}
	if h.app.Invoke.IsDurable() {
		h.invokeDurable(w, r, id, rec)
		return
	}
	done, err := h.node.Invoke(r.Context(), id, rec)
	if err != nil {
		code := http.StatusServiceUnavailable
		if errors.Is(err, engine.ErrTooManyWaiting) {
			code = http.StatusTooManyRequests
			h.refused()
		}
		writeJSON(w, code, SessionAnswer{Session: id, Status: "rejected", Error: err.Error()})
		return
	}
	if r.URL.Query().Get("async") == "true" {
		writeJSON(w, http.StatusAccepted, SessionAnswer{Session: id, Status: "pending"})
		return
	}
	timeout := h.app.Invoke.TimeoutDuration()
	select {
	case <-done:
		st, _ := h.node.Session(id, 0)
		writeJSON(w, http.StatusOK, doneJSON(st))
	case <-time.After(timeout):
		writeJSON(w, http.StatusGatewayTimeout, SessionAnswer{Session: id, Status: "pending",
			Error: fmt.Sprintf("no result within %s; poll GET /v1/sessions/%s", timeout, id)})
	case <-r.Context().Done():
	}
}

func (h *apiHandler) session(w http.ResponseWriter, r *http.Request) {
	from := 0
	if f := r.URL.Query().Get("from"); f != "" {
		v, err := strconv.Atoi(f)
		if err != nil || v < 0 {
			writeJSON(w, http.StatusBadRequest, SessionAnswer{Session: r.PathValue("id"), Error: "from: want a row number ≥ 0"})
			return
		}
		from = v
	}
	if h.app.Invoke != nil && h.app.Invoke.IsDurable() {
		h.durableSession(w, r, r.PathValue("id"), from)
		return
	}
	st, ok := h.node.Session(r.PathValue("id"), from)
	if !ok {
		writeJSON(w, http.StatusNotFound, SessionAnswer{Session: r.PathValue("id"), Error: "unknown session"})
		return
	}
	if !st.Done {
		writeJSON(w, http.StatusOK, SessionAnswer{Session: st.Session, Status: "pending"})
		return
	}
	writeJSON(w, http.StatusOK, doneJSON(st))
}

// decode turns the request body into rows of the entry source's schema,
// with the session column set to session (whatever the body says).
func (h *apiHandler) decode(body []byte, session string) (arrow.Record, error) {
	return DecodeInvocation(h.app, body, session)
}

// DecodeInvocation reads a JSON invocation body (an object, or an array of
// them, in the entry source's schema) into rows of session, as POST
// /v1/apps/{app}/invoke does.
func DecodeInvocation(a *app.App, body []byte, session string) (arrow.Record, error) {
	if a.Invoke == nil {
		return nil, errors.New("the app has no invoke section")
	}
	src := a.EntrySource()
	d, err := codec.NewJSONDecoder(src.ArrowSchema())
	if err != nil {
		return nil, err
	}
	defer d.Release()
	if err := d.SetExternal(a.Bucket(a.Invoke.Entry).Session); err != nil {
		return nil, err
	}
	trimmed := bytes.TrimSpace(body)
	var rows []json.RawMessage
	if len(trimmed) > 0 && trimmed[0] == '[' {
		if err := json.Unmarshal(trimmed, &rows); err != nil {
			return nil, fmt.Errorf("body: %w", err)
		}
	} else {
		rows = []json.RawMessage{trimmed}
	}
	if len(rows) == 0 {
		return nil, errors.New("body: no objects")
	}
	d.Reserve(len(rows))
	for i, row := range rows {
		if err := d.AppendWith(row, []byte(session)); err != nil {
			return nil, fmt.Errorf("body[%d]: %w", i, err)
		}
	}
	return d.NewRecord(), nil
}

// decodeArrow reads an Arrow IPC stream body into rows of the entry
// source's schema: columns are matched by name and must have the same
// type; missing ones are null; the session column is set to session.
func (h *apiHandler) decodeArrow(body []byte, session string) (arrow.Record, error) {
	schema := h.app.EntrySource().ArrowSchema()
	sessionCol := h.app.Bucket(h.app.Invoke.Entry).Session
	if err := checkArrowStream(body); err != nil {
		return nil, err
	}
	rd, err := ipc.NewReader(bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("body: not an Arrow IPC stream: %w", err)
	}
	defer rd.Release()
	b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	defer b.Release()
	rows := 0
	for rd.Next() {
		in := rd.Record()
		n := int(in.NumRows())
		for c, f := range schema.Fields() {
			fb := b.Field(c)
			if f.Name == sessionCol {
				for i := 0; i < n; i++ {
					fb.(*array.StringBuilder).Append(session)
				}
				continue
			}
			idx := in.Schema().FieldIndices(f.Name)
			if len(idx) == 0 {
				for i := 0; i < n; i++ {
					fb.AppendNull()
				}
				continue
			}
			col := in.Column(idx[0])
			if !arrow.TypeEqual(col.DataType(), f.Type) {
				return nil, fmt.Errorf("body: column %q is %s, want %s", f.Name, col.DataType(), f.Type)
			}
			for i := 0; i < n; i++ {
				arrowx.AppendFrom(fb, col, i)
			}
		}
		rows += n
	}
	if err := rd.Err(); err != nil {
		return nil, fmt.Errorf("body: %w", err)
	}
	if rows == 0 {
		return nil, errors.New("body: no rows")
	}
	return b.NewRecord(), nil
}

func newSessionID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ArrowStream is the media type of Arrow IPC streams.
const ArrowStream = "application/vnd.apache.arrow.stream"

func wantsArrow(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), ArrowStream)
}

// writeArrow answers with an Arrow IPC stream of recs (released here).
func writeArrow(w http.ResponseWriter, schema *arrow.Schema, recs []arrow.Record) {
	defer func() {
		for _, r := range recs {
			r.Release()
		}
	}()
	w.Header().Set("Content-Type", ArrowStream)
	w.WriteHeader(http.StatusOK)
	iw := ipc.NewWriter(w, ipc.WithSchema(schema))
	for _, r := range recs {
		if err := iw.Write(r); err != nil {
			return
		}
	}
	_ = iw.Close()
}
