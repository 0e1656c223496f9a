package server

import (
	"cmp"
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pheromone-go/pheromone/connectors/kafka"
	"github.com/pheromone-go/pheromone/connectors/prom"
	"github.com/pheromone-go/pheromone/engine"
	"github.com/pheromone-go/pheromone/engine/app"
	"github.com/pheromone-go/pheromone/triggers"
)

// The console: a page every node serves at / (static files embedded in
// the binary: it works offline) and the bounded JSON endpoints it polls
// under /v1/console/. Every endpoint answers from what the node already
// has — its metrics sampler, its committed state, a peek at the
// dead-letter topic cached for a second — so an open console costs the
// partition tasks nothing.

//go:embed console
var consoleFiles embed.FS

// console serves the console's endpoints of one node.
type console struct {
	a     *app.App
	node  *engine.Node
	smp   *sampler
	rt    *router
	conn  kafka.Conn
	tails chan struct{} // bounds the live tails open at once

	mu      sync.Mutex
	dlqAt   time.Time
	dlq     []deadLetterJSON
	dlqErr  error
	started time.Time
}

// maxTails is how many live tails a node serves at once.
const maxTails = 8

func newConsole(ctx context.Context, a *app.App, node *engine.Node, m *prom.Metrics, rt *router, conn kafka.Conn) *console {
	c := &console{a: a, node: node, smp: newSampler(m), rt: rt, conn: conn, tails: make(chan struct{}, maxTails), started: time.Now()}
	go c.smp.run(ctx)
	return c
}

func (c *console) register(mux *http.ServeMux) {
	static, _ := fs.Sub(consoleFiles, "console")
	files := http.FileServerFS(static)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
	mux.Handle("GET /console/", http.StripPrefix("/console/", files))
	mux.HandleFunc("GET /v1/console/topology", c.topology)
	mux.HandleFunc("GET /v1/console/stats", c.stats)
	mux.HandleFunc("GET /v1/console/partitions", c.partitions)
	mux.HandleFunc("GET /v1/console/deadletters", c.deadLetters)
	mux.HandleFunc("GET /v1/console/tail", c.tail)
}

// topoNode is one box of the topology graph.
type topoNode struct {
	ID     string `json:"id"`
	Kind   string `json:"kind"` // source, table, bucket, trigger, function, sink
	Name   string `json:"name"`
	Detail string `json:"detail"`
}

// topoEdge is one arrow; Rate names the series whose rate labels it.
type topoEdge struct {
	From string `json:"from"`
	To   string `json:"to"`
	Rate string `json:"rate,omitempty"`
}

// topology is the app as a graph: sources → buckets → triggers →
// functions → buckets and sinks, tables → the lookups that read them.
func (c *console) topology(w http.ResponseWriter, _ *http.Request) {
	a := c.a
	var nodes []topoNode
	var edges []topoEdge
	for _, s := range a.Sources {
		detail := s.Kind + " " + s.Topic
		if s.Connector() {
			detail = s.Kind
		}
		nodes = append(nodes, topoNode{ID: "source:" + s.Name, Kind: "source", Name: s.Name, Detail: detail + " (" + s.Format + ")"})
		edges = append(edges, topoEdge{From: "source:" + s.Name, To: "bucket:" + s.Bucket, Rate: "source:" + s.Name})
	}
	for _, t := range a.Tables {
		from := t.Topic
		if from == "" {
			from = t.File
		}
		nodes = append(nodes, topoNode{ID: "table:" + t.Name, Kind: "table", Name: t.Name, Detail: from})
	}
	for _, b := range a.Buckets {
		detail := ""
		if b.PartitionBy != "" {
			detail = "partition_by " + b.PartitionBy
		}
		nodes = append(nodes, topoNode{ID: "bucket:" + b.Name, Kind: "bucket", Name: b.Name, Detail: detail})
	}
	for _, t := range a.Triggers {
		nodes = append(nodes, topoNode{ID: "trigger:" + t.Name, Kind: "trigger", Name: t.Name, Detail: t.Primitive})
		edges = append(edges, topoEdge{From: "bucket:" + t.Bucket, To: "trigger:" + t.Name},
			topoEdge{From: "trigger:" + t.Name, To: "function:" + t.Function, Rate: "trigger:" + t.Name})
	}
	for _, f := range a.Functions {
		nodes = append(nodes, topoNode{ID: "function:" + f.Name, Kind: "function", Name: f.Name, Detail: f.Kind})
		if f.Table != "" {
			edges = append(edges, topoEdge{From: "table:" + f.Table, To: "function:" + f.Name})
		}
		for _, o := range f.Outputs {
			if a.Sink(o) != nil {
				edges = append(edges, topoEdge{From: "function:" + f.Name, To: "sink:" + o, Rate: "sink:" + o})
			} else {
				edges = append(edges, topoEdge{From: "function:" + f.Name, To: "bucket:" + o})
			}
		}
	}
	for _, s := range a.Sinks {
		detail := s.Kind
		if s.Kind == "kafka" {
			detail = "kafka " + s.Topic + " (" + s.Format + ")"
		}
		nodes = append(nodes, topoNode{ID: "sink:" + s.Name, Kind: "sink", Name: s.Name, Detail: detail})
	}
	writeJSON(w, http.StatusOK, map[string]any{"app": a.Name, "nodes": nodes, "edges": edges, "dlq": a.Kafka.DLQTopic})
}

