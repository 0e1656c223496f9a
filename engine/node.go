package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pheromone-go/pheromone/engine/app"
	"github.com/pheromone-go/pheromone/engine/fn"
	"github.com/pheromone-go/pheromone/state"
	"github.com/pheromone-go/pheromone/triggers"
)

// Options configure a Node. App, Store and Producer are required.
type Options struct {
	App      *app.App
	Store    state.Store
	Producer Producer
	// Clock defaults to SystemClock.
	Clock Clock
	// Metrics defaults to NopMetrics.
	Metrics Metrics
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Executors is the size of the function executor pool; default GOMAXPROCS.
	Executors int
	// QueueDepth is how many record batches may wait per partition task
	// before Deliver blocks (backpressure); default 4.
	QueueDepth int
	// SyncCommits makes every state commit durable before offsets advance;
	// default true. Benchmarks of the in-memory store turn it off.
	NoSync bool
	// Functions replace the implementation of functions by name (tests, and
	// user functions in a later version); the app file still declares them.
	Functions map[string]fn.Function
	// MemoryBudget bounds the bytes of persisted bucket chunks a task keeps
	// decoded in memory; default 32 MiB. Chunks beyond it are re-read from
	// the store when a firing needs them.
	MemoryBudget int64
}

// TopicPartition names one partition of one topic.
type TopicPartition struct {
	Topic     string
	Partition int32
}

// Stats are running totals since the node started.
type Stats struct {
	RecordsIn, RecordsOut, Firings, DeadLetters, Invocations int64
}

// Node runs one app on this machine. Create it with New, start it with Run;
// the source connector then calls Assign, Deliver and Revoke while Run runs.
type Node struct {
	o    Options
	plan *plan
	log  *slog.Logger

	started chan struct{}
	runCtx  context.Context
	jobs    chan *job
	fatal   chan error

	mu        sync.Mutex
	tasks     map[int32]*task
	assigned  map[TopicPartition]bool
	committed map[TopicPartition]int64
	ready     atomic.Bool
	taskWG    sync.WaitGroup

	in, out, firings, dead, invocations atomic.Int64
	logLimiter                          logLimiter

	sessions sessionTable
	tables   *tableStore
}

