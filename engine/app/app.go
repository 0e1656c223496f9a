// Package app reads and validates the app file: one YAML document that
// declares an app's sources, buckets, triggers, functions and sinks.
//
// Parse decodes the file; Validate reports every problem at once, each with
// its YAML path, and on success fills in the derived facts the engine needs
// (defaults, parsed durations, the Arrow schema of every bucket and the
// topological order of buckets). docs/app-format.md documents the format.
package app

import (
	"fmt"
	"strings"
	"time"

	"github.com/apache/arrow/go/v15/arrow"

	"github.com/pheromone-go/pheromone/triggers"
)

// App is the app file. Field comments give the defaults Validate fills in.
type App struct {
	// Name of the app; prefixes the consumer group, the dead-letter topic
	// (<name>.dlq) and every state key.
	Name      string     `yaml:"app"`
	Kafka     Kafka      `yaml:"kafka"`
	Sources   []Source   `yaml:"sources"`
	Buckets   []Bucket   `yaml:"buckets"`
	Triggers  []Trigger  `yaml:"triggers"`
	Functions []Function `yaml:"functions"`
	Sinks     []Sink     `yaml:"sinks"`
	// Invoke enables request/response invocation over HTTP (optional).
	Invoke *Invoke `yaml:"invoke"`
	// Tables are reference data that lookup functions join against.
	Tables []Table `yaml:"tables"`
	// SchemaRegistry serves the schemas of the registry formats.
	SchemaRegistry *SchemaRegistry `yaml:"schema_registry"`

	// Derived by Validate.
	bucketIdx   map[string]int
	functionIdx map[string]int
	// positions are the line and column of every key and list item of the
	// parsed file, by YAML path: problems carry them.
	positions map[string]Position
	sinkIdx   map[string]int
}

// What a partition does when its offset is gone from the log.
const (
	OffsetLossFail     = "fail"
	OffsetLossEarliest = "earliest"
	OffsetLossLatest   = "latest"
)

// Guarantees.
const (
	AtLeastOnce = "at_least_once"
	ExactlyOnce = "exactly_once"
)

// TriggerSpec is what the triggers package needs of trigger t (after
// Validate): its primitive and parameters, durations parsed, the per-session
// bound of its bucket, and — for event time on a repartitioned bucket —
// how many upstream partitions' watermarks it merges.
func (a *App) TriggerSpec(t *Trigger) triggers.Spec {
	b := a.Bucket(t.Bucket)
	inputs := 0
	if t.Time == "event" && b.PartitionBy != "" {
		inputs = a.Partitions() // objects come from every partition
	}
	return triggers.Spec{
		Name: t.Name, Primitive: t.Primitive, Inputs: inputs,
		Count: t.Count, Window: t.window, Slide: t.slide, Gap: t.gap,
		EventTime: t.Time == "event", OutOfOrderness: t.outOfOrderness,
		AllowedLateness: t.lateness, IdleTimeout: t.idle, MaxFuture: t.maxFuture,
		Match: t.Match, Keys: t.Keys, K: t.K, N: t.N, ControlKey: t.ControlKey, Controls: t.Controls,
		SessionTimeout: t.sessionTimeout,
		MaxPerSession:  b.MaxObjectsPerSession,
	}
}

// RepartitionTopic is the topic that carries objects into a bucket with
// partition_by to the partition that owns their key.
func (a *App) RepartitionTopic(bucket string) string { return a.Name + "." + bucket + ".repartition" }

// Partitions is the app's partition count: every source, the changelog and
// the repartition topics have it (co-partitioning).
func (a *App) Partitions() int {
	n := 0
	for _, s := range a.Sources {
		n = max(n, s.Partitions)
	}
	return n
}

// Column is one typed column of a source schema.
type Column struct {
	Name string `yaml:"name"`
	// Type is one of string, int64, float64, bool, timestamp (milliseconds
	// since the epoch in JSON, or an RFC 3339 string), bytes.
	Type string `yaml:"type"`
}