// fnStats are one function's figures over the last second.
type fnStats struct {
	Rate   float64 `json:"rate"`
	Errors float64 `json:"errors"`
	P50ms  float64 `json:"p50_ms"`
	P99ms  float64 `json:"p99_ms"`
}

// statsJSON is a node's figures of the last second (series: of the last
// minutes, this node's).
type statsJSON struct {
	Node        string                  `json:"node"`
	Nodes       int                     `json:"nodes"`
	UptimeS     int                     `json:"uptime_s"`
	Sources     map[string]float64      `json:"sources"`
	Sinks       map[string]float64      `json:"sinks"`
	Triggers    map[string]float64      `json:"triggers"`
	Functions   map[string]fnStats      `json:"functions"`
	DeadLetters map[string]float64      `json:"dead_letters"`
	Blocked     map[string]float64      `json:"blocked"`
	Late        map[string]float64      `json:"late"`
	Dropped     map[string]float64      `json:"dropped"`
	Sessions    float64                 `json:"sessions"`
	Totals      map[string]float64      `json:"totals"`
	Series      map[string][][2]float64 `json:"series,omitempty"`
}

// stats is the group's rates (last second) and totals, summed over the
// nodes (p50 and p99: the largest of any node), with this node's series of
// the last minutes (?series=0 leaves them out).
func (c *console) stats(w http.ResponseWriter, r *http.Request) {
	st := c.localStats(r.URL.Query().Get("series") != "0")
	if r.URL.Query().Get("routed") != "" {
		writeJSON(w, http.StatusOK, st)
		return
	}
	st.Nodes = 1
	if c.rt.group != nil {
		if others, err := gather[statsJSON](c.rt, r); err == nil {
			for _, o := range others {
				st.add(o)
			}
		}
	}
	writeJSON(w, http.StatusOK, st)
}

// add sums o's figures into st.
func (st *statsJSON) add(o statsJSON) {
	st.Nodes++
	for _, m := range [][2]map[string]float64{{st.Sources, o.Sources}, {st.Sinks, o.Sinks}, {st.Triggers, o.Triggers},
		{st.DeadLetters, o.DeadLetters}, {st.Blocked, o.Blocked}, {st.Late, o.Late}, {st.Dropped, o.Dropped}, {st.Totals, o.Totals}} {
		if m[0] == nil {
			continue
		}
		for k, v := range m[1] {
			m[0][k] += v
		}
	}
	for k, f := range o.Functions {
		g := st.Functions[k]
		g.Rate += f.Rate
		g.Errors += f.Errors
		g.P50ms, g.P99ms = max(g.P50ms, f.P50ms), max(g.P99ms, f.P99ms)
		if st.Functions != nil {
			st.Functions[k] = g
		}
	}
	st.Sessions += o.Sessions
}

