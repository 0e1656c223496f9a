package engine

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/apache/arrow/go/v15/arrow"

	"github.com/pheromone-go/pheromone/engine/app"
	"github.com/pheromone-go/pheromone/engine/codec"
	"github.com/pheromone-go/pheromone/engine/fn"
	"github.com/pheromone-go/pheromone/internal/arrowx"
	"github.com/pheromone-go/pheromone/triggers"
)

// job is one invocation handed to the executor pool.
type job struct {
	id     uint64
	early  bool // caused by a result applied on completion
	task   *task
	fn     *fnPlan
	bucket string
	firing triggers.Firing
	input  []arrow.Record
	// partial is the window's partial aggregate of a folded firing.
	partial fn.Partial
	// raw holds, per input record, the source records of its rows, for a
	// pass-through function (nil otherwise).
	raw [][]rawRec
}

func (j *job) release() {
	for _, r := range j.input {
		r.Release()
	}
	j.input, j.raw = nil, nil
}

// result is what an invocation produced, applied by the task in order.
type result struct {
	id      uint64
	early   bool   // apply on completion, not in firing order
	session string // of the firing: objects put into buckets inherit it
	puts    []put
	replies []reply
	rows    []sinkRows // for every sink but the result: Kafka topics, tables, connectors' kinds
	dead    []*OutRecord
	// unavailable: the invocation failed because a dependency (a schema
	// registry) did not answer; the task restarts from its last commit
	// instead of dead-lettering the inputs.
	unavailable error
}

// sinkRows are one invocation's rows for one sink.
type sinkRows struct {
	sink string
	rows []SinkRow
}

type put struct {
	bucket string
	rec    arrow.Record
}

// tableRow is one upsert of a table sink.
type tableRow struct {
	table string
	key   []byte
	value []byte // JSON row
}

// reply answers the invocation of a session.
type reply struct {
	session string
	fn      string // the function that emitted it
	body    []byte // JSON array of rows
	rows    int
}

func (r *result) release() {
	for _, p := range r.puts {
		p.rec.Release()
	}
	r.puts = nil
}

func (t *task) newJob(q queued) (*job, error) {
	j := &job{id: t.cyc.nextID, task: t, fn: q.tr.fn, bucket: q.b.name, firing: q.f, early: q.early}
	if q.f.Folded > 0 && q.tr.fold != nil {
		j.partial = q.tr.fold.take(q.f.Pane)
	}
	var err error
	for _, sp := range q.f.Objects {
		j.input, err = q.b.slices(t.n.o.Store, sp, j.input)
		if err != nil {
			j.release()
			return nil, err
		}
	}
	if q.tr.fn.passthrough {
		ok := true
		for _, sp := range q.f.Objects {
			if j.raw, ok = q.b.rawSlices(sp, j.raw); !ok {
				break
			}
		}
		if !ok || len(j.raw) != len(j.input) {
			j.raw = nil
		}
	}
	return j, nil
}

// inlineRows is the largest input a built-in function runs with on the
// task's goroutine rather than on the executor pool: for small inputs (an
// invocation passing from function to function) the two goroutine
// hand-offs cost more than the function; large batches still run beside
// the task.
const inlineRows = 256

// inline reports whether j runs on the task's goroutine.
func (j *job) inline() bool {
	return j.fn.builtin && inputRows(j.input) <= inlineRows
}

// executor runs jobs until ctx ends.
func (n *Node) executor(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-n.jobs:
			r := n.invoke(ctx, j)
			j.release()
			j.task.results <- r
		}
	}
}

// collector is the fn.Output of one attempt: what was emitted, and to
// which output ("" for all of them).
type collector struct {
	outputs []string // the function's declared outputs
	recs    []arrow.Record
	to      []string
	dropped int // input rows the function discarded by design (fn.Dropper)
}

func (c *collector) Dropped(n int) { c.dropped += n }

func (c *collector) Emit(rec arrow.Record) error {
	c.recs = append(c.recs, rec)
	c.to = append(c.to, "")
	return nil
}

