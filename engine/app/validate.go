package app

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/apache/arrow/go/v15/arrow"
)

// MaxWindowsPerObject bounds window/slide of a sliding window: each object
// is held once per window it is in (a 1h window sliding by 1ms took 2.4 GB
// for one record).
const MaxWindowsPerObject = 1000

// Defaults applied by Validate.
const (
	DefaultPartitions     = 4
	DefaultMaxRecordBytes = 1 << 20
	DefaultMaxObjects     = 1_000_000
	DefaultMaxBytes       = 256 << 20
	DefaultRetries        = 3
	DefaultTimeout        = 30 * time.Second
	// DefaultCommitInterval is how long an exactly-once transaction
	// gathers cycles; the engine's own default too.
	DefaultCommitInterval = 100 * time.Millisecond
	// DefaultSessionTimeout is how long the group waits for a silent node;
	// the Kafka source's and the fenced wait's default too.
	DefaultSessionTimeout = 10 * time.Second
)

const aggregateOps = "count, sum, min, max, avg, count_distinct, top_k"

const primitives = "immediate, by_batch_size, by_time, by_name, by_set, redundant, dynamic_join, dynamic_group"

// Column names added by an aggregate fired by a time window.
const (
	WindowStartColumn = "window_start"
	WindowEndColumn   = "window_end"
)

type checker struct{ ps Problems }

func (c *checker) add(path, format string, args ...any) {
	c.ps = append(c.ps, Problem{Path: path, Msg: fmt.Sprintf(format, args...)})
}

// Validate fills in defaults and reports every problem of the app file with
// its YAML path. It returns nil or a Problems value. The checks run section
// by section, in an order where each finds what it needs: names first,
// then sources (they give buckets their first schemas), sinks, triggers,
// the functions' schemas in dependency order, and last the checks that
// need the derived schemas.
func (a *App) Validate() error { return a.ValidateWith(Connectors{}) }

// ValidateWith is Validate for a binary that wires connectors' source and
// sink kinds: sources and sinks of those kinds are checked against their
// options.
func (a *App) ValidateWith(kinds Connectors) error {
	v := &validation{a: a, c: &checker{}, bucketSchema: map[string]*arrow.Schema{}, bucketFrom: map[string]string{},
		topics: map[string]string{}, firedBy: map[string][]int{}, connectors: kinds}
	v.kafka()
	v.schemaRegistry()
	v.names()
	v.tables()
	v.sources()
	v.bucketLimits()
	v.sinks()
	v.derivedTopics()
	for i := range a.Triggers {
		v.trigger(i)
	}
	v.schemas()
	v.functionSettings()
	v.bucketColumns()
	v.triggerColumns()
	v.triggerBounds()
	v.invoke()
	a.checkPartitioning(v.c)
	a.checkCycles(v.c, v.firedBy)
	if len(v.c.ps) > 0 {
		a.locate(v.c.ps)
		return v.c.ps
	}
	return nil
}

// validation is the state Validate's sections share: the schema each
// bucket receives (and from whom), the topics already claimed, and which
// triggers fire each function.
type validation struct {
	a            *App
	c            *checker
	bucketSchema map[string]*arrow.Schema
	bucketFrom   map[string]string
	topics       map[string]string // topic → the YAML path that uses it
	firedBy      map[string][]int  // function → the triggers that fire it
	connectors   Connectors        // the connectors' kinds the binary wires
}

// setSchema records that bucket receives schema s from `from`; a bucket
// holds one schema, so a different one is a problem at path.
func (v *validation) setSchema(path, bucket string, s *arrow.Schema, from string) {
	if prev, ok := v.bucketSchema[bucket]; ok {
		if !prev.Equal(s) {
			v.c.add(path, "bucket %q receives %s from %s but %s from %s; a bucket holds one schema",
				bucket, describe(s), from, describe(prev), v.bucketFrom[bucket])
		}
		return
	}
	v.bucketSchema[bucket] = s
	v.bucketFrom[bucket] = from
}

// names indexes every section by name (duplicates are problems) and checks names that clash.
func (v *validation) names() {
	a, c := v.a, v.c
	a.bucketIdx = index(c, "buckets", len(a.Buckets), func(i int) string { return a.Buckets[i].Name })
	a.functionIdx = index(c, "functions", len(a.Functions), func(i int) string { return a.Functions[i].Name })
	a.sinkIdx = index(c, "sinks", len(a.Sinks), func(i int) string { return a.Sinks[i].Name })
	index(c, "sources", len(a.Sources), func(i int) string { return a.Sources[i].Name })
	index(c, "triggers", len(a.Triggers), func(i int) string { return a.Triggers[i].Name })
	for i, s := range a.Sinks {
		if _, clash := a.bucketIdx[s.Name]; clash && s.Name != "" {
			c.add(fmt.Sprintf("sinks[%d].name", i), "%q is also a bucket name; outputs could not tell them apart", s.Name)
		}
	}
	if len(a.Sources) == 0 {
		c.add("sources", "an app needs at least one source")
	}
}

