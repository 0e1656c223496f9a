// Package apptest runs an app's test cases (`*_test.yaml`, docs/testing.md)
// the way `pheromone run` runs the app — the same server, engine, decoding,
// triggers, functions, changelog and Pebble state, against an in-process
// Kafka-compatible broker over TCP — but on a virtual clock, stepping only
// when the node is quiet, so a case is deterministic and a 10-minute window
// takes no time. `pheromone test` and Go tests (Run) use it.
package apptest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/apache/arrow/go/v15/arrow"

	"github.com/pheromone-go/pheromone/connectors/kafka"
	"github.com/pheromone-go/pheromone/connectors/registry"
	"github.com/pheromone-go/pheromone/engine"
	"github.com/pheromone-go/pheromone/engine/app"
	"github.com/pheromone-go/pheromone/engine/fn"
	"github.com/pheromone-go/pheromone/server"
)

// File is a test file: the app it tests and its cases.
type File struct {
	// App is the app file, relative to the test file; default app.yaml.
	App string `yaml:"app"`
	// Start is the virtual clock's start (RFC 3339); default
	// 2026-01-01T00:00:00Z.
	Start string `yaml:"start"`
	Cases []Case `yaml:"cases"`
}

// Case is one test case: steps run in order on a fresh node and broker.
type Case struct {
	Name  string `yaml:"name"`
	Steps []Step `yaml:"steps"`
}

// Step is one of send, advance or expect.
type Step struct {
	Send *Send `yaml:"send"`
	// Advance moves the virtual clock (a Go duration: 10s, 5m).
	Advance string  `yaml:"advance"`
	Expect  *Expect `yaml:"expect"`
	// Restart stops the node (as a clean shutdown does) and starts it again
	// on the same state and broker.
	Restart bool `yaml:"restart"`
	// Invoke runs the app's invocation with data and checks its result.
	Invoke *Invoke `yaml:"invoke"`
}

// Invoke is one invocation (POST /v1/apps/{app}/invoke) and the result
// rows it must answer.
type Invoke struct {
	Data   []map[string]any `yaml:"data"`
	Expect []map[string]any `yaml:"expect"`
	Match  string           `yaml:"match"`
}

// Send writes records to a source's topic, or to a reference table's.
type Send struct {
	Source  string   `yaml:"source"`
	Table   string   `yaml:"table"`
	Records []Record `yaml:"records"`
}

// Record is one record sent: its value a JSON object (written as JSON) or a
// string (written as it is).
type Record struct {
	Key     string            `yaml:"key"`
	Value   any               `yaml:"value"`
	Headers map[string]string `yaml:"headers"`
}

// Expect checks what a sink (or the dead-letter topic) received since the
// last expectation on it. Records name the fields they check.
type Expect struct {
	Sink string `yaml:"sink"`
	// Table checks every row a table sink holds now (not only new ones).
	Table string `yaml:"table"`
	// Trigger checks a trigger's pending sessions or windows now (fields
	// session, group, have, need, missing, window_start, window_end) in
	// Records.
	Trigger     string           `yaml:"trigger"`
	DeadLetters []map[string]any `yaml:"dead_letters"`
	Records     []map[string]any `yaml:"records"`
	// Match is unordered (default: the same records in any order), exact
	// (the same records in order) or subset (these records among others).
	Match string `yaml:"match"`
}

// Result is one case's outcome.
type Result struct {
	File, Case string
	Passed     bool
	// Skipped says why the case did not run (a `kind: go` function this
	// binary does not have).
	Skipped string
	// Failure says what differed, with the step's line in the test file.
	Failure  string
	Duration time.Duration
}

// Options tune Run.
type Options struct {
	// Run selects the cases whose name matches (like go test -run).
	Run *regexp.Regexp
	// Functions are the app's `kind: go` functions.
	Functions map[string]fn.Function
	// Connectors validate the app (default server.Connectors()).
	Connectors *app.Connectors
	// Timeout bounds each wait for the node to settle; default 10 s.
	Timeout time.Duration
}