// localStats is this node's part of stats.
func (c *console) localStats(series bool) statsJSON {
	s := c.smp
	s.mu.Lock()
	defer s.mu.Unlock()
	out := statsJSON{Node: c.self(), UptimeS: int(time.Since(c.started).Seconds())}
	if s.cur != nil {
		rate := func(name, label string) map[string]float64 { return s.byLabel(name, label, s.rate) }
		value := func(name, label string) map[string]float64 {
			return s.byLabel(name, label, func(k string) float64 { return s.cur.values[k] })
		}
		fns := map[string]fnStats{}
		inv, errs := rate("function_invocations_total", "function"), rate("function_errors_total", "function")
		for _, f := range c.a.Functions {
			fs := fnStats{Rate: inv[f.Name], Errors: errs[f.Name]}
			k := "function_duration_seconds|function=" + f.Name
			fs.P50ms, fs.P99ms = s.cur.p50[k]*1000, s.cur.p99[k]*1000
			fns[f.Name] = fs
		}
		out.Sources = rate("records_in_total", "source")
		out.Sinks = rate("records_out_total", "sink")
		out.Triggers = rate("trigger_firings_total", "trigger")
		out.Functions = fns
		out.DeadLetters = value("dead_letters_total", "reason")
		out.Blocked = s.byLabel("task_blocked_seconds_total", "on", s.rate)
		out.Late = value("trigger_late_total", "trigger")
		out.Dropped = value("trigger_dropped_total", "trigger")
		out.Sessions = s.cur.values["invocation_sessions"]
		out.Totals = map[string]float64{"in": s.sum("records_in_total"), "out": s.sum("records_out_total"),
			"firings": s.sum("trigger_firings_total"), "dead_letters": s.sum("dead_letters_total")}
		if series {
			out.Series = map[string][][2]float64{}
			for name, ring := range s.series {
				out.Series[name] = ring.points()
			}
		}
	}
	return out
}

// sum is the total of every series of metric name (s.mu held).
func (s *sampler) sum(name string) float64 {
	t := 0.0
	for k, v := range s.cur.values {
		if k == name || strings.HasPrefix(k, name+"|") {
			t += v
		}
	}
	return t
}

// partJSON is one partition as the console shows it.
type partJSON struct {
	Partition int32              `json:"partition"`
	Node      string             `json:"node"`
	Lag       map[string]float64 `json:"lag"`
	InboxFill float64            `json:"inbox_fill"`
	Restoring *restoreJSON       `json:"restoring,omitempty"`
	Buckets   []bucketJSON       `json:"buckets"`
}

type restoreJSON struct {
	Remaining int64   `json:"remaining"`
	MB        float64 `json:"mb"`
	Seconds   float64 `json:"seconds"`
}

type bucketJSON struct {
	Bucket   string               `json:"bucket"`
	Held     int64                `json:"held"`
	Bytes    float64              `json:"bytes"`
	Triggers []engine.TriggerView `json:"triggers"`
}

// nodeJSON is one node's partitions.
type nodeJSON struct {
	Node       string     `json:"node"`
	Partitions []partJSON `json:"partitions"`
	Standbys   []int32    `json:"standbys"`
	Stopped    []string   `json:"stopped,omitempty"`
	Error      string     `json:"error,omitempty"`
}

// partitions is the cluster view: this node's partitions, and (unless
// asked by a peer) every other member's, each asked once.
func (c *console) partitions(w http.ResponseWriter, r *http.Request) {
	self := c.local()
	if r.URL.Query().Get("routed") != "" {
		writeJSON(w, http.StatusOK, self) // a peer gathering the cluster view
		return
	}
	nodes := []nodeJSON{self}
	if c.rt.group != nil {
		others, err := gather[nodeJSON](c.rt, r)
		if err != nil {
			nodes = append(nodes, nodeJSON{Node: "(peers)", Error: err.Error()})
		}
		nodes = append(nodes, others...)
	}
	sort.Slice(nodes[1:], func(i, j int) bool { return nodes[1+i].Node < nodes[1+j].Node })
	writeJSON(w, http.StatusOK, map[string]any{"nodes": nodes})
}

