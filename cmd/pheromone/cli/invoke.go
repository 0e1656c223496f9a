package cli

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/ipc"
	"github.com/apache/arrow/go/v15/arrow/memory"

	"github.com/pheromone-go/pheromone/engine"
	"github.com/pheromone-go/pheromone/engine/app"
	"github.com/pheromone-go/pheromone/engine/codec"
	"github.com/pheromone-go/pheromone/engine/fn"
)

// invokeHandler serves POST /v1/apps/{app}/invoke and GET /v1/sessions/{id}.
type invokeHandler struct {
	app  *app.App
	node *engine.Node
}

func (h *invokeHandler) register(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/apps/{app}/invoke", h.invoke)
	mux.HandleFunc("GET /v1/sessions/{id}", h.session)
	mux.HandleFunc("GET /v1/apps/{app}/buckets/{bucket}", h.bucket)
	mux.HandleFunc("GET /v1/apps/{app}/tables/{table}", h.table)
}

// table serves the latest row per key of a table sink (?key= for one key).
func (h *invokeHandler) table(w http.ResponseWriter, r *http.Request) {
	if r.PathValue("app") != h.app.Name {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": fmt.Sprintf("no app %q on this node", r.PathValue("app"))})
		return
	}
	rows, err := h.node.QueryTable(r.PathValue("table"), r.URL.Query().Get("key"))
	if err != nil {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": err.Error()})
		return
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
	writeJSON(w, http.StatusOK, map[string]any{"table": r.PathValue("table"), "rows": rows})
}

// bucket serves the live state of a bucket: objects held and, per trigger,
// how close it is to firing. Query parameters: key, session, limit.
func (h *invokeHandler) bucket(w http.ResponseWriter, r *http.Request) {
	if r.PathValue("app") != h.app.Name {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": fmt.Sprintf("no app %q on this node", r.PathValue("app"))})
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
	writeJSON(w, http.StatusOK, view)
}

type sessionJSON struct {
	Session string          `json:"session"`
	Status  string          `json:"status"`
	Result  json.RawMessage `json:"result,omitempty"`
	Error   string          `json:"error,omitempty"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// invoke decodes the body (one JSON object or an array of them, in the
// entry source's schema), starts a session and, unless ?async=true, waits
// for its result.
func (h *invokeHandler) invoke(w http.ResponseWriter, r *http.Request) {
	if r.PathValue("app") != h.app.Name {
		writeJSON(w, http.StatusNotFound, sessionJSON{Error: fmt.Sprintf("no app %q on this node", r.PathValue("app"))})
		return
	}
	if h.app.Invoke == nil {
		writeJSON(w, http.StatusNotFound, sessionJSON{Error: "the app has no invoke section"})
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 16<<20))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, sessionJSON{Error: err.Error()})
		return
	}
	id := newSessionID()
	var rec arrow.Record
	if strings.HasPrefix(r.Header.Get("Content-Type"), ArrowStream) {
		rec, err = h.decodeArrow(body, id)
	} else {
		rec, err = h.decode(body, id)
	}
	if err != nil {
		writeJSON(w, http.StatusBadRequest, sessionJSON{Session: id, Status: "rejected", Error: err.Error()})
		return
	}
	done, err := h.node.Invoke(r.Context(), id, rec)
	if err != nil {
		code := http.StatusServiceUnavailable
		writeJSON(w, code, sessionJSON{Session: id, Status: "rejected", Error: err.Error()})
		return
	}
	if r.URL.Query().Get("async") == "true" {
		writeJSON(w, http.StatusAccepted, sessionJSON{Session: id, Status: "pending"})
		return
	}
	timeout := h.app.Invoke.TimeoutDuration()
	select {
	case <-done:
		st, _ := h.node.Session(id)
		writeJSON(w, http.StatusOK, sessionJSON{Session: id, Status: "done", Result: st.Result})
	case <-time.After(timeout):
		writeJSON(w, http.StatusGatewayTimeout, sessionJSON{Session: id, Status: "pending",
			Error: fmt.Sprintf("no result within %s; poll GET /v1/sessions/%s", timeout, id)})
	case <-r.Context().Done():
	}
}

func (h *invokeHandler) session(w http.ResponseWriter, r *http.Request) {
	st, ok := h.node.Session(r.PathValue("id"))
	if !ok {
		writeJSON(w, http.StatusNotFound, sessionJSON{Session: r.PathValue("id"), Error: "unknown session"})
		return
	}
	if !st.Done {
		writeJSON(w, http.StatusOK, sessionJSON{Session: st.Session, Status: "pending"})
		return
	}
	writeJSON(w, http.StatusOK, sessionJSON{Session: st.Session, Status: "done", Result: st.Result})
}

// decode turns the request body into rows of the entry source's schema,
// with the session column set to session (whatever the body says).
func (h *invokeHandler) decode(body []byte, session string) (arrow.Record, error) {
	src := h.app.EntrySource()
	d, err := codec.NewJSONDecoder(src.ArrowSchema())
	if err != nil {
		return nil, err
	}
	defer d.Release()
	if err := d.SetExternal(h.app.Bucket(h.app.Invoke.Entry).Session); err != nil {
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
func (h *invokeHandler) decodeArrow(body []byte, session string) (arrow.Record, error) {
	schema := h.app.EntrySource().ArrowSchema()
	sessionCol := h.app.Bucket(h.app.Invoke.Entry).Session
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
				fn.AppendFrom(fb, col, i)
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

// cmdInvoke posts a request to a running node and prints the response.
func cmdInvoke(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("invoke", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", "", "file with the JSON input (default: standard input)")
	addr := fs.String("addr", "http://127.0.0.1:8080", "the node's HTTP address")
	async := fs.Bool("async", false, "return the session id at once")
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fmt.Fprintln(stderr, "pheromone invoke: usage: pheromone invoke APP [--data FILE] [--addr URL] [--async]")
		return 2
	}
	appName := args[0]
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	var body []byte
	var err error
	if *data == "" {
		body, err = io.ReadAll(os.Stdin)
	} else {
		body, err = os.ReadFile(*data)
	}
	if err != nil {
		fmt.Fprintln(stderr, "pheromone invoke:", err)
		return 1
	}
	url := strings.TrimSuffix(*addr, "/") + "/v1/apps/" + appName + "/invoke"
	if *async {
		url += "?async=true"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintln(stderr, "pheromone invoke:", err)
		return 1
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	fmt.Fprint(stdout, string(out))
	if resp.StatusCode >= 300 {
		return 1
	}
	return 0
}

// cmdQuery prints a bucket's live state from a running node.
func cmdQuery(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("query", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "http://127.0.0.1:8080", "the node's HTTP address")
	key := fs.String("key", "", "only objects with this key")
	session := fs.String("session", "", "only this session")
	limit := fs.Int("limit", 100, "objects per partition")
	if len(args) < 2 || strings.HasPrefix(args[0], "-") || strings.HasPrefix(args[1], "-") {
		fmt.Fprintln(stderr, "pheromone query: usage: pheromone query APP BUCKET [--key K] [--session S] [--limit N] [--addr URL]")
		return 2
	}
	if err := fs.Parse(args[2:]); err != nil {
		return 2
	}
	q := url.Values{}
	if *key != "" {
		q.Set("key", *key)
	}
	if *session != "" {
		q.Set("session", *session)
	}
	q.Set("limit", strconv.Itoa(*limit))
	u := strings.TrimSuffix(*addr, "/") + "/v1/apps/" + url.PathEscape(args[0]) + "/buckets/" + url.PathEscape(args[1]) + "?" + q.Encode()
	resp, err := http.Get(u)
	if err != nil {
		fmt.Fprintln(stderr, "pheromone query:", err)
		return 1
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	fmt.Fprint(stdout, string(out))
	if resp.StatusCode >= 300 {
		return 1
	}
	return 0
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