func (c *collector) EmitTo(output string, rec arrow.Record) error {
	if !slices.Contains(c.outputs, output) {
		rec.Release()
		return fmt.Errorf("emit to %q: not an output of this function (outputs: %s)", output, strings.Join(c.outputs, ", "))
	}
	c.recs = append(c.recs, rec)
	c.to = append(c.to, output)
	return nil
}

func (c *collector) reset() {
	for _, r := range c.recs {
		r.Release()
	}
	c.recs, c.to = c.recs[:0], c.to[:0]
	c.dropped = 0
}

// invoke runs a job with retries; a function that still fails sends its
// input to the dead-letter topic — for a row-wise function, only the rows
// that fail alone (bisect).
func (n *Node) invoke(ctx context.Context, j *job) *result {
	cfg := j.fn.cfg
	if j.raw != nil {
		start := time.Now()
		if r, ok := n.passThrough(ctx, j); ok {
			n.o.Metrics.Invocation(cfg.Name, time.Since(start), nil)
			return r
		}
	}
	in := fn.Input{Records: j.input, Trigger: j.firing.Trigger, Window: j.firing.Window, Session: j.firing.Session, Group: j.firing.Group}
	out := &collector{outputs: cfg.Outputs}
	var err error
	var abandoned bool
	backoff := 10 * time.Millisecond
	for attempt := 0; ; attempt++ {
		start := time.Now()
		impl := j.fn.impl
		if j.partial != nil {
			impl = emitter{j.partial}
		}
		if j.fn.builtin {
			err = safeInvoke(ctx, impl, in, out)
		} else {
			err, abandoned = invokeWithTimeout(ctx, impl, in, out, cfg.TimeoutDuration())
		}
		if abandoned {
			// The hung attempt may still write to its collector: leave it
			// to that goroutine and use a fresh one.
			out = &collector{outputs: cfg.Outputs}
		}
		if err == nil {
			// Records that do not match the function's declared schema, or
			// an output too large for its sink, fail the attempt like an
			// error of the function.
			err = checkSchemas(cfg, out)
		}
		if err == nil {
			err = n.checkOutputs(j, out)
		}
		if err == nil {
			err = prepareSinks(j, out)
		}
		n.o.Metrics.Invocation(cfg.Name, time.Since(start), err)
		if err == nil || attempt >= cfg.Retries || ctx.Err() != nil {
			break
		}
		out.reset()
		wait := n.o.Clock.NewTimer(backoff)
		select {
		case <-wait.C():
		case <-ctx.Done():
			wait.Stop()
		}
		backoff = min(backoff*2, time.Second)
	}
	r := &result{id: j.id, session: j.firing.Session, early: j.early || cfg.Order == "completion"}
	if err != nil && !abandoned && rowWise(cfg.Kind) && inputRows(j.input) > 1 && ctx.Err() == nil {
		// One bad row must not take the rows beside it to the dead-letter
		// topic: a row-wise function's input is split to find the rows
		// that fail; the others' outputs go on. (A function that timed
		// out is not split: each part could hang as long.)
		out.reset()
		failed := 0
		for _, rec := range j.input {
			failed += n.bisect(ctx, j, in, rec, out, r)
		}
		n.logBadInput("function failed on some rows; those rows sent to the dead-letter topic",
			"function", cfg.Name, "trigger", j.firing.Trigger, "rows", failed, "of", inputRows(j.input), "error", err)
		err = nil
	}
	if err == nil && out.dropped > 0 {
		n.o.Metrics.FunctionDropped(cfg.Name, out.dropped)
	}
	if err != nil && errors.Is(err, ErrUnavailable) && ctx.Err() == nil {
		out.reset()
		r.unavailable = fmt.Errorf("function %s: %w", cfg.Name, err)
		return r
	}
	if err != nil {
		out.reset()
		n.logBadInput("function failed; inputs sent to the dead-letter topic",
			"function", cfg.Name, "trigger", j.firing.Trigger, "attempts", cfg.Retries+1, "error", err)
		n.deadInputs(j, r, err)
		return r
	}
	if err := routeOutputs(j, out, r); err != nil {
		// An encoder that prepared the batch's schema failed on a row:
		// the inputs go to the dead-letter topic with why.
		n.logBadInput("encoding a sink record failed; inputs sent to the dead-letter topic", "function", cfg.Name, "error", err)
		n.deadInputs(j, r, err)
	}
	out.reset()
	return r
}