// local is this node's part of the cluster view.
func (c *console) local() nodeJSON {
	n := nodeJSON{Node: c.self(), Standbys: c.node.Standbys()}
	byPart := map[int32]*partJSON{}
	get := func(p int32) *partJSON {
		if pj := byPart[p]; pj != nil {
			return pj
		}
		pj := &partJSON{Partition: p, Node: c.self(), Lag: map[string]float64{}, Buckets: []bucketJSON{}}
		byPart[p] = pj
		return pj
	}
	for _, p := range c.node.Partitions() {
		get(p)
	}
	for _, rs := range c.node.Restoring() {
		get(rs.Partition).Restoring = &restoreJSON{Remaining: rs.Remaining, MB: float64(rs.Bytes) / 1e6, Seconds: rs.Elapsed.Seconds()}
	}
	for p, why := range c.node.Stopped() {
		n.Stopped = append(n.Stopped, fmt.Sprintf("partition %d: %s", p, why))
	}
	s := c.smp
	s.mu.Lock()
	if s.cur != nil {
		for k, v := range s.cur.values {
			labels := labelsOf(k)
			p, err := strconv.Atoi(labels["partition"])
			if err != nil {
				continue
			}
			switch {
			case strings.HasPrefix(k, "consumer_lag|"):
				get(int32(p)).Lag[labels["topic"]] = v
			case strings.HasPrefix(k, "task_inbox_fill_ratio|"):
				get(int32(p)).InboxFill = v
			}
		}
	}
	bytes := map[string]float64{}
	if s.cur != nil {
		for k, v := range s.cur.values {
			if strings.HasPrefix(k, "bucket_bytes|") {
				l := labelsOf(k)
				bytes[l["bucket"]+"/"+l["partition"]] = v
			}
		}
	}
	s.mu.Unlock()
	for _, b := range c.a.Buckets {
		view, err := c.node.QueryBucket(b.Name, engine.BucketQuery{Limit: 1})
		if err != nil {
			continue
		}
		for _, pv := range view.Partitions {
			for i := range pv.Triggers {
				// Bounded: the sessions or windows nearest to firing are
				// what the console shows; Pending still counts them all.
				tv := &pv.Triggers[i]
				slices.SortStableFunc(tv.Progress, func(a, b triggers.Progress) int { return cmp.Compare(missingOf(a), missingOf(b)) })
				tv.Progress = tv.Progress[:min(len(tv.Progress), maxProgress)]
			}
			get(pv.Partition).Buckets = append(get(pv.Partition).Buckets, bucketJSON{Bucket: b.Name, Held: pv.Held,
				Bytes: bytes[b.Name+"/"+strconv.Itoa(int(pv.Partition))], Triggers: pv.Triggers})
		}
	}
	for _, pj := range byPart {
		n.Partitions = append(n.Partitions, *pj)
	}
	sort.Slice(n.Partitions, func(i, j int) bool { return n.Partitions[i].Partition < n.Partitions[j].Partition })
	return n
}

// maxProgress bounds the sessions or windows listed per trigger and
// partition.
const maxProgress = 20

// missingOf is how far a session is from firing (0 for windows, which fire
// on time).
func missingOf(p triggers.Progress) int {
	if p.Need > 0 {
		return p.Need - p.Have
	}
	return 0
}

// labelsOf splits a series key's labels.
func labelsOf(k string) map[string]string {
	_, rest, _ := strings.Cut(k, "|")
	out := map[string]string{}
	for _, kv := range strings.Split(rest, ",") {
		if l, v, ok := strings.Cut(kv, "="); ok {
			out[l] = v
		}
	}
	return out
}

// deadLetterJSON is one dead letter as the console lists it.
type deadLetterJSON struct {
	Time      time.Time         `json:"time"`
	Partition int32             `json:"partition"`
	Offset    int64             `json:"offset"`
	Reason    string            `json:"reason"`
	Error     string            `json:"error"`
	Origin    string            `json:"origin"`
	Headers   map[string]string `json:"headers"`
	Value     string            `json:"value"`
}