// tables checks the reference tables.
func (v *validation) tables() {
	a, c := v.a, v.c
	index(c, "tables", len(a.Tables), func(i int) string { return a.Tables[i].Name })
	for i := range a.Tables {
		tb := &a.Tables[i]
		p := fmt.Sprintf("tables[%d]", i)
		switch {
		case tb.Topic == "" && tb.File == "":
			c.add(p, "a table needs a topic (compacted) or a file (JSON lines)")
		case tb.Topic != "" && tb.File != "":
			c.add(p, "a table takes a topic or a file, not both")
		case tb.Topic != "":
			c.topicName(p+".topic", tb.Topic)
		}
		if tb.Partitions == 0 {
			tb.Partitions = 1
		}
		v.tableFormat(p, tb)
		if len(tb.Schema) == 0 {
			c.add(p+".schema", "a table needs a schema")
		}
		names, _ := checkColumns(c, p+".schema", tb.Schema)
		if tb.Key == "" {
			c.add(p+".key", "must name the key column")
		} else if !names[tb.Key] {
			c.add(p+".key", "unknown column %q", tb.Key)
		}
	}
}

// sources checks the sources; each gives its bucket a schema, and its key,
// event time and session column unless the bucket sets them.
func (v *validation) sources() {
	a, c := v.a, v.c
	for i := range a.Sources {
		p := fmt.Sprintf("sources[%d]", i)
		s := &a.Sources[i]
		if schema := a.checkSource(v, p, s); schema != nil && a.Bucket(s.Bucket) != nil {
			v.setSchema(p+".bucket", s.Bucket, schema, "source "+s.Name)
			if b := a.Bucket(s.Bucket); b.Key == "" && s.Key != "" {
				b.Key = s.Key // objects are keyed like the records they came from
			}
			if b := a.Bucket(s.Bucket); b.EventTime == "" && s.EventTime != "" {
				b.EventTime = s.EventTime
			}
			if b := a.Bucket(s.Bucket); b.Session == "" && s.SessionHeader != "" {
				b.Session = s.SessionColumn
			}
		}
		if s.Topic != "" {
			c.topicName(p+".topic", s.Topic)
			if prev, dup := v.topics[s.Topic]; dup {
				c.add(p+".topic", "topic %q is already read by %s", s.Topic, prev)
			}
			v.topics[s.Topic] = "sources[" + fmt.Sprint(i) + "]"
		}
	}
}

// bucketLimits checks the buckets' bounds and fills their defaults.
func (v *validation) bucketLimits() {
	a, c := v.a, v.c
	for i := range a.Buckets {
		p := fmt.Sprintf("buckets[%d]", i)
		b := &a.Buckets[i]
		if b.MaxObjects == 0 {
			b.MaxObjects = DefaultMaxObjects
		} else if b.MaxObjects < 0 {
			c.add(p+".max_objects", "must be > 0")
		}
		if b.MaxBytes == 0 {
			b.MaxBytes = DefaultMaxBytes
		} else if b.MaxBytes < 0 {
			c.add(p+".max_bytes", "must be > 0")
		}
		if b.MaxObjectsPerSession < 0 {
			c.add(p+".max_objects_per_session", "must be > 0")
		}
	}
}