// Source reads a Kafka topic into a bucket.
type Source struct {
	Name string `yaml:"name"`
	// Kind is kafka (default) or generator (built-in test data written to
	// Topic by the node itself).
	Kind  string `yaml:"kind"`
	Topic string `yaml:"topic"`
	// Format is json (default), raw (columns key and value, both bytes) or
	// a connector's (the registry formats avro, protobuf, json_schema).
	Format string   `yaml:"format"`
	Schema []Column `yaml:"schema"`
	// Registry says where a registry format's schema comes from.
	Registry *Subject `yaml:"registry"`
	// Key is the column whose value is the object key; default: the Kafka
	// record key is not used and objects have no key.
	Key string `yaml:"key"`
	// EventTime is an optional timestamp or int64 column.
	EventTime string `yaml:"event_time"`
	Bucket    string `yaml:"bucket"`
	// SessionHeader names a Kafka record header that carries the session
	// id; its value becomes the string column SessionColumn (default
	// "session"), and the bucket's session unless the bucket names another.
	SessionHeader string `yaml:"session_header"`
	SessionColumn string `yaml:"session_column"`
	// Partitions is used when the node creates the topic; default 4.
	Partitions int `yaml:"partitions"`
	// MaxRecordBytes larger records go to the dead-letter topic; default 1 MiB.
	MaxRecordBytes int        `yaml:"max_record_bytes"`
	Generator      *Generator `yaml:"generator"`
	// Options configure a source of a connector's kind (see SourceKind),
	// e.g. the path of a file source.
	Options map[string]string `yaml:"options"`
}

// Connector reports whether the source is of a connector's kind (not
// Kafka, not the generator): its records do not come from a Kafka topic.
func (s *Source) Connector() bool { return s.Kind != "" && s.Kind != "kafka" && s.Kind != "generator" }

// Generator configures a generator source.
type Generator struct {
	// Profile is the kind of data; only clickstream exists.
	Profile string `yaml:"profile"`
	// Rate is records per second; required, > 0.
	Rate int `yaml:"rate"`
	// Seed makes the data repeatable; default 1.
	Seed int64 `yaml:"seed"`
	// Limit stops after this many records; 0 means run forever.
	Limit int64 `yaml:"limit"`
}

// Bucket is a named, partitioned store of objects.
type Bucket struct {
	Name string `yaml:"name"`
	// Key is the column whose value is an object's key (what by_name,
	// by_set and the dynamic triggers look at). Default: the key column of
	// the source that feeds the bucket.
	Key string `yaml:"key"`
	// Session is the column that holds an object's session id; objects
	// without one share the session "".
	Session string `yaml:"session"`
	// EventTime is the timestamp (or int64 milliseconds) column event-time
	// triggers read; default: the event_time of the source that feeds it.
	EventTime string `yaml:"event_time"`
	// MaxObjects bounds the objects held per partition; default 1,000,000.
	MaxObjects int64 `yaml:"max_objects"`
	// MaxBytes bounds the bytes held per partition; default 256 MiB.
	MaxBytes int64 `yaml:"max_bytes"`
	// MaxObjectsPerSession bounds what one session may hold in each
	// per-session trigger of the bucket (by_batch_size, by_set, redundant,
	// dynamic_join, dynamic_group); more objects go to the dead-letter topic
	// with reason session_full. Default: no bound.
	MaxObjectsPerSession int `yaml:"max_objects_per_session"`
	// PartitionBy names a column: objects functions put into the bucket go
	// to the partition that owns the column's value (Kafka's murmur2 hash of
	// it, like a keyed producer), through the topic "<app>.<bucket>.repartition"
	// when that partition is not the one running the function. Objects from
	// a source are expected to be keyed by it already. Default: objects stay
	// on the partition that produced them.
	PartitionBy string `yaml:"partition_by"`
}