// New validates options and compiles the app's functions.
func New(o Options) (*Node, error) {
	if o.App == nil || o.Store == nil || o.Producer == nil {
		return nil, errors.New("engine: App, Store and Producer are required")
	}
	if o.Clock == nil {
		o.Clock = SystemClock{}
	}
	if o.Metrics == nil {
		o.Metrics = NopMetrics{}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Executors <= 0 {
		o.Executors = runtime.GOMAXPROCS(0)
	}
	if o.QueueDepth <= 0 {
		o.QueueDepth = 4
	}
	if o.MemoryBudget <= 0 {
		o.MemoryBudget = 32 << 20
	}
	tables, err := newTableStore(o.App)
	if err != nil {
		return nil, err
	}
	p, err := compile(o.App, o.Functions, tables)
	if err != nil {
		return nil, err
	}
	return &Node{
		tables:    tables,
		o:         o,
		plan:      p,
		log:       o.Logger,
		started:   make(chan struct{}),
		jobs:      make(chan *job, o.Executors),
		fatal:     make(chan error, 1),
		tasks:     map[int32]*task{},
		assigned:  map[TopicPartition]bool{},
		committed: map[TopicPartition]int64{},
	}, nil
}

// plan is the compiled app.
type plan struct {
	app       *app.App
	sources   map[string]*app.Source // by topic
	buckets   map[string]*bucketPlan
	functions map[string]*fnPlan
}

type bucketPlan struct {
	cfg      *app.Bucket
	triggers []trigPlan
}

type trigPlan struct {
	spec       triggers.Spec
	fn         *fnPlan
	groupCol   string // dynamic_group: column of an object's group
	countCol   string // dynamic_join: column of the announced count
	lateBucket string // by_time on event time: where late objects go
}

type fnPlan struct {
	cfg     *app.Function
	impl    fn.Function
	buckets []string    // outputs that are buckets
	sinks   []*app.Sink // outputs that are Kafka sinks
	result  string      // the output that answers invocations, if any
	tables  []*app.Sink // outputs that are tables
}

func compile(a *app.App, overrides map[string]fn.Function, tables fn.Tables) (*plan, error) {
	p := &plan{app: a, sources: map[string]*app.Source{}, buckets: map[string]*bucketPlan{}, functions: map[string]*fnPlan{}}
	for i := range a.Sources {
		p.sources[a.Sources[i].Topic] = &a.Sources[i]
	}
	for i := range a.Functions {
		f := &a.Functions[i]
		impl, ok := overrides[f.Name]
		if !ok {
			var err error
			if impl, err = fn.BuildWith(f, tables); err != nil {
				return nil, err
			}
		}
		fp := &fnPlan{cfg: f, impl: impl}
		for _, o := range f.Outputs {
			switch s := a.Sink(o); {
			case s != nil && s.Kind == "result":
				fp.result = o
			case s != nil && s.Kind == "table":
				fp.tables = append(fp.tables, s)
			case s != nil:
				fp.sinks = append(fp.sinks, s)
			default:
				fp.buckets = append(fp.buckets, o)
			}
		}
		p.functions[f.Name] = fp
	}
	for i := range a.Buckets {
		p.buckets[a.Buckets[i].Name] = &bucketPlan{cfg: &a.Buckets[i]}
	}
	for _, t := range a.Triggers {
		bp := p.buckets[t.Bucket]
		if bp == nil || p.functions[t.Function] == nil {
			return nil, fmt.Errorf("engine: trigger %q: app not validated", t.Name)
		}
		slide, gap, ooo, lateness, idle, future := t.TimeSpec()
		bp.triggers = append(bp.triggers, trigPlan{
			spec: triggers.Spec{
				Slide: slide, Gap: gap, EventTime: t.Time == "event", OutOfOrderness: ooo,
				AllowedLateness: lateness, IdleTimeout: idle, MaxFuture: future,
				Name: t.Name, Primitive: t.Primitive, Count: t.Count, Window: t.WindowDuration(),
				Match: t.Match, Keys: t.Keys, K: t.K, N: t.N, ControlKey: t.ControlKey, Controls: t.Controls,
				SessionTimeout: t.SessionTimeoutDuration(),
				MaxPerSession:  bp.cfg.MaxObjectsPerSession,
			},
			fn:         p.functions[t.Function],
			groupCol:   t.GroupColumn,
			countCol:   t.CountColumn,
			lateBucket: t.LateBucket,
		})
	}
	return p, nil
}

// Run starts the executor pool and serves the connector's calls until ctx
// is done or a task fails. On return every partition task has committed
// its last complete cycle and every goroutine of the node has exited.
func (n *Node) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	n.runCtx = ctx
	var execWG sync.WaitGroup
	for i := 0; i < n.o.Executors; i++ {
		execWG.Add(1)
		go func() {
			defer execWG.Done()
			n.executor(ctx)
		}()
	}
	close(n.started)
	var err error
	select {
	case <-ctx.Done():
	case err = <-n.fatal:
	}
	// Soft stop: every task finishes its cycle and commits, then executors go.
	n.mu.Lock()
	for _, t := range n.tasks {
		t.stop()
	}
	n.mu.Unlock()
	n.taskWG.Wait()
	cancel()
	execWG.Wait()
	return err
}

func (n *Node) fail(err error) {
	select {
	case n.fatal <- err:
	default:
	}
}