// Load reads a test file, with the line of every step.
func Load(path string) (*File, map[*Step]int, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	var f File
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	var root yaml.Node
	_ = yaml.Unmarshal(raw, &root)
	lines := map[*Step]int{}
	if cases := find(&root, "cases"); cases != nil {
		for i, c := range cases.Content {
			if steps := find(c, "steps"); steps != nil && i < len(f.Cases) {
				for j, s := range steps.Content {
					if j < len(f.Cases[i].Steps) {
						lines[&f.Cases[i].Steps[j]] = s.Line
					}
				}
			}
		}
	}
	if f.App == "" {
		f.App = "app.yaml"
	}
	if !filepath.IsAbs(f.App) {
		f.App = filepath.Join(filepath.Dir(path), f.App)
	}
	return &f, lines, nil
}

// find is the value of key in a YAML mapping (or the document's).
func find(n *yaml.Node, key string) *yaml.Node {
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	if n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// Run runs the cases of the test file at path.
func Run(ctx context.Context, path string, o Options) ([]Result, error) {
	f, lines, err := Load(path)
	if err != nil {
		return nil, err
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if f.Start != "" {
		if start, err = time.Parse(time.RFC3339, f.Start); err != nil {
			return nil, fmt.Errorf("%s: start: %w", path, err)
		}
	}
	skip := ""
	if a, err := app.Parse(mustRead(f.App)); err == nil {
		for _, fn := range a.Functions {
			if _, ok := o.Functions[fn.Name]; fn.Kind == "go" && !ok {
				skip = fmt.Sprintf("the Go function %q is not in this binary: run the test with the binary that registers it (apptest.Options.Functions)", fn.Name)
			}
		}
	}
	var out []Result
	for i := range f.Cases {
		c := &f.Cases[i]
		if o.Run != nil && !o.Run.MatchString(c.Name) {
			continue
		}
		if skip != "" {
			out = append(out, Result{File: path, Case: c.Name, Passed: true, Skipped: skip})
			continue
		}
		t0 := time.Now()
		err := runCase(ctx, path, f, c, lines, start, o)
		r := Result{File: path, Case: c.Name, Passed: err == nil, Duration: time.Since(t0)}
		if err != nil {
			r.Failure = err.Error()
		}
		out = append(out, r)
	}
	return out, nil
}

// mustRead is the file's bytes (nil if it cannot be read: loading reports
// that).
func mustRead(path string) []byte {
	b, _ := os.ReadFile(path)
	return b
}

// stepError is a failed step, with its line.
func stepError(path string, line int, format string, args ...any) error {
	return fmt.Errorf("%s:%d: %s", filepath.Base(path), line, fmt.Sprintf(format, args...))
}

// runCase runs one case on a fresh broker and node.
func runCase(ctx context.Context, path string, f *File, c *Case, lines map[*Step]int, start time.Time, o Options) error {
	conns := server.Connectors()
	if o.Connectors != nil {
		conns = *o.Connectors
	}
	a, err := app.LoadWith(f.App, conns)
	if err != nil {
		return err
	}
	// Records come only from the case: generators are plain topics here.
	for i := range a.Sources {
		if a.Sources[i].Kind == "generator" {
			a.Sources[i].Kind, a.Sources[i].Generator = "kafka", nil
		}
	}
	b, err := kafka.StartBroker("127.0.0.1:0", "")
	if err != nil {
		return err
	}
	defer b.Close()
	dir, err := os.MkdirTemp("", "pheromone-test")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	clock := engine.NewManualClock(start)
	h := &harness{a: a, clock: clock, ends: map[engine.TopicPartition]int64{}, read: map[string]map[int32]int64{}, timeout: o.Timeout}
	if a.UsesRegistry() {
		// Registry formats: a registry of the case's own, as `pheromone
		// run` serves beside its embedded broker.
		reg, err := registry.StartEmbedded("127.0.0.1:0", "")
		if err != nil {
			return err
		}
		defer reg.Close()
		if a.SchemaRegistry == nil || a.SchemaRegistry.URL == "" {
			a.SchemaRegistry = &app.SchemaRegistry{URL: reg.URL()}
		}
		if h.reg, err = registry.NewClient(a.SchemaRegistry.URL, a.SchemaRegistry, os.Getenv); err != nil {
			return err
		}
	}
	h.startNode = func() error {
		nctx, cancel := context.WithCancel(ctx)
		started := make(chan server.Info, 1)
		done := make(chan error, 1)
		go func() {
			done <- server.Run(nctx, a, server.DataDir(dir), server.Brokers(b.Addrs()...), server.Clock(clock), server.Functions(o.Functions),
				server.ProbeInterval(2*time.Millisecond),
				server.Logger(slog.New(slog.NewTextHandler(io.Discard, nil))), server.OnStarted(func(i server.Info) { started <- i }))
		}()
		select {
		case i := <-started:
			h.node = i.Node
			h.stopNode = func() error { cancel(); return <-done }
			return nil
		case err := <-done:
			cancel()
			return fmt.Errorf("the node did not start: %w", err)
		}
	}
	if err := h.startNode(); err != nil {
		return err
	}
	defer func() { _ = h.stopNode() }()
	conn := kafka.Plain(b.Addrs()...)
	prod, err := kafka.NewProducer(conn)
	if err != nil {
		return err
	}
	defer prod.Close()
	h.prod, h.conn = prod, conn
	if err := h.settle(ctx); err != nil {
		return fmt.Errorf("the node did not start: %w", err)
	}
	for i := range c.Steps {
		s := &c.Steps[i]
		var err error
		switch {
		case s.Send != nil:
			err = h.send(ctx, s.Send)
		case s.Advance != "":
			var d time.Duration
			if d, err = time.ParseDuration(s.Advance); err == nil {
				ticket := h.node.LookTicket()
				clock.Advance(d)
				err = h.settleAfter(ctx, ticket)
			}
		case s.Expect != nil:
			err = h.expect(ctx, s.Expect)
		case s.Invoke != nil:
			err = h.invoke(ctx, s.Invoke)
		case s.Restart:
			if err = h.stopNode(); err == nil {
				if err = h.startNode(); err == nil {
					err = h.settle(ctx)
				}
			}
		default:
			err = errors.New("a step is one of send, advance, expect, invoke or restart")
		}
		if err != nil {
			return stepError(path, lines[s], "%v", err)
		}
	}
	return nil
}

// harness is the state of one running case.
type harness struct {
	a         *app.App
	startNode func() error
	stopNode  func() error
	node      *engine.Node
	clock     *engine.ManualClock
	prod      *kafka.Producer
	conn      kafka.Conn
	reg       *registry.Client                // registry formats only
	tableKeys map[string]map[string]bool      // rows sent, per reference table
	sessions  int                             // invocations so far
	ends      map[engine.TopicPartition]int64 // what was sent, per source partition
	read      map[string]map[int32]int64      // how far each checked topic was read
	timeout   time.Duration
}

// settle waits until the node consumed everything sent and is quiet.
func (h *harness) settle(ctx context.Context) error { return h.settleAfter(ctx, h.node.LookTicket()) }

// settleAfter is settle that, for event-time apps, also waits for a look
// at the logs begun after ticket (idleness moves watermarks only on fresh
// looks).
func (h *harness) settleAfter(ctx context.Context, ticket uint64) error {
	deadline := time.Now().Add(h.timeout)
	for polls := 0; ; polls++ {
		if h.delivered(ctx) && (!h.node.EventTime() || h.node.LookedSince(ticket)) && h.node.Quiet() {
			return nil
		}
		if h.a.Kafka.ExactlyOnce() && polls%5 == 4 {
			// A transaction commits after commit_interval on the clock:
			// under exactly_once, waiting moves the virtual clock.
			h.clock.Advance(h.a.Kafka.CommitIntervalDuration())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the node did not settle within %s (input delivered: %v, quiet: %v, committed offsets %v, sent up to %v)",
				h.timeout, h.delivered(ctx), h.node.Quiet(), h.node.Committed(), h.ends)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
}

// delivered reports whether the node consumed everything sent, and
// everything it sent itself through its repartition topics.
func (h *harness) delivered(ctx context.Context) bool {
	got := h.node.Committed()
	for tp, end := range h.ends {
		if got[tp] < end {
			return false
		}
	}
	var repart []string
	for _, b := range h.a.Buckets {
		if b.PartitionBy != "" {
			repart = append(repart, h.a.RepartitionTopic(b.Name))
		}
	}
	if len(repart) == 0 {
		return true
	}
	ends, err := kafka.EndOffsets(ctx, h.conn, repart...)
	if err != nil {
		return false
	}
	for tp, end := range ends {
		if got[tp] >= end {
			continue
		}
		// Under exactly_once the log ends with a transaction marker the
		// node passes without committing a new offset: only data records
		// left unconsumed count.
		left, _, err := kafka.ReadFrom(ctx, h.conn, tp.Topic, func(p int32, _, end int64) int64 {
			if p == tp.Partition {
				return got[tp]
			}
			return end
		})
		if err != nil || len(left) > 0 {
			return false
		}
	}
	return true
}

func (h *harness) send(ctx context.Context, s *Send) error {
	if s.Table != "" {
		return h.sendTable(ctx, s)
	}
	var src *app.Source
	for i := range h.a.Sources {
		if h.a.Sources[i].Name == s.Source {
			src = &h.a.Sources[i]
		}
	}
	if src == nil || src.Connector() {
		return fmt.Errorf("send: no Kafka source %q", s.Source)
	}
	for i, r := range s.Records {
		var v []byte
		switch x := r.Value.(type) {
		case string:
			v = []byte(x)
		default:
			var err error
			if v, err = json.Marshal(jsonable(x)); err != nil {
				return fmt.Errorf("send: record %d: %w", i+1, err)
			}
		}
		// A keyed record goes where Kafka's default partitioner puts it;
		// one without a key to partition 0, so a case is deterministic.
		if _, raw := r.Value.(string); src.Registry != nil && !raw {
			// An object is written in the source's format; a string as it is.
			conv, err := registry.NewConverter(ctx, h.reg, src.Format, src.Registry.Name(src.Topic), "", src.Registry.Message)
			if err != nil {
				return fmt.Errorf("send: %w", err)
			}
			out, err := conv.Convert([][]byte{v})
			conv.Close()
			if err != nil {
				return fmt.Errorf("send: record %d: %w", i+1, err)
			}
			v = out[0]
		}
		rec := &engine.OutRecord{Topic: src.Topic, Value: v, ToPartition: true}
		if r.Key != "" {
			rec.Key = []byte(r.Key)
			rec.Partition = engine.PartitionOf(rec.Key, src.Partitions)
		}
		for k, hv := range r.Headers {
			rec.Headers = append(rec.Headers, engine.Header{Key: k, Value: []byte(hv)})
		}
		done := make(chan error, 1)
		var off int64
		h.prod.Writer().Produce(rec, func(o int64, err error) { off = o; done <- err })
		if err := <-done; err != nil {
			return fmt.Errorf("send: %w", err)
		}
		tp := engine.TopicPartition{Topic: src.Topic, Partition: rec.Partition}
		h.ends[tp] = max(h.ends[tp], off+1)
	}
	return h.settle(ctx)
}

// invoke runs one invocation on the node, waits for its answer while the
// node works on it, and compares the result rows.
func (h *harness) invoke(ctx context.Context, iv *Invoke) error {
	body, err := json.Marshal(jsonable(toAny(iv.Data)))
	if err != nil {
		return err
	}
	h.sessions++
	session := fmt.Sprintf("test-%d", h.sessions)
	rec, err := server.DecodeInvocation(h.a, body, session)
	if err != nil {
		return fmt.Errorf("invoke: %w", err)
	}
	var result []byte
	if h.a.Invoke.IsDurable() {
		if result, err = h.invokeDurable(ctx, session, rec); err != nil {
			return err
		}
	} else {
		done, err := h.node.Invoke(ctx, session, rec)
		if err != nil {
			return fmt.Errorf("invoke: %w", err)
		}
		if err := h.settle(ctx); err != nil {
			return err
		}
		select {
		case <-done:
		default:
			return errors.New("invoke: no answer once the node settled (does the app emit to its result sink in this session?)")
		}
		st, _ := h.node.Session(session, 0)
		result = st.Result
	}
	var got []map[string]any
	if err := json.Unmarshal(result, &got); err != nil {
		return fmt.Errorf("invoke: the answer: %w", err)
	}
	return compare("the invocation's answer", iv.Match, normalize(iv.Expect), got, false)
}

// invokeDurable writes the invocation to the invocations topic as POST
// /invoke does, lets the node settle and reads the session's result.
func (h *harness) invokeDurable(ctx context.Context, session string, rec arrow.Record) ([]byte, error) {
	value := server.InvocationValue(rec)
	rec.Release()
	out := &engine.OutRecord{Topic: h.a.InvocationsTopic(), Key: []byte(session), Value: value, ToPartition: true,
		Partition: h.node.SessionPartition(session), Headers: []engine.Header{{Key: engine.HeaderInvocation, Value: []byte(engine.InvocationRun)}}}
	done := make(chan error, 1)
	var off int64
	h.prod.Writer().Produce(out, func(o int64, err error) { off = o; done <- err })
	if err := <-done; err != nil {
		return nil, fmt.Errorf("invoke: %w", err)
	}
	tp := engine.TopicPartition{Topic: out.Topic, Partition: out.Partition}
	h.ends[tp] = max(h.ends[tp], off+1)
	if err := h.settle(ctx); err != nil {
		return nil, err
	}
	st, found, err := h.node.DurableSession(session, 0)
	switch {
	case err != nil:
		return nil, fmt.Errorf("invoke: %w", err)
	case !found || st.Status == engine.StatusRunning:
		return nil, errors.New("invoke: no answer once the node settled (does the app emit to its result sink in this session?)")
	case st.Status != engine.StatusDone:
		return nil, fmt.Errorf("invoke: the session ended %s: %s", st.Status, st.Error)
	}
	return st.Result, nil
}

func toAny(ms []map[string]any) []any {
	out := make([]any, len(ms))
	for i, m := range ms {
		out[i] = m
	}
	return out
}

// sendTable writes rows to a reference table's compacted topic and waits
// until the node's table holds a row per key sent.
func (h *harness) sendTable(ctx context.Context, s *Send) error {
	t := h.a.Table(s.Table)
	if t == nil || t.Topic == "" {
		return fmt.Errorf("send: no table %q read from a topic", s.Table)
	}
	if h.tableKeys == nil {
		h.tableKeys = map[string]map[string]bool{}
	}
	if h.tableKeys[t.Name] == nil {
		h.tableKeys[t.Name] = map[string]bool{}
	}
	for i, r := range s.Records {
		v, err := json.Marshal(jsonable(r.Value))
		if err != nil {
			return fmt.Errorf("send: row %d: %w", i+1, err)
		}
		var row map[string]any
		_ = json.Unmarshal(v, &row)
		h.tableKeys[t.Name][fmt.Sprint(row[t.Key])] = true
		done := make(chan error, 1)
		h.prod.Writer().Produce(&engine.OutRecord{Topic: t.Topic, Key: []byte(r.Key), Value: v, ToPartition: true}, func(_ int64, err error) { done <- err })
		if err := <-done; err != nil {
			return fmt.Errorf("send: %w", err)
		}
	}
	deadline := time.Now().Add(h.timeout)
	for h.node.TableSize(t.Name) < len(h.tableKeys[t.Name]) {
		if time.Now().After(deadline) {
			return fmt.Errorf("send: table %s holds %d rows, %d sent", t.Name, h.node.TableSize(t.Name), len(h.tableKeys[t.Name]))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
	return nil
}

// jsonable turns what YAML decoded into values encoding/json takes.
func jsonable(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = jsonable(e)
		}
	case map[any]any:
		m := map[string]any{}
		for k, e := range x {
			m[fmt.Sprint(k)] = jsonable(e)
		}
		return m
	case []any:
		for i, e := range x {
			x[i] = jsonable(e)
		}
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	}
	return v
}

// readNew returns the records written to topic since the last read.
func (h *harness) readNew(ctx context.Context, topic string) ([]kafka.Peeked, error) {
	if h.read[topic] == nil {
		h.read[topic] = map[int32]int64{}
	}
	ctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	recs, ends, err := kafka.ReadFrom(ctx, h.conn, topic, func(p int32, _, _ int64) int64 { return h.read[topic][p] })
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", topic, err)
	}
	for p, end := range ends {
		h.read[topic][p] = max(h.read[topic][p], end)
	}
	return recs, nil
}

func (h *harness) expect(ctx context.Context, e *Expect) error {
	if err := h.settle(ctx); err != nil {
		return err
	}
	var what, topic string
	var want []map[string]any
	var rd *registry.Reader
	defer func() {
		if rd != nil {
			rd.Close()
		}
	}()
	switch {
	case e.Trigger != "":
		var bucket string
		for _, t := range h.a.Triggers {
			if t.Name == e.Trigger {
				bucket = t.Bucket
			}
		}
		if bucket == "" {
			return fmt.Errorf("expect: no trigger %q", e.Trigger)
		}
		view, err := h.node.QueryBucket(bucket, engine.BucketQuery{Limit: 1})
		if err != nil {
			return err
		}
		var got []map[string]any
		for _, p := range view.Partitions {
			for _, tv := range p.Triggers {
				if tv.Name != e.Trigger {
					continue
				}
				for _, pr := range tv.Progress {
					b, _ := json.Marshal(pr)
					m := map[string]any{}
					_ = json.Unmarshal(b, &m)
					got = append(got, m)
				}
			}
		}
		return compare("trigger "+e.Trigger, e.Match, normalize(e.Records), got, false)
	case e.Table != "":
		s := h.a.Sink(e.Table)
		if s == nil || s.Kind != "table" {
			return fmt.Errorf("expect: no table sink %q", e.Table)
		}
		rows, err := h.node.QueryTable(e.Table, "")
		if err != nil {
			return err
		}
		var got []map[string]any
		for _, r := range rows {
			m := map[string]any{}
			if err := json.Unmarshal(r.Row, &m); err != nil {
				return err
			}
			got = append(got, m)
		}
		return compare("table "+e.Table, e.Match, normalize(e.Records), got, false)
	case e.Sink != "" && e.DeadLetters == nil:
		s := h.a.Sink(e.Sink)
		if s == nil || s.Kind != "kafka" {
			return fmt.Errorf("expect: no Kafka sink %q", e.Sink)
		}
		what, topic, want = "sink "+e.Sink, s.Topic, e.Records
		if s.Registry != nil {
			var err error
			if rd, err = registry.NewReader(ctx, h.reg, s.Format, s.Registry.Name(s.Topic), s.Registry.Message); err != nil {
				return fmt.Errorf("expect: %w", err)
			}
		}
	case e.Sink == "" && e.DeadLetters != nil:
		what, topic, want = "the dead-letter topic", h.a.Kafka.DLQTopic, e.DeadLetters
	default:
		return errors.New("expect: name a sink (with records) or dead_letters")
	}
	recs, err := h.readNew(ctx, topic)
	if err != nil {
		return err
	}
	var got []map[string]any
	for _, r := range recs {
		m := map[string]any{}
		if e.DeadLetters != nil {
			for _, hd := range r.Headers {
				m[strings.TrimPrefix(hd.Key, "pheromone.")] = string(hd.Value)
			}
			m["value"] = string(r.Value)
		} else {
			v := r.Value
			if rd != nil {
				if v, err = rd.Read(nil, r.Value); err != nil {
					return fmt.Errorf("%s: a record not in its format: %w", what, err)
				}
			}
			if err := json.Unmarshal(v, &m); err != nil {
				m = map[string]any{"value": string(r.Value)}
			}
		}
		got = append(got, m)
	}
	return compare(what, e.Match, normalize(want), got, e.DeadLetters != nil)
}

// normalize passes expected records through JSON, as the actual ones were.
func normalize(ms []map[string]any) []map[string]any {
	out := make([]map[string]any, len(ms))
	for i, m := range ms {
		b, _ := json.Marshal(jsonable(m))
		_ = json.Unmarshal(b, &out[i])
	}
	return out
}

// matches says whether got has every field of want (error: a substring,
// for dead letters), and if not the first field that differs.
func matches(want, got map[string]any, dead bool) (bool, string) {
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		g, ok := got[k]
		switch {
		case !ok:
			return false, fmt.Sprintf("field %s: missing, want %s", k, show(want[k]))
		case dead && k == "error":
			if !strings.Contains(fmt.Sprint(g), fmt.Sprint(want[k])) {
				return false, fmt.Sprintf("field error: got %q, want it to contain %q", g, want[k])
			}
		case !reflect.DeepEqual(g, want[k]):
			return false, fmt.Sprintf("field %s: got %s, want %s", k, show(g), show(want[k]))
		}
	}
	return true, ""
}

func show(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// compare checks got against want under match, saying which record and
// field differ.
func compare(what, match string, want, got []map[string]any, dead bool) error {
	switch match {
	case "", "unordered", "subset":
		used := make([]bool, len(got))
		var missing []string
		for i, w := range want {
			found := false
			closest := ""
			for j, g := range got {
				if used[j] {
					continue
				}
				ok, why := matches(w, g, dead)
				if ok {
					used[j], found = true, true
					break
				}
				if closest == "" {
					closest = fmt.Sprintf(" (the first unmatched record %s differs: %s)", show(g), why)
				}
			}
			if !found {
				missing = append(missing, fmt.Sprintf("record %d %s not received%s", i+1, show(w), closest))
			}
		}
		var extra []string
		if match != "subset" {
			for j, g := range got {
				if !used[j] {
					extra = append(extra, "unexpected record "+show(g))
				}
			}
		}
		if len(missing)+len(extra) > 0 {
			return fmt.Errorf("%s: %d records received, %d expected:\n\t%s", what, len(got), len(want), strings.Join(append(missing, extra...), "\n\t"))
		}
		return nil
	case "exact":
		if len(got) != len(want) {
			var all []string
			for _, g := range got {
				all = append(all, show(g))
			}
			return fmt.Errorf("%s: %d records received, %d expected (in order):\n\t%s", what, len(got), len(want), strings.Join(all, "\n\t"))
		}
		for i := range want {
			if ok, why := matches(want[i], got[i], dead); !ok {
				return fmt.Errorf("%s: record %d %s: %s", what, i+1, show(got[i]), why)
			}
		}
		return nil
	}
	return fmt.Errorf("expect: match %q: want exact, unordered or subset", match)
}