// sinks checks the sinks by kind and claims their topics.
func (v *validation) sinks() {
	a, c := v.a, v.c
	for i := range a.Sinks {
		p := fmt.Sprintf("sinks[%d]", i)
		s := &a.Sinks[i]
		switch s.Kind {
		case "", "kafka":
			s.Kind = "kafka"
		case "result":
			if s.Topic != "" || s.Key != "" || s.Partitions != 0 {
				c.add(p, "a result sink answers invocations; it takes no topic, key or partitions")
			}
			if a.Invoke == nil || a.Invoke.Result != s.Name {
				c.add(p+".kind", "a result sink must be the invoke.result of the app")
			}
			continue
		case "table":
			if s.Topic != "" || s.Partitions != 0 {
				c.add(p, "a table sink keeps the latest row per key in the node's state; it takes no topic or partitions")
			}
			if s.Key == "" {
				c.add(p+".key", "a table needs the key column its rows are kept by")
			}
			continue
		default:
			v.connectorSink(p, s)
			continue
		}
		if len(s.Options) > 0 {
			c.add(p+".options", "only sinks of a connector's kind take options")
		}
		switch {
		case s.Topic == "":
			c.add(p+".topic", "must be set")
		case !c.topicName(p+".topic", s.Topic):
		case v.topics[s.Topic] != "":
			c.add(p+".topic", "topic %q is already used by %s", s.Topic, v.topics[s.Topic])
		default:
			v.topics[s.Topic] = p
		}
		switch f := v.format(s.Format); {
		case s.Format == "" || s.Format == "json":
			s.Format = "json"
			if s.Registry != nil {
				c.add(p+".registry", "only the registry formats take registry (%s)", v.formats(true))
			}
		case f != nil && f.Sinks:
			v.subject(p+".registry", &s.Registry, true)
		default:
			c.add(p+".format", "unknown sink format %q (%s)", s.Format, v.formats(true))
		}
		if s.Partitions == 0 {
			s.Partitions = DefaultPartitions
		} else if s.Partitions < 0 {
			c.add(p+".partitions", "must be > 0")
		}
	}
}

// connectorSink checks a sink of a connector's kind: its options against
// the kind's, and none of the Kafka fields.
func (v *validation) connectorSink(p string, s *Sink) {
	i := slices.IndexFunc(v.connectors.Sinks, func(k SinkKind) bool { return k.Name == s.Kind })
	if i < 0 {
		known := []string{"kafka", "table", "result"}
		for _, k := range v.connectors.Sinks {
			known = append(known, k.Name)
		}
		v.c.add(p+".kind", "unknown sink kind %q (%s)", s.Kind, strings.Join(known, ", "))
		return
	}
	if s.Topic != "" || s.Partitions != 0 || s.Format != "" {
		v.c.add(p, "a %s sink takes no topic, format or partitions", s.Kind)
	}
	checkOptions(v.c, p, s.Kind+" sink", v.connectors.Sinks[i].Options, s.Options)
}