// Assign creates (or extends) the tasks for newly assigned partitions and
// loads their state. It returns once the tasks are ready to process.
func (n *Node) Assign(tps []TopicPartition) error {
	<-n.started
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, tp := range tps {
		if n.plan.sources[tp.Topic] == nil {
			return fmt.Errorf("engine: assigned unknown topic %q", tp.Topic)
		}
		n.assigned[tp] = true
		if _, ok := n.tasks[tp.Partition]; ok {
			continue
		}
		t, err := newTask(n, tp.Partition)
		if err != nil {
			return err
		}
		n.tasks[tp.Partition] = t
		for topic, off := range t.offsets {
			n.committed[TopicPartition{topic, tp.Partition}] = off
		}
		n.taskWG.Add(1)
		go func() {
			defer n.taskWG.Done()
			if err := t.run(); err != nil {
				n.fail(fmt.Errorf("engine: partition %d: %w", t.part, err))
			}
		}()
	}
	n.ready.Store(true)
	return nil
}

// StartOffset is the next offset to consume for tp according to the node's
// state, and whether the state has one.
func (n *Node) StartOffset(tp TopicPartition) (int64, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.tasks[tp.Partition]; !ok {
		return 0, false
	}
	off, ok := n.committed[tp]
	return off, ok
}

// Deliver hands a partition's records to its task. It blocks while the
// task's queue is full (backpressure) and returns ctx.Err() if ctx ends
// first. Records for a partition this node does not own are dropped. The
// engine owns recs after the call. hwm is the partition's high watermark
// (-1 if unknown), used for the lag metric.
func (n *Node) Deliver(ctx context.Context, topic string, partition int32, recs []Record, hwm int64) error {
	n.mu.Lock()
	t := n.tasks[partition]
	n.mu.Unlock()
	if t == nil || len(recs) == 0 {
		return nil
	}
	select {
	case t.inbox <- inbound{topic: topic, recs: recs, hwm: hwm}:
		return nil
	case <-t.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Revoke stops the tasks whose partitions were all revoked; it returns after
// each of them committed its last complete cycle.
func (n *Node) Revoke(tps []TopicPartition) {
	n.mu.Lock()
	var stopping []*task
	for _, tp := range tps {
		delete(n.assigned, tp)
	}
	for p, t := range n.tasks {
		owned := false
		for tp := range n.assigned {
			if tp.Partition == p {
				owned = true
				break
			}
		}
		if !owned {
			t.stop()
			stopping = append(stopping, t)
			delete(n.tasks, p)
		}
	}
	n.mu.Unlock()
	for _, t := range stopping {
		<-t.done
	}
}

// Committed returns the next offset to consume of every partition whose
// state this node committed, for the connector to commit to Kafka.
func (n *Node) Committed() map[TopicPartition]int64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make(map[TopicPartition]int64, len(n.committed))
	for k, v := range n.committed {
		out[k] = v
	}
	return out
}

func (n *Node) setCommitted(part int32, offs map[string]int64) {
	n.mu.Lock()
	for topic, off := range offs {
		n.committed[TopicPartition{topic, part}] = off
	}
	n.mu.Unlock()
}

// Ready reports whether the node has been assigned partitions and loaded
// their state.
func (n *Node) Ready() bool { return n.ready.Load() }

// Partitions lists the partition tasks this node runs.
func (n *Node) Partitions() []int32 {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]int32, 0, len(n.tasks))
	for p := range n.tasks {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// Stats returns running totals.
func (n *Node) Stats() Stats {
	return Stats{
		RecordsIn:   n.in.Load(),
		RecordsOut:  n.out.Load(),
		Firings:     n.firings.Load(),
		DeadLetters: n.dead.Load(),
		Invocations: n.invocations.Load(),
	}
}

// logLimiter lets one message a second through and counts the rest.
type logLimiter struct {
	mu         sync.Mutex
	last       time.Time
	suppressed int
}

func (l *logLimiter) allow(now time.Time) (ok bool, suppressed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.last) < time.Second {
		l.suppressed++
		return false, 0
	}
	l.last = now
	s := l.suppressed
	l.suppressed = 0
	return true, s
}

func (n *Node) logBadInput(msg string, args ...any) {
	if ok, sup := n.logLimiter.allow(time.Now()); ok {
		if sup > 0 {
			args = append(args, "suppressed_since_last", sup)
		}
		n.log.Warn(msg, args...)
	}
}