// Trigger attaches a primitive to a bucket and names the function it fires.
type Trigger struct {
	Name      string `yaml:"name"`
	Bucket    string `yaml:"bucket"`
	Primitive string `yaml:"primitive"`
	Function  string `yaml:"function"`
	// Count is the batch size of by_batch_size.
	Count int `yaml:"count"`
	// Window is the window length of by_time, a Go duration ("10s").
	Window string `yaml:"window"`
	// Match is the object key by_name fires on.
	Match string `yaml:"match"`
	// Keys is the set by_set waits for per session, in the order it
	// passes the objects.
	Keys []string `yaml:"keys"`
	// K and N: redundant fires with the first k of n objects per session.
	K int `yaml:"k"`
	N int `yaml:"n"`
	// ControlKey is the object key of control objects: the announcement of
	// dynamic_join (default "_join") or the end-of-stage marker of
	// dynamic_group (default "_done").
	ControlKey string `yaml:"control_key"`
	// CountColumn is the int64 column of a dynamic_join announcement that
	// holds how many parts to wait for.
	CountColumn string `yaml:"count_column"`
	// Controls is how many control objects close a dynamic_group session.
	Controls int `yaml:"controls"`
	// GroupColumn is the column that holds a dynamic_group object's group.
	GroupColumn string `yaml:"group_column"`
	// SessionTimeout abandons a session idle this long; its objects go to
	// the dead-letter topic (Go duration; default: never).
	SessionTimeout string `yaml:"session_timeout"`
	// by_time: Slide makes the window sliding (hopping); Gap makes session
	// windows per object key instead of Window.
	Slide string `yaml:"slide"`
	Gap   string `yaml:"gap"`
	// Time is processing (default) or event: event time reads the bucket's
	// event_time column and closes windows by watermark.
	Time string `yaml:"time"`
	// Event-time settings: OutOfOrderness (watermark = largest event time -
	// this; default 0), AllowedLateness (fire this long after the window
	// end; default 0), IdleTimeout (after this long without objects the
	// watermark follows the clock; default: never), MaxFuture (event times
	// further ahead of the clock are clamped; default 1h).
	OutOfOrderness  string `yaml:"out_of_orderness"`
	AllowedLateness string `yaml:"allowed_lateness"`
	IdleTimeout     string `yaml:"idle_timeout"`
	MaxFuture       string `yaml:"max_future"`
	// LateBucket receives late objects (with the same schema); default:
	// they are dropped and counted in pheromone_trigger_dropped_total.
	LateBucket string `yaml:"late_bucket"`
	// Incremental (by_time, default true) lets a window firing a built-in
	// aggregate keep each window's partial aggregate instead of its
	// objects (docs/triggers.md); false keeps the objects.
	Incremental *bool `yaml:"incremental"`

	window, sessionTimeout                                time.Duration
	slide, gap, outOfOrderness, lateness, idle, maxFuture time.Duration
}

// IncrementalAllowed reports whether Incremental is not turned off.
func (t *Trigger) IncrementalAllowed() bool { return t.Incremental == nil || *t.Incremental }

// WindowDuration is the parsed Window (valid after Validate).
func (t *Trigger) WindowDuration() time.Duration { return t.window }

// Function is a built-in function with its parameters.
type Function struct {
	Name string `yaml:"name"`
	// Kind is filter, project, aggregate, split, route, lookup, emit, or go (a Go function
	// registered under the function's name in the binary).
	Kind string `yaml:"kind"`
	// Expr is the boolean expression of a filter.
	Expr string `yaml:"expr"`
	// Columns are the output columns of a project.
	Columns []ProjectColumn `yaml:"columns"`
	// GroupBy and Aggregates configure an aggregate.
	GroupBy    []string    `yaml:"group_by"`
	Aggregates []Aggregate `yaml:"aggregates"`
	// Column, As and Separator configure a split: the string column to
	// split, the name of the output column holding each part (default: the
	// column's own name, replaced), and the separator (default: runs of
	// white space). A null or empty value yields one row with a null part,
	// so control records pass through.
	Column    string `yaml:"column"`
	As        string `yaml:"as"`
	Separator string `yaml:"separator"`
	// Outputs are bucket or sink names; every output gets the function's
	// whole result.
	Outputs []string `yaml:"outputs"`
	// Retries is how often a failed invocation is retried before its inputs
	// go to the dead-letter topic; default 3.
	Retries int `yaml:"retries"`
	// Timeout bounds one attempt (Go duration; default 30s). An attempt
	// that does not return in time counts as failed; its goroutine is
	// abandoned.
	Timeout string `yaml:"timeout"`
	// Order is firing (default): the outputs of a cycle's invocations are
	// applied in the order the triggers fired, so results do not depend on
	// executor timing; or completion: applied as soon as the invocation
	// returns (for replicas whose fastest k should win, see redundant).
	Order string `yaml:"order"`
	// Schema declares the output columns of a `kind: go` function.
	Schema []Column `yaml:"schema"`
	// Lookup joins each row with the row of Table whose key equals column
	// On, adding TableColumns (default: all but the key); rows without a
	// match are dropped unless KeepUnmatched (then the added columns are
	// null).
	Table         string   `yaml:"table"`
	On            string   `yaml:"on"`
	TableColumns  []string `yaml:"table_columns"`
	KeepUnmatched bool     `yaml:"keep_unmatched"`
	// Route configures a route: By names a string column whose value is
	// the output a row goes to; Routes send rows to the first route whose
	// expression holds; Default takes the rest (without it they are
	// dropped).
	By      string  `yaml:"by"`
	Routes  []Route `yaml:"routes"`
	Default string  `yaml:"default"`

	timeout time.Duration

	inSchema, outSchema *arrow.Schema
}

