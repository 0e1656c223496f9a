// Package engine runs a Pheromone app on one node: it owns the partition
// tasks, their buckets and triggers, and the executor pool that runs the
// functions the triggers fire.
//
// The engine talks to the outside only through small contracts: sources
// call its Feed (source.go; SourceKind for connectors' sources), it writes
// through Producer and PartitionWriter, restores through ChangelogReader,
// hands connectors' sinks their rows through SinkKind, keeps state in a
// state.Store, and reports to Metrics on a Clock. The adapters for Kafka,
// Pebble and Prometheus live outside it, and a test enforces that the
// engine never depends on them, even transitively (docs/DESIGN.md lists
// each contract and who implements it).
package engine

import (
	"context"
	"errors"
	"time"

	"github.com/pheromone-go/pheromone/engine/app"
)

// Record is one input record handed to the engine by a source connector.
// Key and Value are owned by the engine from Deliver (or DeliverFetch) on
// and must not be modified by the caller.
type Record struct {
	Key       []byte
	Value     []byte
	Headers   []Header
	Offset    int64
	Timestamp time.Time
}

// Header returns the value of the first header named key, or nil.
func (r *Record) Header(key string) []byte {
	for _, h := range r.Headers {
		if h.Key == key {
			return h.Value
		}
	}
	return nil
}

// Header is a Kafka record header.
type Header struct {
	Key   string
	Value []byte
}

// OutRecord is one record the engine writes to a topic.
type OutRecord struct {
	Topic   string
	Key     []byte
	Value   []byte
	Headers []Header
	// Partition is where the record goes when ToPartition is set (changelog
	// and repartition records); otherwise the producer picks the partition
	// from Key like a keyed Kafka producer (murmur2).
	Partition   int32
	ToPartition bool
}

// Producer writes records to topics. Produce must not block for long; done is
// called exactly once, from any goroutine, when the record is acknowledged
// (err == nil) or failed for good. Produce does not keep r once it returns
// (r's Key, Value and Headers it may keep until done).
type Producer interface {
	Produce(r *OutRecord, done func(error))
}

// PartitionWriter writes everything one partition task produces: sink,
// dead-letter and repartition records, and the task's changelog. A
// transactional writer is called only by the task's goroutine; an
// at-least-once writer also by the task's committer (which writes the
// changelog of a cycle once its other records are acknowledged), so it must
// be safe for concurrent use.
type PartitionWriter interface {
	// Produce buffers r; done is called exactly once, from any goroutine,
	// with the record's offset once acknowledged, or with the error that
	// failed it for good. Produce must not block for long, and does not
	// keep r once it returns (r's Key, Value and Headers it may keep until
	// done): callers reuse it.
	Produce(r *OutRecord, done func(offset int64, err error))
	// Commit ends a unit of work. A transactional writer (exactly-once)
	// waits for every record produced since the last Commit and commits
	// them, and the input offsets in the changelog, as one Kafka
	// transaction; on error the transaction is aborted and nothing of it is
	// visible to read_committed readers. Other writers return nil.
	Commit(ctx context.Context) error
	// Close releases the writer; an open transaction is aborted.
	Close()
}

// Transactional is implemented by writers whose Commit commits a
// transaction; the task then commits its state only after Commit.
type Transactional interface{ Transactional() bool }

// ErrFenced is returned (wrapped) by a transactional Commit when another
// writer with the same transactional id took over the partition: the task
// stops without retrying.
var ErrFenced = errors.New("engine: writer fenced by a newer owner of the partition")

// ErrRestoreDone tells a ChangelogReader that the restore has read all it
// needs (the rest of the range is transaction markers).
var ErrRestoreDone = errors.New("engine: restore done")

// ChangelogReader reads one partition of the changelog topic.
type ChangelogReader interface {
	// Read calls fn, in offset order, for every record of partition part
	// from offset from up to the end the partition had when Read started
	// (the last stable offset when reading committed data only); value is
	// nil for tombstones. end is called once with that end offset first.
	// Key and value stay valid after the call and are not changed (a
	// restore keeps them until it writes them). When fn returns
	// ErrRestoreDone, Read stops and returns nil.
	Read(ctx context.Context, part int32, from int64, end func(int64), fn func(offset int64, key, value []byte) error) error
	// Follow is Read without an end: it calls fn for every record from
	// offset from on, as they arrive, until ctx ends or fn fails. Key and
	// value are valid only during the call.
	Follow(ctx context.Context, part int32, from int64, fn func(offset int64, key, value []byte) error) error
}

