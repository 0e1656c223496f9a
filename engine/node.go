package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pheromone-go/pheromone/engine/app"
	"github.com/pheromone-go/pheromone/engine/builtin"
	"github.com/pheromone-go/pheromone/engine/fn"
	"github.com/pheromone-go/pheromone/state"
	"github.com/pheromone-go/pheromone/triggers"
)

// Options configure a Node. App, Store and Producer are required.
type Options struct {
	App      *app.App
	Store    state.Store
	Producer Producer
	// Clock defaults to SystemClock. Every timer of the engine runs on it:
	// windows and idleness, the transaction interval, retry backoff, the
	// fenced wait and the restart backoff.
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
	// NoSync commits state without waiting for it to be durable (no fsync)
	// before offsets advance; default false: commits are synced.
	// Benchmarks of the in-memory store set it.
	NoSync bool
	// SyncInterval is how often, at most, a partition's committer syncs
	// the store (real time; default 50ms): commits in between wait for the
	// next sync before their offsets are published, so no acknowledged
	// input is lost, and a task's cycles do not each wait for an fsync
	// (docs/DESIGN.md, *Crash, restart and rebalance*). Negative: every
	// commit that finds no other queued is synced.
	SyncInterval time.Duration
	// Functions replace the implementation of functions by name (tests, and
	// user functions in a later version); the app file still declares them.
	Functions map[string]fn.Function
	// Writers opens the writer of a partition task's records (one per task;
	// a transactional one for exactly-once). Default: at-least-once writers
	// over Producer.
	Writers func(part int32) (PartitionWriter, error)
	// ChangelogTopic, when set, receives every state change (see
	// changelog.go); ChangelogReader restores a partition from it when the
	// partition is assigned.
	ChangelogTopic  string
	ChangelogReader ChangelogReader
	// CommitInterval is how long a transactional writer's transaction
	// gathers cycles; default 100ms.
	CommitInterval time.Duration
	// FencedWait is how long a task fenced by another writer waits before it
	// restarts, if the partition is still assigned to this node by then;
	// default 10s (set it to the group's session timeout).
	FencedWait time.Duration
	// RecordLimits is the largest record (key, value and headers, in bytes)
	// each topic accepts, as the connector found it (the topic's
	// max.message.bytes, capped by the producer's); topics not listed get
	// DefaultRecordLimit. The engine never sends a record over its topic's
	// limit: an oversize sink record fails its function (dead letter with
	// reason too_large), an oversize dead letter is truncated.
	RecordLimits map[string]int
	// MemoryBudget bounds the bytes of persisted bucket chunks a task keeps
	// decoded in memory; default 32 MiB. Chunks beyond it are re-read from
	// the store when a firing needs them.
	MemoryBudget int64
	// SinkKinds are the connectors' sink kinds by name (see SinkKind); an
	// app sink of another kind than kafka, table or result needs its kind
	// here.
	SinkKinds map[string]SinkKind
	// Reset names the triggers, buckets and table sinks whose state a
	// changed app drops (see Plan); ResetAll drops all of it, offsets too.
	Reset    []string
	ResetAll bool
	// Formats are the connectors' wire formats by name (see WireFormat):
	// a source or sink of a format other than json and raw needs it here.
	Formats map[string]WireFormat
	// MinFreeBytes is the disk space kept free under a store that reports
	// it (state.SpaceReporter): below it, state commits pause until space
	// returns; default DefaultMinFreeBytes, negative never pauses.
	MinFreeBytes int64
}

// DefaultRecordLimit is the record limit of topics Options.RecordLimits
// does not list: Kafka's default message.max.bytes (1 MiB) less room for
// the record batch's own header.
const DefaultRecordLimit = 1<<20 - 1024