// deadInputs sends a failed job's inputs to the dead-letter topic; a
// folded window has none, so the rows its partial aggregate emits go
// there instead (the window's objects were not kept).
func (n *Node) deadInputs(j *job, r *result, err error) {
	for _, rec := range j.input {
		n.deadRows(j, r, rec, err)
	}
	if j.partial == nil {
		return
	}
	c := &collector{outputs: j.fn.cfg.Outputs}
	if perr := j.partial.Emit(fn.Input{Trigger: j.firing.Trigger, Window: j.firing.Window, Session: j.firing.Session}, c); perr != nil {
		n.log.Error("a window's partial aggregate could not be emitted for the dead-letter topic", "trigger", j.firing.Trigger, "error", perr)
	}
	for _, rec := range c.recs {
		n.deadRows(j, r, rec, err)
	}
	c.reset()
}

// prepareSinks readies the encoders of the function's sinks of a
// connector's format for the schemas of what it emitted (a schema-registry
// format registers or looks up each schema once): a failure fails the
// attempt, and is retried like the function's own.
func prepareSinks(j *job, out *collector) error {
	// Only the function's own outputs: the encoders are the app's.
	for _, sinks := range [2][]*app.Sink{j.fn.sinks, j.fn.connected} {
		for _, s := range sinks {
			enc := j.fn.encoders[s.Name]
			if enc == nil {
				continue
			}
			for i, rec := range out.recs {
				if !out.emittedTo(i, s.Name) || rec.NumRows() == 0 {
					continue
				}
				if err := enc.Prepare(rec.Schema()); err != nil {
					return fmt.Errorf("sink %s: %w", s.Name, err)
				}
			}
		}
	}
	return nil
}

// TooLargeError is a record over the size its topic accepts.
type TooLargeError struct {
	Topic       string
	Size, Limit int
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("record of %d bytes for topic %s exceeds its limit of %d bytes", e.Size, e.Topic, e.Limit)
}

// checkOutputs reports the first record of out that would be too large for
// its sink's topic.
func (n *Node) checkOutputs(j *job, out *collector) error {
	if len(j.fn.sinks) == 0 {
		return nil
	}
	var enc codec.JSONEncoder
	var buf []byte
	for _, s := range j.fn.sinks {
		limit := n.recordLimit(s.Topic)
		for i, rec := range out.recs {
			if out.to[i] != "" && out.to[i] != s.Name {
				continue
			}
			var keyCol arrow.Array
			if s.Key != "" {
				keyCol = rec.Column(rec.Schema().FieldIndices(s.Key)[0])
			}
			for k := 0; k < int(rec.NumRows()); k++ {
				// Most rows are far below the limit: a bound computed from
				// the value sizes settles it without encoding the row twice.
				if b, ok := codec.RowBound(rec, k); ok && 2*b <= limit {
					continue
				}
				buf = enc.AppendRow(buf[:0], rec, k)
				if keyCol != nil {
					buf = codec.AppendKey(buf, keyCol, k)
				}
				if len(buf) > limit {
					return &TooLargeError{Topic: s.Topic, Size: len(buf), Limit: limit}
				}
			}
		}
	}
	return nil
}

// SchemaError is a record a function emitted that does not have the
// schema the app file declares for the function's output.
type SchemaError struct {
	Function, Column string
	Problem          string // "is missing (declared int64)", "is string, declared float64", ...
}

func (e *SchemaError) Error() string {
	return fmt.Sprintf("function %q emitted a record that does not match its declared schema: column %q %s", e.Function, e.Column, e.Problem)
}