// Clock tells processing time. Tests inject a manual clock; production uses
// SystemClock.
type Clock interface {
	Now() time.Time
	// NewTimer returns a timer that sends on C once d has passed.
	NewTimer(d time.Duration) Timer
}

// Timer is the part of time.Timer the engine uses.
type Timer interface {
	C() <-chan time.Time
	Stop() bool
}

// SystemClock is the wall clock.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }

// NewTimer wraps time.NewTimer.
func (SystemClock) NewTimer(d time.Duration) Timer { return sysTimer{time.NewTimer(d)} }

type sysTimer struct{ t *time.Timer }

func (t sysTimer) C() <-chan time.Time { return t.t.C }
func (t sysTimer) Stop() bool          { return t.t.Stop() }

// Metrics receives the engine's measurements. Implementations must be safe
// for concurrent use and cheap: they are called on the hot path.
type Metrics interface {
	RecordsIn(source string, n int)
	RecordsOut(sink string, n int)
	DecodeErrors(source string, n int)
	DeadLetters(reason string, n int)
	Firings(trigger string, n int)
	// TriggerDropped counts objects a trigger discarded by design (the
	// late n-k replicas of redundant, duplicate keys of a set).
	TriggerDropped(trigger string, n int)
	Invocation(function string, d time.Duration, err error)
	// FunctionDropped counts input rows a function discarded by design
	// (a lookup's rows without a match in its table).
	FunctionDropped(function string, n int)
	BucketSize(bucket string, partition int32, objects, bytes int64)
	Lag(topic string, partition int32, lag int64)
	// Restore reports a partition's changelog restore: bytes applied since
	// the last call and records still to read (0 when done).
	Restore(partition int32, bytes int, remaining int64)
	// EventTime reports an event-time trigger's progress on one bucket
	// partition: its watermark (zero before it has one), whether the
	// partition counts as idle, and the start of its oldest open window
	// (zero: none).
	EventTime(bucket, trigger string, partition int32, watermark time.Time, idle bool, oldestWindow time.Time)
	// OffsetLoss counts a partition of topic whose log no longer held the
	// offset its state resumes from.
	OffsetLoss(topic string, partition int32)
	// PartitionGone drops the gauges of a partition this node no longer
	// runs (revoked), so they do not show its last values for good.
	PartitionGone(partition int32)
	// Cycle reports one cycle of a partition task: the backpressure it met
	// and the changelog bytes it wrote.
	Cycle(partition int32, s CycleStats)
	// Commit reports one state commit of the committer (synced or not).
	Commit(d time.Duration, synced bool)
	// Transaction reports one Kafka transaction's commit (exactly_once).
	Transaction(d time.Duration)
	// Late counts event-time objects that missed their windows: routed to
	// the trigger's late bucket, or dropped (also in TriggerDropped).
	Late(trigger string, n int)
	// Sessions reports how many invocation sessions are in flight.
	Sessions(n int)
	// DurableSessions reports how many durable sessions a partition keeps.
	DurableSessions(partition int32, n int)
	// SessionEvent counts durable sessions' events: started, deduplicated,
	// refused, done, failed, timed_out, cancelled, expired.
	SessionEvent(event string)
}

// CycleStats is what a partition task reports of one cycle.
type CycleStats struct {
	// BlockedExecutor is the time the task waited to hand firings to a
	// full executor queue; BlockedCommit, to queue the cycle's commit
	// behind the pipelined ones. Both are backpressure.
	BlockedExecutor, BlockedCommit time.Duration
	// InboxFill is how full the task's inbox was at the cycle's end (0-1).
	InboxFill float64
	// ChangelogBytes are the key and value bytes the cycle wrote to the
	// changelog.
	ChangelogBytes int
}

// NopMetrics discards everything.
type NopMetrics struct{}