// recordLimit is the largest record topic accepts.
func (n *Node) recordLimit(topic string) int {
	if l, ok := n.o.RecordLimits[topic]; ok && l > 0 {
		return l
	}
	return DefaultRecordLimit
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
// sources then feed it through its Feed methods (source.go) while Run
// runs, and the server asks it what status.go, query.go and invoke.go
// answer.
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
	restoring map[int32]*restoreProgress
	rewinds   map[int32]map[TopicPartition]int64 // restarted tasks waiting for the source to seek
	rewindC   chan struct{}
	closing   bool             // Run is stopping: no task may start
	stopped   map[int32]string // partitions stopped for good, with the reason

	standbyMu sync.Mutex // guards followers; taken before mu, never inside it
	followers map[int32]*follower
	assigning map[int32]bool // partitions Assign is preparing (guarded by mu)
	standbyWG sync.WaitGroup
	stopC     chan struct{} // closed when Run starts stopping
	space     spaceGate     // pauses store writes while the disk is nearly full

	in, out, firings, dead, invocations atomic.Int64
	lookSeq                             atomic.Uint64 // tickets of looks at the logs (StartLook)
	lookSeen                            atomic.Uint64 // the ticket of the newest look observed (ObserveLogEnds)
	logLimiter                          logLimiter

	sessions sessionTable
	waiting  waiters // requests held open for durable sessions (durable.go)
	tables   *tableStore
}