// Route is one branch of a route function.
type Route struct {
	When string `yaml:"when"`
	To   string `yaml:"to"`
}

// ProjectColumn is one output column of a project: a column kept as is
// (name), renamed (name + from) or computed (name + expr).
type ProjectColumn struct {
	Name string `yaml:"name"`
	From string `yaml:"from"`
	Expr string `yaml:"expr"`
}

// Aggregate is one aggregate column.
type Aggregate struct {
	Name string `yaml:"name"`
	// Op is count, sum, min, max, avg, count_distinct or top_k.
	Op     string `yaml:"op"`
	Column string `yaml:"column"`
	// K is how many values top_k keeps (most frequent first; ties by value).
	K int `yaml:"k"`
}

// Sink writes a function's output to a Kafka topic.
type Sink struct {
	Name string `yaml:"name"`
	// Kind is kafka (default: a topic), table (the latest row per Key is
	// kept in the node's state and served by GET /v1/apps/{app}/tables/{name})
	// or result (what a function emits to it answers the invocation of its
	// session).
	Kind  string `yaml:"kind"`
	Topic string `yaml:"topic"`
	// Format is json (default) or a connector's (avro, protobuf,
	// json_schema).
	Format string `yaml:"format"`
	// Registry says which subject a registry format registers under.
	Registry *Subject `yaml:"registry"`
	// Key is the column used as the Kafka record key; default none.
	Key string `yaml:"key"`
	// Partitions is used when the node creates the topic; default 4.
	Partitions int `yaml:"partitions"`
	// Options configure a sink of a connector's kind (see SinkKind), e.g.
	// the path of a file sink.
	Options map[string]string `yaml:"options"`
}

// Connectors are the source and sink kinds a binary wires beyond Kafka
// (and the engine's own sinks); it passes them to LoadWith or
// ValidateWith so sources and sinks of those kinds validate.
type Connectors struct {
	Sources []SourceKind
	Sinks   []SinkKind
	Formats []FormatKind
}

// SinkKind declares a sink kind a connector provides beyond the engine's
// own (kafka, table, result): its name and the options its sinks take.
type SinkKind struct {
	Name    string
	Doc     string
	Options []Option
}

// SourceKind declares a source kind a connector provides beyond kafka and
// generator: its name and the options its sources take. A source of a
// connector's kind has no topic (its records never pass through Kafka),
// one partition unless it says otherwise, and the options.
type SourceKind struct {
	Name    string
	Doc     string
	Options []Option
}

// Option is one option of a connector's sink kind.
type Option struct {
	Name     string
	Required bool
	Doc      string
}

// Table is reference data for lookups: the latest JSON row per key, read
// in full by every node (like a Kafka Streams GlobalKTable) from a compacted
// topic (kept up to date while the node runs) or from a file of JSON lines.
type Table struct {
	Name   string   `yaml:"name"`
	Topic  string   `yaml:"topic"`
	File   string   `yaml:"file"`
	Schema []Column `yaml:"schema"`
	// Format of a topic's rows: json (default) or a registry format.
	Format string `yaml:"format"`
	// Registry says where a registry format's schema comes from.
	Registry *Subject `yaml:"registry"`
	// Key is the column rows are kept by (and looked up by).
	Key string `yaml:"key"`
	// Partitions is used when the node creates the topic; default 1.
	Partitions int `yaml:"partitions"`
}

// ArrowSchema is the table's schema (valid after Validate).
func (t *Table) ArrowSchema() *arrow.Schema { return schemaOf(t.Schema) }