// checkSchemas fails when a record a Go function emitted does not match
// its declared output schema, column by column (names and types, in
// order). Built-in kinds make their declared schema by construction.
func checkSchemas(f *app.Function, out *collector) error {
	want := f.OutputSchema()
	if want == nil || f.Kind != "go" {
		return nil
	}
	for _, rec := range out.recs {
		if col, problem := arrowx.SchemaDiff(rec.Schema(), want); col != "" {
			return &SchemaError{Function: f.Name, Column: col, Problem: problem}
		}
	}
	return nil
}

// rowWise says a function kind makes each output row from one input row,
// with nothing carried between rows: its input can be split without
// changing its output (aggregates and Go functions cannot).
func rowWise(kind string) bool {
	switch kind {
	case "filter", "project", "emit", "route", "split", "lookup":
		return true
	}
	return false
}

func inputRows(recs []arrow.Record) int {
	rows := 0
	for _, rec := range recs {
		rows += int(rec.NumRows())
	}
	return rows
}

// bisect runs j's function on rec alone, then, if that fails, on each half
// of it, down to single rows: the outputs of the parts that succeed go to
// out, and the rows that fail alone are dead-lettered into r. It returns
// how many rows failed. Attempts here have no retries: the whole input
// already used them.
func (n *Node) bisect(ctx context.Context, j *job, in fn.Input, rec arrow.Record, out *collector, r *result) int {
	cfg := j.fn.cfg
	sub := &collector{outputs: cfg.Outputs}
	in.Records = []arrow.Record{rec}
	err, abandoned := invokeWithTimeout(ctx, j.fn.impl, in, sub, cfg.TimeoutDuration())
	if err == nil {
		err = n.checkOutputs(j, sub)
	}
	if err == nil {
		out.recs = append(out.recs, sub.recs...)
		out.to = append(out.to, sub.to...)
		out.dropped += sub.dropped
		return 0
	}
	if !abandoned {
		sub.reset()
	}
	rows := int(rec.NumRows())
	if rows <= 1 || abandoned || ctx.Err() != nil {
		// A hung attempt is not split further: each part could hang too.
		n.deadRows(j, r, rec, err)
		return rows
	}
	half := int64(rows / 2)
	lo, hi := rec.NewSlice(0, half), rec.NewSlice(half, int64(rows))
	defer lo.Release()
	defer hi.Release()
	return n.bisect(ctx, j, in, lo, out, r) + n.bisect(ctx, j, in, hi, out, r)
}

// deadRows dead-letters every row of rec, an input of j that failed with
// err, into r.
func (n *Node) deadRows(j *job, r *result, rec arrow.Record, err error) {
	d := deadLetter{reason: ReasonFunction, err: err, partition: j.task.part,
		function: j.fn.cfg.Name, trigger: j.firing.Trigger, bucket: j.bucket, session: j.firing.Session}
	var tl *TooLargeError
	if errors.As(err, &tl) {
		d.reason = ReasonTooLarge
	}
	r.dead = append(r.dead, d.rows(rec)...)
}

// invokeWithTimeout runs f, bounded by timeout (0: none). A function that
// does not return in time is abandoned: its goroutine keeps the inputs it
// was given (retained) until it returns, and abandoned reports true so the
// caller stops using out.
func invokeWithTimeout(ctx context.Context, f fn.Function, in fn.Input, out fn.Output, timeout time.Duration) (err error, abandoned bool) {
	if timeout <= 0 {
		return safeInvoke(ctx, f, in, out), false
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	for _, r := range in.Records {
		r.Retain()
	}
	done := make(chan error, 1)
	go func() {
		defer func() {
			for _, r := range in.Records {
				r.Release()
			}
		}()
		done <- safeInvoke(ctx, f, in, out)
	}()
	select {
	case err := <-done:
		cancel()
		return err, false
	case <-ctx.Done():
		cancel()
		select {
		case err := <-done: // it returned just in time after all
			return err, false
		default:
		}
		return fmt.Errorf("function timed out after %s", timeout), true
	}
}

// safeInvoke turns a panicking function into an error.
func safeInvoke(ctx context.Context, f fn.Function, in fn.Input, out fn.Output) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("function panicked: %v\n%s", p, debug.Stack())
		}
	}()
	return f.Invoke(ctx, in, out)
}