// New validates options and compiles the app's functions.
func New(o Options) (*Node, error) {
	if o.App == nil || o.Store == nil || (o.Producer == nil && o.Writers == nil) {
		return nil, errors.New("engine: App, Store and Producer (or Writers) are required")
	}
	if o.Writers == nil {
		p := o.Producer
		o.Writers = func(int32) (PartitionWriter, error) { return producerWriter{p}, nil }
	}
	if o.CommitInterval <= 0 {
		o.CommitInterval = app.DefaultCommitInterval
	}
	if o.FencedWait <= 0 {
		o.FencedWait = app.DefaultSessionTimeout
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
	if o.SyncInterval == 0 {
		o.SyncInterval = 50 * time.Millisecond
	}
	if o.QueueDepth <= 0 {
		o.QueueDepth = 4
	}
	if o.MemoryBudget <= 0 {
		o.MemoryBudget = 32 << 20
	}
	if o.Store != nil {
		if err := checkFormat(o.Store, o.App.Name); err != nil {
			return nil, err
		}
		deleted, err := upgrade(o)
		if err == nil {
			err = logResets(o, deleted)
		}
		if err != nil {
			return nil, err
		}
	}
	for _, s := range o.App.Sinks {
		switch s.Kind {
		case "kafka", "table", "result":
		default:
			if o.SinkKinds[s.Kind] == nil {
				return nil, fmt.Errorf("engine: sink %q: no connector for sink kind %q in this binary", s.Name, s.Kind)
			}
		}
	}
	tables, err := newTableStore(o.App, o.Formats)
	if err != nil {
		return nil, err
	}
	p, err := compile(o.App, o.Functions, tables, o.Formats)
	if err != nil {
		return nil, err
	}
	n := &Node{
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
		restoring: map[int32]*restoreProgress{},
		rewinds:   map[int32]map[TopicPartition]int64{},
		rewindC:   make(chan struct{}, 1),
		stopC:     make(chan struct{}),
		followers: map[int32]*follower{},
		assigning: map[int32]bool{},
		stopped:   map[int32]string{},
	}
	n.space.clock, n.space.log = o.Clock, o.Logger
	n.sessions.report = o.Metrics.Sessions
	if sr, ok := o.Store.(state.SpaceReporter); ok && o.MinFreeBytes >= 0 {
		n.space.st = sr
		n.space.min = uint64(o.MinFreeBytes)
		if o.MinFreeBytes == 0 {
			n.space.min = DefaultMinFreeBytes
		}
	}
	return n, nil
}

// plan is the compiled app.
type plan struct {
	app       *app.App
	sources   map[string]*app.Source // by topic, with the repartition topics
	repart    map[string]string      // repartition topic → bucket
	buckets   map[string]*bucketPlan
	functions map[string]*fnPlan
	eventTime bool // some trigger runs on event time
	// rawTopics are the source topics whose records' bytes are kept for
	// pass-through (passthrough.go).
	rawTopics map[string]bool
}

type bucketPlan struct {
	cfg      *app.Bucket
	triggers []trigPlan
	// broadcast holds the control keys of the bucket's dynamic_group
	// triggers: with partition_by, such control objects go to every
	// partition (each partition's groups wait for all of them).
	broadcast map[string]bool
}

type trigPlan struct {
	spec       triggers.Spec
	fn         *fnPlan
	groupCol   string // dynamic_group: column of an object's group
	countCol   string // dynamic_join: column of the announced count
	lateBucket string // by_time on event time: where late objects go
	// inc is set for a trigger that keeps partial aggregates (fold.go).
	inc fn.Incremental
}

type fnPlan struct {
	cfg  *app.Function
	impl fn.Function
	// builtin: a built-in kind (not a Go function, not replaced through
	// Options.Functions): it cannot hang, so it runs without a timeout
	// goroutine, and small inputs run on the task's goroutine (exec.go).
	builtin bool
	// passthrough: its kept rows go to its sinks as the records came
	// (passthrough.go).
	passthrough bool
	buckets     []string    // outputs that are buckets
	sinks       []*app.Sink // outputs that are Kafka sinks
	result      string      // the output that answers invocations, if any
	tables      []*app.Sink // outputs that are tables
	// connected are outputs that are sinks of a connector's kind.
	connected []*app.Sink
	// encoders encode the sinks of a connector's format, by sink name.
	encoders map[string]RecordEncoder
}

func compile(a *app.App, overrides map[string]fn.Function, tables builtin.Tables, formats map[string]WireFormat) (*plan, error) {
	encoders := map[string]RecordEncoder{}
	for i := range a.Sinks {
		s := &a.Sinks[i]
		if wf := formats[s.Format]; wf != nil {
			enc, err := wf.NewEncoder(s)
			if err != nil {
				return nil, fmt.Errorf("engine: sink %s: %w", s.Name, err)
			}
			encoders[s.Name] = enc
		}
	}
	p := &plan{app: a, sources: map[string]*app.Source{}, repart: map[string]string{}, buckets: map[string]*bucketPlan{}, functions: map[string]*fnPlan{}}
	for i := range a.Sources {
		p.sources[a.Sources[i].Topic] = &a.Sources[i]
	}
	repartitionSources(a, p.sources, p.repart)
	invocationsSource(a, p.sources)
	for i := range a.Functions {
		f := &a.Functions[i]
		impl, ok := overrides[f.Name]
		if !ok {
			var err error
			if impl, err = builtin.Build(f, tables); err != nil {
				return nil, err
			}
		}
		fp := &fnPlan{cfg: f, impl: impl, encoders: encoders, builtin: !ok && f.Kind != "go"}
		fp.passthrough = passesThrough(a, f, impl, fp.builtin)
		for _, o := range f.Outputs {
			switch s := a.Sink(o); {
			case s != nil && s.Kind == "result":
				fp.result = o
			case s != nil && s.Kind == "table":
				fp.tables = append(fp.tables, s)
			case s != nil && s.Kind == "kafka":
				fp.sinks = append(fp.sinks, s)
			case s != nil:
				fp.connected = append(fp.connected, s)
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
		p.eventTime = p.eventTime || t.Time == "event"
		tp := trigPlan{
			spec:       a.TriggerSpec(&t),
			fn:         p.functions[t.Function],
			groupCol:   t.GroupColumn,
			countCol:   t.CountColumn,
			lateBucket: t.LateBucket,
		}
		tp.inc, tp.spec.Fold = foldable(&t, tp.fn.impl)
		bp.triggers = append(bp.triggers, tp)
	}
	p.rawTopics = rawTopics(a, p)
	for _, t := range a.Triggers {
		if bp := p.buckets[t.Bucket]; t.Primitive == "dynamic_group" && bp.cfg.PartitionBy != "" {
			if bp.broadcast == nil {
				bp.broadcast = map[string]bool{}
			}
			bp.broadcast[t.ControlKey] = true
		}
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
	n.closing = true
	close(n.stopC)
	for _, t := range n.tasks {
		t.stop()
	}
	n.mu.Unlock()
	n.taskWG.Wait()
	n.stopStandbys()
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

// startTask registers t and starts its goroutine. n.mu is held.
func (n *Node) startTask(t *task) {
	n.tasks[t.part] = t
	delete(n.stopped, t.part)
	for topic, off := range t.offsets {
		n.committed[TopicPartition{topic, t.part}] = off
	}
	n.taskWG.Add(1)
	go func() {
		defer n.taskWG.Done()
		err := t.run()
		var re *restartError
		var ol *OffsetLossError
		switch {
		case err == nil:
		case errors.As(err, &re):
			n.restartTask(t, err)
		case errors.As(err, &ol):
			// Only this partition stops; the others go on.
			n.log.Error("partition stopped", "partition", t.part, "error", err)
			n.mu.Lock()
			n.stopped[t.part] = err.Error()
			n.mu.Unlock()
		default:
			n.fail(fmt.Errorf("engine: partition %d: %w", t.part, err))
		}
	}()
}

// restartTask replaces a task whose cycle could not be committed (an
// aborted transaction, a record Kafka did not acknowledge) with a new one
// that starts from the last commit: it restores the state, and the source
// rewinds the partition's topics to the committed offsets (TakeRewinds)
// before records reach the new task. A fenced task waits one session
// timeout first: a newer owner exists, and the group normally revokes the
// partition from this node meanwhile (then nothing restarts). The dead
// task stays registered until then, so Deliver drops its records.
func (n *Node) restartTask(old *task, cause error) {
	part := old.part
	fenced := errors.Is(cause, ErrFenced)
	n.log.Warn("partition task stopped; its uncommitted cycles are discarded and it restarts from its last commit",
		"partition", part, "fenced", fenced, "error", cause)
	// A failure that repeats (every restart fails again) backs off, on the
	// clock, up to 10 s between restarts.
	if r := old.cm.restarts.Load(); r > 0 {
		t := n.o.Clock.NewTimer(min(time.Duration(r)*time.Second, 10*time.Second))
		select {
		case <-t.C():
		case <-n.stopC:
			t.Stop()
			return
		}
	}
	if fenced {
		t := n.o.Clock.NewTimer(n.o.FencedWait)
		select {
		case <-t.C():
		case <-n.stopC:
			t.Stop()
			return
		}
	}
	current := func() bool {
		n.mu.Lock()
		defer n.mu.Unlock()
		return n.tasks[part] == old && !n.closing
	}
	for attempt := 0; current(); attempt++ {
		err := n.reopen(old, cause)
		if err == nil {
			return
		}
		n.log.Warn("restarting partition task failed; retrying", "partition", part, "error", err)
		t := n.o.Clock.NewTimer(min(time.Duration(attempt+1)*time.Second, 10*time.Second))
		select {
		case <-t.C():
		case <-n.stopC:
			t.Stop()
			return
		}
	}
}

// reopen starts a new task in old's place, from the last commit; cause
// is why (Retrying shows it until the new task commits).
func (n *Node) reopen(old *task, cause error) error {
	part := old.part
	w, err := n.o.Writers(part)
	if err != nil {
		return err
	}
	tx, _ := w.(Transactional)
	repair, chunks, err := n.restore(n.runCtx, part, tx != nil && tx.Transactional())
	if err != nil {
		w.Close()
		return err
	}
	t, err := newTask(n, part, w, repair, chunks)
	if err != nil {
		return err
	}
	t.cm.restarts.Store(old.cm.restarts.Load() + 1)
	why := cause.Error()
	t.cm.cause.Store(&why)
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.tasks[part] != old || n.closing {
		t.releaseAll() // revoked or stopping meanwhile
		return nil
	}
	n.rewindLocked(t)
	n.startTask(t)
	n.log.Info("partition task restarted from its last commit", "partition", part, "offsets", t.offsets)
	return nil
}

// LogRange is what a look at a partition's log found: its first offset and
// its end (the offset the next record will get; the last stable offset
// when reading committed).
type LogRange struct{ Start, End int64 }

// LookStart is taken (StartLook) before a look at the logs begins: its
// time decides whether the look is fresh, its ticket orders it against the
// records the tasks were delivered.
type LookStart struct {
	At  time.Time
	seq uint64
}

// rewind makes the source seek partition t.part's topics to t.offsets
// before it delivers more (see TakeRewinds); records fetched before are
// dropped. It takes n.mu.
func (n *Node) rewind(t *task) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.rewindLocked(t)
}

// rewindLocked is rewind with n.mu held.
func (n *Node) rewindLocked(t *task) {
	offs := map[TopicPartition]int64{}
	for topic := range n.plan.sources {
		if off, ok := t.offsets[topic]; ok {
			offs[TopicPartition{topic, t.part}] = off
		}
	}
	t.rewinding = true
	n.rewinds[t.part] = offs
	select {
	case n.rewindC <- struct{}{}:
	default:
	}
}

func (n *Node) setCommitted(part int32, offs map[string]int64) {
	n.mu.Lock()
	for topic, off := range offs {
		n.committed[TopicPartition{topic, part}] = off
	}
	n.mu.Unlock()
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