// deadLetters lists the newest records of the dead-letter topic
// (?limit=, at most 100; read at most once a second whatever the number
// of consoles).
func (c *console) deadLetters(w http.ResponseWriter, r *http.Request) {
	limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
	if limit <= 0 || limit > 100 {
		limit = 50
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.dlqAt) >= time.Second {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		recs, err := kafka.Latest(ctx, c.conn, c.a.Kafka.DLQTopic, 100)
		cancel()
		c.dlqAt, c.dlqErr, c.dlq = time.Now(), err, c.dlq[:0]
		for _, p := range recs {
			d := deadLetterJSON{Time: p.Timestamp, Partition: p.Partition, Offset: p.Offset, Headers: map[string]string{}, Value: clip(p.Value, 512)}
			for _, h := range p.Headers {
				d.Headers[h.Key] = clip(h.Value, 512)
			}
			d.Reason, d.Error = d.Headers[engine.HeaderReason], d.Headers[engine.HeaderError]
			switch {
			case d.Headers[engine.HeaderTopic] != "":
				d.Origin = fmt.Sprintf("%s[%s]@%s", d.Headers[engine.HeaderTopic], d.Headers[engine.HeaderPartition], d.Headers[engine.HeaderOffset])
			case d.Headers[engine.HeaderFunction] != "":
				d.Origin = "function " + d.Headers[engine.HeaderFunction]
			case d.Headers[engine.HeaderBucket] != "":
				d.Origin = "bucket " + d.Headers[engine.HeaderBucket]
			}
			c.dlq = append(c.dlq, d)
		}
	}
	if c.dlqErr != nil {
		writeJSON(w, http.StatusBadGateway, map[string]string{"error": c.dlqErr.Error()})
		return
	}
	out := c.dlq
	if len(out) > limit {
		out = out[:limit]
	}
	writeJSON(w, http.StatusOK, map[string]any{"topic": c.a.Kafka.DLQTopic, "records": out})
}

// clip is b as text, cut to n bytes.
func clip(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}

// tail streams, as server-sent events, the records written from now on to
// a Kafka sink (?sink=) or the dead-letter topic (?sink=dlq), or the
// newest objects of a bucket (?bucket=) or rows of a table sink (?table=) once
// a second; at most 10 events a second, the rest counted as skipped.
func (c *console) tail(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	topic, bucket, table := "", q.Get("bucket"), q.Get("table")
	if name := q.Get("sink"); name != "" {
		switch s := c.a.Sink(name); {
		case name == "dlq":
			topic = c.a.Kafka.DLQTopic
		case s != nil && s.Kind == "kafka":
			topic = s.Topic
		default:
			writeJSON(w, http.StatusNotFound, map[string]string{"error": fmt.Sprintf("no Kafka sink %q", name)})
			return
		}
	}
	isTable := table != "" && c.a.Sink(table) != nil && c.a.Sink(table).Kind == "table"
	if topic == "" && (bucket == "" || c.a.Bucket(bucket) == nil) && !isTable {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "tail ?sink=NAME (or dlq), ?bucket=NAME or ?table=NAME"})
		return
	}
	select {
	case c.tails <- struct{}{}:
		defer func() { <-c.tails }()
	default:
		writeJSON(w, http.StatusTooManyRequests, map[string]string{"error": fmt.Sprintf("%d tails are open on this node; close one", maxTails)})
		return
	}
	fl, ok := w.(http.Flusher)
	if !ok {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "streaming unsupported"})
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	fl.Flush()
	send := func(event string, v any) bool {
		b, _ := json.Marshal(v)
		if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, b); err != nil {
			return false
		}
		fl.Flush()
		return true
	}
	ctx := r.Context()
	if topic != "" {
		var sent, skipped int
		window := time.Now()
		_ = kafka.Tail(ctx, c.conn, topic, func(p kafka.Peeked) bool {
			if time.Since(window) >= time.Second {
				if skipped > 0 && !send("skipped", skipped) {
					return false
				}
				sent, skipped, window = 0, 0, time.Now()
			}
			if sent >= 10 {
				skipped++
				return true
			}
			sent++
			headers := map[string]string{}
			for _, h := range p.Headers {
				headers[h.Key] = clip(h.Value, 256)
			}
			return send("record", map[string]any{"partition": p.Partition, "offset": p.Offset, "key": clip(p.Key, 256),
				"value": clip(p.Value, 2048), "headers": headers, "time": p.Timestamp})
		})
		return
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		var v any
		if bucket != "" {
			view, err := c.node.QueryBucket(bucket, engine.BucketQuery{Limit: 10})
			if err != nil {
				return
			}
			v = view
		} else {
			rows, err := c.node.QueryTable(table, "")
			if err != nil {
				return
			}
			v = map[string]any{"table": table, "rows": rows[:min(len(rows), 10)], "total": len(rows)}
		}
		if !send("snapshot", v) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// self is this node's name in the console: its URL (its member id when it
// has none).
func (c *console) self() string {
	if u, _ := memberURL(c.rt.self); u != "" {
		return u
	}
	return c.rt.self
}