// checkOptions checks the options of a connector's source or sink against
// the ones its kind takes.
func checkOptions(c *checker, p, what string, kind []Option, set map[string]string) {
	var names []string
	for _, o := range kind {
		names = append(names, o.Name)
		if _, ok := set[o.Name]; o.Required && !ok {
			c.add(p+".options."+o.Name, "must be set: %s", o.Doc)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(set)) {
		if !slices.Contains(names, k) {
			c.add(p+".options."+k, "unknown option of a %s (%s)", what, strings.Join(names, ", "))
		}
	}
}

// derivedTopics checks the names of the topics the app derives: dead
// letters, changelog, repartition.
func (v *validation) derivedTopics() {
	a, c := v.a, v.c
	if prev, dup := v.topics[a.Kafka.DLQTopic]; dup {
		c.add("kafka.dlq_topic", "topic %q is already used by %s", a.Kafka.DLQTopic, prev)
	}
	c.topicName("kafka.dlq_topic", a.Kafka.DLQTopic)
	if a.Kafka.ChangelogEnabled() {
		c.topicName("kafka.changelog_topic", a.Kafka.ChangelogTopic)
	}
	for i, b := range a.Buckets {
		if b.PartitionBy != "" && validName(b.Name) {
			c.topicName(fmt.Sprintf("buckets[%d].name", i), a.RepartitionTopic(b.Name))
		}
	}
}

// bucketColumns checks that every bucket is written, and its event time,
// key and session columns against its derived schema.
func (v *validation) bucketColumns() {
	a, c := v.a, v.c
	written := map[string]bool{}
	for _, s := range a.Sources {
		written[s.Bucket] = true
	}
	for _, t := range a.Triggers {
		if t.LateBucket != "" {
			written[t.LateBucket] = true
		}
	}
	for _, f := range a.Functions {
		for _, o := range f.Outputs {
			written[o] = true
		}
	}
	for i, b := range a.Buckets {
		// Judged on the declarations, not on derived schemas, so an error in
		// an upstream function does not also report its bucket.
		if !written[b.Name] && b.Name != "" {
			c.add(fmt.Sprintf("buckets[%d]", i), "bucket %q is never written: no source or function outputs to it, so its triggers can never fire", b.Name)
		}
		if b.EventTime != "" {
			if s := v.bucketSchema[b.Name]; s != nil {
				if !hasColumn(s, b.EventTime) {
					c.add(fmt.Sprintf("buckets[%d].event_time", i), "unknown column %q%s", b.EventTime, suggest(b.EventTime, columnNames(s)))
				} else if id := s.Field(s.FieldIndices(b.EventTime)[0]).Type.ID(); id != arrow.TIMESTAMP && id != arrow.INT64 {
					c.add(fmt.Sprintf("buckets[%d].event_time", i), "column %q must be a timestamp or int64 milliseconds", b.EventTime)
				}
			}
		}
		for _, fc := range [][2]string{{"key", b.Key}, {"session", b.Session}} {
			field, col := fc[0], fc[1]
			if col == "" {
				continue
			}
			if s := v.bucketSchema[b.Name]; s != nil {
				if !hasColumn(s, col) {
					c.add(fmt.Sprintf("buckets[%d].%s", i, field), "unknown column %q%s", col, suggest(col, columnNames(s)))
				} else if id := s.Field(s.FieldIndices(col)[0]).Type.ID(); id != arrow.STRING && id != arrow.INT64 && id != arrow.BINARY {
					c.add(fmt.Sprintf("buckets[%d].%s", i, field), "column %q is %s; keys and sessions are string, bytes or int64 columns", col, s.Field(s.FieldIndices(col)[0]).Type)
				}
			}
		}
	}
}

// invoke checks the invoke section.
func (v *validation) invoke() {
	a, c := v.a, v.c
	if iv := a.Invoke; iv != nil {
		if iv.Entry == "" {
			c.add("invoke.entry", "must name the bucket invocations land in")
		} else if b := a.Bucket(iv.Entry); b == nil {
			c.add("invoke.entry", "unknown bucket %q%s", iv.Entry, suggest(iv.Entry, keys(a.bucketIdx)))
		} else if src := a.EntrySource(); src == nil || src.Format != "json" {
			c.add("invoke.entry", "bucket %q must be fed by a json source (its schema is the request's)", iv.Entry)
		} else if b.Session == "" {
			c.add("invoke.entry", "bucket %q needs a session column (buckets[].session or the source's session_header)", iv.Entry)
		} else if s := v.bucketSchema[iv.Entry]; s != nil {
			if idx := s.FieldIndices(b.Session); len(idx) == 0 || s.Field(idx[0]).Type.ID() != arrow.STRING {
				c.add("invoke.entry", "the session column %q of bucket %q must be a string column", b.Session, iv.Entry)
			}
		}
		if iv.Result == "" {
			c.add("invoke.result", "must name a sink of kind result")
		} else if s := a.Sink(iv.Result); s == nil || s.Kind != "result" {
			c.add("invoke.result", "%q must be a sink of kind result", iv.Result)
		}
		iv.timeout = positiveDuration(c, "invoke.timeout", iv.Timeout, DefaultTimeout)
		iv.sessionTimeout = positiveDuration(c, "invoke.session_timeout", iv.SessionTimeout, DefaultInvocationTimeout)
		iv.sessionTTL = positiveDuration(c, "invoke.session_ttl", iv.SessionTTL, max(DefaultInvocationTTL, iv.sessionTimeout))
		if iv.sessionTTL < iv.sessionTimeout {
			c.add("invoke.session_ttl", "%s is shorter than session_timeout %s: a running session's record would go first", iv.sessionTTL, iv.sessionTimeout)
		}
		switch {
		case iv.MaxSessions < 0:
			c.add("invoke.max_sessions", "must be positive")
		case iv.MaxSessions == 0:
			iv.MaxSessions = DefaultMaxSessions
		}
		switch {
		case iv.MaxWaiting < 0:
			c.add("invoke.max_waiting", "must be positive")
		case iv.MaxWaiting == 0:
			iv.MaxWaiting = DefaultMaxWaiting
		}
		if iv.IsDurable() {
			c.topicName("invoke", a.InvocationsTopic())
		}
	}
}

// positiveDuration parses s (def when empty), adding a problem at path
// when it is not a positive duration.
func positiveDuration(c *checker, path, s string, def time.Duration) time.Duration {
	if s == "" {
		return def
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		c.add(path, "%q is not a positive duration", s)
		return def
	}
	return d
}

// checkPartitioning checks partition_by columns and that the topics a
// partition task joins are co-partitioned.
func (a *App) checkPartitioning(c *checker) {
	repart := false
	for i, b := range a.Buckets {
		if b.PartitionBy == "" {
			continue
		}
		repart = true
		if s := a.BucketSchema(b.Name); s != nil && !hasColumn(s, b.PartitionBy) {
			c.add(fmt.Sprintf("buckets[%d].partition_by", i), "bucket %q has no column %q %s", b.Name, b.PartitionBy, describe(s))
		}
	}
	if !repart && !a.Kafka.ChangelogEnabled() {
		return
	}
	// A task is one partition number across all topics: with repartition
	// or changelog topics every source must have the same partition count.
	for i, s := range a.Sources {
		if s.Partitions != a.Partitions() {
			c.add(fmt.Sprintf("sources[%d].partitions", i), "%d: every source needs the same partition count (%d) so buckets are co-partitioned with their changelog and repartition topics", s.Partitions, a.Partitions())
		}
	}
}

// BucketSchema is the Arrow schema of a bucket's objects (valid after Validate).
func (a *App) BucketSchema(bucket string) *arrow.Schema {
	for _, s := range a.Sources {
		if s.Bucket == bucket {
			return s.ArrowSchema()
		}
	}
	for i := range a.Functions {
		for _, o := range a.Functions[i].Outputs {
			if o == bucket {
				return a.Functions[i].outSchema
			}
		}
	}
	return nil
}

func index(c *checker, section string, n int, name func(int) string) map[string]int {
	m := make(map[string]int, n)
	for i := 0; i < n; i++ {
		nm := name(i)
		p := fmt.Sprintf("%s[%d].name", section, i)
		if nm == "" {
			c.add(p, "must be set")
			continue
		}
		if !validName(nm) {
			c.add(p, "%q: use letters, digits, '-', '_' and '.'", nm)
		}
		if j, dup := m[nm]; dup {
			c.add(p, "duplicate name %q (also %s[%d])", nm, section, j)
			continue
		}
		m[nm] = i
	}
	return m
}

// topicName adds a problem if Kafka would refuse topic as a name: letters,
// digits, '.', '_' and '-', at most 249 characters, not "." or "..".
func (c *checker) topicName(path, topic string) bool {
	switch {
	case topic == "." || topic == "..":
		c.add(path, "%q: Kafka refuses it as a topic name", topic)
	case len(topic) > 249:
		c.add(path, "topic name of %d characters: Kafka takes at most 249", len(topic))
	case !validName(topic):
		c.add(path, "%q: a Kafka topic name takes only letters, digits, '.', '_' and '-'", topic)
	default:
		return true
	}
	return false
}

func validName(s string) bool {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return s != ""
}

func hasColumn(s *arrow.Schema, name string) bool { return len(s.FieldIndices(name)) > 0 }

func columnNames(s *arrow.Schema) []string {
	out := make([]string, s.NumFields())
	for i := range out {
		out[i] = s.Field(i).Name
	}
	return out
}

func describe(s *arrow.Schema) string { return "(" + strings.Join(columnNames(s), ", ") + ")" }

func keys(m map[string]int) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// suggest returns a hint listing the valid names.
func suggest(_ string, valid []string) string {
	if len(valid) == 0 {
		return ""
	}
	return " (have: " + strings.Join(valid, ", ") + ")"
}

// Caveats lists what a valid app cannot keep exact, with YAML paths: the
// configurations under which an event-time result may depend on when a
// process crashed or how the input was replayed, or may never come. `validate`
// prints them and `run` logs them at start; none stops the app. Call it
// after Validate.
func (a *App) Caveats() Problems {
	var ps Problems
	for i, t := range a.Triggers {
		if t.Primitive != "by_time" || t.Time != "event" {
			continue
		}
		b := a.Bucket(t.Bucket)
		if b == nil || b.PartitionBy == "" {
			continue
		}
		p := fmt.Sprintf("triggers[%d]", i)
		if a.Kafka.Guarantee != ExactlyOnce {
			ps = append(ps, Problem{Path: p, Msg: fmt.Sprintf("bucket %q is repartitioned (partition_by) and the guarantee is at_least_once: "+
				"after a crash, objects repartitioned in the cycles in flight reach the window twice and are counted twice; "+
				"set kafka.guarantee: exactly_once for exact windows", t.Bucket)})
		}
		if t.IdleTimeout == "" {
			ps = append(ps, Problem{Path: p + ".idle_timeout", Msg: fmt.Sprintf("bucket %q is repartitioned: its watermark is the slowest "+
				"upstream partition's, so a partition that receives no input holds back every window until it does; "+
				"set idle_timeout to let caught-up partitions follow the clock", t.Bucket)})
		}
	}
	for i, s := range a.Sinks {
		switch s.Kind {
		case "", "kafka", "table", "result":
		default:
			if a.Kafka.Guarantee == ExactlyOnce {
				ps = append(ps, Problem{Path: fmt.Sprintf("sinks[%d].kind", i), Msg: fmt.Sprintf("a %s sink is not part of Kafka transactions: "+
					"its rows are written at least once (a crash can repeat the cycles in flight)", s.Kind)})
			}
		}
	}
	return ps
}