// Table returns the table named name, or nil.
func (a *App) Table(name string) *Table {
	for i := range a.Tables {
		if a.Tables[i].Name == name {
			return &a.Tables[i]
		}
	}
	return nil
}

// CompactedTopics lists the table topics (created with cleanup.policy=compact).
func (a *App) CompactedTopics() map[string]int {
	out := map[string]int{}
	if a.Kafka.ChangelogEnabled() {
		out[a.Kafka.ChangelogTopic] = a.Partitions()
	}
	for _, t := range a.Tables {
		if t.Topic != "" {
			out[t.Topic] = t.Partitions
		}
	}
	return out
}

// EntrySource is the source that feeds the invoke entry bucket (valid
// after Validate; nil without invoke).
func (a *App) EntrySource() *Source {
	if a.Invoke == nil {
		return nil
	}
	for i := range a.Sources {
		if a.Sources[i].Bucket == a.Invoke.Entry {
			return &a.Sources[i]
		}
	}
	return nil
}

// Problem is one thing wrong with an app file.
type Problem struct {
	Path string // YAML path, like triggers[2].window
	Msg  string
	// At is where in the file: the key of Path, or of the nearest enclosing
	// key or list item the file has (zero when not known, e.g. a file
	// built in Go).
	At Position
}

// Position is a line and column of the app file, from 1.
type Position struct{ Line, Column int }

func (p Problem) String() string {
	s := p.Msg
	if p.Path != "" {
		s = p.Path + ": " + s
	}
	if p.At.Line > 0 {
		s += fmt.Sprintf(" (line %d, column %d)", p.At.Line, p.At.Column)
	}
	return s
}

// locate gives every problem without a position that of its path, or of
// the nearest enclosing path the file has.
func (a *App) locate(ps Problems) {
	for i := range ps {
		if ps[i].At.Line > 0 || a.positions == nil {
			continue
		}
		for p := ps[i].Path; p != ""; p = parentPath(p) {
			if at, ok := a.positions[p]; ok {
				ps[i].At = at
				break
			}
		}
	}
}

// parentPath drops the last key or index of a YAML path.
func parentPath(p string) string {
	i := strings.LastIndexAny(p, ".[")
	if i < 0 {
		return ""
	}
	return p[:i]
}

// Problems is every problem found in an app file.
type Problems []Problem

func (ps Problems) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "app: %d problem(s):", len(ps))
	for _, p := range ps {
		b.WriteString("\n  ")
		b.WriteString(p.String())
	}
	return b.String()
}

// Bucket returns the bucket named name, or nil.
func (a *App) Bucket(name string) *Bucket {
	if i, ok := a.bucketIdx[name]; ok {
		return &a.Buckets[i]
	}
	return nil
}

// Function returns the function named name, or nil.
func (a *App) Function(name string) *Function {
	if i, ok := a.functionIdx[name]; ok {
		return &a.Functions[i]
	}
	return nil
}

// Sink returns the sink named name, or nil.
func (a *App) Sink(name string) *Sink {
	if i, ok := a.sinkIdx[name]; ok {
		return &a.Sinks[i]
	}
	return nil
}

// TimeoutDuration is the parsed Timeout (valid after Validate).
func (f *Function) TimeoutDuration() time.Duration { return f.timeout }

// InputSchema is the schema of the batches the function receives (valid
// after Validate).
func (f *Function) InputSchema() *arrow.Schema { return f.inSchema }

// OutputSchema is the schema of the batches the function emits.
func (f *Function) OutputSchema() *arrow.Schema { return f.outSchema }

// Topics lists every topic the app reads or writes, with the partition
// count to create it with.
func (a *App) Topics() map[string]int {
	out := map[string]int{a.Kafka.DLQTopic: 1}
	for _, s := range a.Sources {
		if !s.Connector() {
			out[s.Topic] = s.Partitions
		}
	}
	for _, s := range a.Sinks {
		if s.Kind == "kafka" || s.Kind == "" {
			out[s.Topic] = s.Partitions
		}
	}
	for _, b := range a.Buckets {
		if b.PartitionBy != "" {
			out[a.RepartitionTopic(b.Name)] = a.Partitions()
		}
	}
	if a.DurableInvoke() {
		out[a.InvocationsTopic()] = a.Partitions()
	}
	return out
}