func (NopMetrics) RecordsIn(string, int)                                       {}
func (NopMetrics) RecordsOut(string, int)                                      {}
func (NopMetrics) DecodeErrors(string, int)                                    {}
func (NopMetrics) DeadLetters(string, int)                                     {}
func (NopMetrics) Firings(string, int)                                         {}
func (NopMetrics) TriggerDropped(string, int)                                  {}
func (NopMetrics) Invocation(string, time.Duration, error)                     {}
func (NopMetrics) FunctionDropped(string, int)                                 {}
func (NopMetrics) BucketSize(string, int32, int64, int64)                      {}
func (NopMetrics) Lag(string, int32, int64)                                    {}
func (NopMetrics) Restore(int32, int, int64)                                   {}
func (NopMetrics) EventTime(string, string, int32, time.Time, bool, time.Time) {}
func (NopMetrics) OffsetLoss(string, int32)                                    {}
func (NopMetrics) PartitionGone(int32)                                         {}
func (NopMetrics) Cycle(int32, CycleStats)                                     {}
func (NopMetrics) Commit(time.Duration, bool)                                  {}
func (NopMetrics) Transaction(time.Duration)                                   {}
func (NopMetrics) Late(string, int)                                            {}
func (NopMetrics) Sessions(int)                                                {}
func (NopMetrics) DurableSessions(int32, int)                                  {}
func (NopMetrics) SessionEvent(string)                                         {}

// Headers written on dead-letter records.
const (
	HeaderError     = "pheromone.error"
	HeaderReason    = "pheromone.reason"
	HeaderTopic     = "pheromone.topic"
	HeaderPartition = "pheromone.partition"
	HeaderOffset    = "pheromone.offset"
	HeaderFunction  = "pheromone.function"
	HeaderTrigger   = "pheromone.trigger"
	HeaderBucket    = "pheromone.bucket"
	HeaderSession   = "pheromone.session"
	// HeaderWatermark, on the records of a repartition topic whose bucket
	// has event-time triggers, carries the sending partition and its
	// watermarks (see repartition.go); a record with it and no value is a
	// watermark marker.
	HeaderWatermark = "pheromone.watermark"
)

// Dead-letter reasons (the pheromone.reason header and the metric label).
const (
	ReasonDecode = "decode"
	// ReasonSchema: a registry format's record names a schema that is
	// unknown, or incompatible with the source's columns.
	ReasonSchema         = "schema"
	ReasonTooLarge       = "too_large"
	ReasonFunction       = "function"
	ReasonBucket         = "bucket_full"
	ReasonSessionTimeout = "session_timeout"
	ReasonSessionFull    = "session_full"
)

// Headers of a dead letter cut to its topic's record limit.
const (
	HeaderTruncated      = "pheromone.truncated"       // "true"
	HeaderOriginalSize   = "pheromone.original_size"   // bytes of the original value
	HeaderOriginalSHA256 = "pheromone.original_sha256" // hex SHA-256 of the original value
)

func (r *OutRecord) header(key string) []byte {
	for _, h := range r.Headers {
		if h.Key == key {
			return h.Value
		}
	}
	return nil
}

// outSize is what a record weighs against a topic's record limit.
func outSize(r *OutRecord) int {
	n := len(r.Key) + len(r.Value)
	for _, h := range r.Headers {
		n += len(h.Key) + len(h.Value)
	}
	return n
}

// SinkKind is a sink kind a connector provides, beyond the engine's own
// (Kafka topics, tables and invocation results). A binary registers it
// under its name in Options.SinkKinds (and declares it to the app file's
// validation with app.SinkKind); a sink of that kind in the app file gets
// its rows through it. Adding a sink kind touches the connector's package
// and the binary's wiring, not the engine.
type SinkKind interface {
	// Open returns the writer of partition part's rows of sink s. A
	// partition task opens one per sink of this kind when it starts and
	// closes it when it ends.
	Open(s *app.Sink, part int32) (SinkWriter, error)
}

// SinkWriter writes one partition task's rows of one sink. Only the task's
// goroutine calls Write and Close, cycle after cycle.
type SinkWriter interface {
	// Write writes one invocation's rows, in order, as part of the current
	// cycle, and calls done once they are durable — or with the error that
	// kept them from it: the cycle is then committed nowhere and the
	// partition restarts from its last commit, so a sink receives rows at
	// least once. done may be called from any goroutine, before or after
	// Write returns. rows are valid only until done is called.
	Write(rows []SinkRow, done func(error))
	// Close releases the writer once the task has committed its last
	// cycle.
	Close() error
}

// SinkRow is one row for a connector's sink: a JSON object, and its key
// (the sink's key column, nil without one). Headers are set only for a
// record passed through as it came (passthrough.go).
type SinkRow struct {
	Key, Value []byte
	Headers    []Header
}
