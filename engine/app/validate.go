package app

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/apache/arrow/go/v15/arrow"

	"github.com/pheromone-go/pheromone/engine/expr"
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
// its YAML path. It returns nil or a Problems value.
func (a *App) Validate() error {
	c := &checker{}
	if a.Name == "" {
		c.add("app", "must be set")
	} else if !validName(a.Name) {
		c.add("app", "%q: use letters, digits, '-', '_' and '.'", a.Name)
	}
	if a.Kafka.Group == "" {
		a.Kafka.Group = "pheromone-" + a.Name
	}
	if a.Kafka.DLQTopic == "" {
		a.Kafka.DLQTopic = a.Name + ".dlq"
	}
	if a.Kafka.ChangelogTopic == "" {
		a.Kafka.ChangelogTopic = a.Name + ".changelog"
	}
	switch a.Kafka.Guarantee {
	case "":
		a.Kafka.Guarantee = AtLeastOnce
	case AtLeastOnce, ExactlyOnce:
	default:
		c.add("kafka.guarantee", "%q: want at_least_once or exactly_once", a.Kafka.Guarantee)
	}
	kdur := func(field, v string, def time.Duration, dst *time.Duration) {
		*dst = def
		if v == "" {
			return
		}
		if d, err := time.ParseDuration(v); err != nil || d <= 0 {
			c.add("kafka."+field, "%q is not a positive duration (try 100ms, 10s)", v)
		} else {
			*dst = d
		}
	}
	switch a.Kafka.OnOffsetLoss {
	case "":
		a.Kafka.OnOffsetLoss = OffsetLossFail
	case OffsetLossFail, OffsetLossEarliest, OffsetLossLatest:
	default:
		c.add("kafka.on_offset_loss", "%q: want fail, earliest or latest", a.Kafka.OnOffsetLoss)
	}
	kdur("commit_interval", a.Kafka.CommitInterval, 100*time.Millisecond, &a.Kafka.commitInterval)
	kdur("session_timeout", a.Kafka.SessionTimeout, 10*time.Second, &a.Kafka.sessionTimeout)
	if a.Kafka.StandbyReplicas < 0 {
		c.add("kafka.standby_replicas", "must be >= 0")
	} else if a.Kafka.StandbyReplicas > 0 && !a.Kafka.ChangelogEnabled() {
		c.add("kafka.standby_replicas", "standby replicas follow the changelog; set kafka.changelog: true")
	}
	for i, b := range a.Kafka.Brokers {
		if !strings.Contains(b, ":") {
			c.add(fmt.Sprintf("kafka.brokers[%d]", i), "%q: want host:port", b)
		}
	}

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

	bucketSchema := map[string]*arrow.Schema{}
	bucketFrom := map[string]string{}
	setSchema := func(path, bucket string, s *arrow.Schema, from string) {
		if prev, ok := bucketSchema[bucket]; ok {
			if !prev.Equal(s) {
				c.add(path, "bucket %q receives %s from %s but %s from %s; a bucket holds one schema",
					bucket, describe(s), from, describe(prev), bucketFrom[bucket])
			}
			return
		}
		bucketSchema[bucket] = s
		bucketFrom[bucket] = from
	}

	topics := map[string]string{}
	for i := range a.Sources {
		p := fmt.Sprintf("sources[%d]", i)
		s := &a.Sources[i]
		if schema := a.checkSource(c, p, s); schema != nil && a.Bucket(s.Bucket) != nil {
			setSchema(p+".bucket", s.Bucket, schema, "source "+s.Name)
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
			if prev, dup := topics[s.Topic]; dup {
				c.add(p+".topic", "topic %q is already read by %s", s.Topic, prev)
			}
			topics[s.Topic] = "sources[" + fmt.Sprint(i) + "]"
		}
	}
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
			c.add(p+".kind", "unknown sink kind %q (kafka, table, result)", s.Kind)
			continue
		}
		switch {
		case s.Topic == "":
			c.add(p+".topic", "must be set")
		case !c.topicName(p+".topic", s.Topic):
		case topics[s.Topic] != "":
			c.add(p+".topic", "topic %q is already used by %s", s.Topic, topics[s.Topic])
		default:
			topics[s.Topic] = p
		}
		if s.Format == "" {
			s.Format = "json"
		} else if s.Format != "json" {
			c.add(p+".format", "%q: sinks support json", s.Format)
		}
		if s.Partitions == 0 {
			s.Partitions = DefaultPartitions
		} else if s.Partitions < 0 {
			c.add(p+".partitions", "must be > 0")
		}
	}
	if prev, dup := topics[a.Kafka.DLQTopic]; dup {
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

	// Triggers: which functions they fire, from which bucket.
	firedBy := map[string][]int{}
	for i := range a.Triggers {
		p := fmt.Sprintf("triggers[%d]", i)
		t := &a.Triggers[i]
		if t.Bucket == "" {
			c.add(p+".bucket", "must be set")
		} else if a.Bucket(t.Bucket) == nil {
			c.add(p+".bucket", "unknown bucket %q%s", t.Bucket, suggest(t.Bucket, keys(a.bucketIdx)))
		}
		if t.Function == "" {
			c.add(p+".function", "must be set")
		} else if a.Function(t.Function) == nil {
			c.add(p+".function", "unknown function %q%s", t.Function, suggest(t.Function, keys(a.functionIdx)))
		} else {
			firedBy[t.Function] = append(firedBy[t.Function], i)
		}
		switch t.Primitive {
		case "immediate":
		case "by_batch_size":
			if t.Count <= 0 {
				c.add(p+".count", "must be > 0 for by_batch_size")
			}
		case "by_time":
			dur := func(field, v string, dst *time.Duration) {
				if v == "" {
					return
				}
				if d, err := time.ParseDuration(v); err != nil {
					c.add(p+"."+field, "%q is not a duration (try 10s, 1m, 500ms)", v)
				} else if d <= 0 {
					c.add(p+"."+field, "must be > 0")
				} else {
					*dst = d
				}
			}
			dur("window", t.Window, &t.window)
			dur("slide", t.Slide, &t.slide)
			dur("gap", t.Gap, &t.gap)
			dur("out_of_orderness", t.OutOfOrderness, &t.outOfOrderness)
			dur("allowed_lateness", t.AllowedLateness, &t.lateness)
			dur("idle_timeout", t.IdleTimeout, &t.idle)
			dur("max_future", t.MaxFuture, &t.maxFuture)
			switch {
			case t.Window == "" && t.Gap == "":
				c.add(p+".window", "must be set for by_time (a duration like 10s), or set gap for session windows")
			case t.Gap != "" && (t.Window != "" || t.Slide != ""):
				c.add(p+".gap", "session windows (gap) take no window or slide")
			case t.slide > 0 && t.window > 0 && (t.slide > t.window || t.window%t.slide != 0):
				c.add(p+".slide", "must divide the window (%s)", t.Window)
			case t.slide > 0 && t.window/t.slide > MaxWindowsPerObject:
				c.add(p+".slide", "every object would be in %d windows (window %s / slide %s); at most %d",
					t.window/t.slide, t.Window, t.Slide, MaxWindowsPerObject)
			}
			switch t.Time {
			case "", "processing":
				t.Time = "processing"
				for _, f := range [][2]string{{"out_of_orderness", t.OutOfOrderness}, {"allowed_lateness", t.AllowedLateness},
					{"idle_timeout", t.IdleTimeout}, {"max_future", t.MaxFuture}, {"late_bucket", t.LateBucket}} {
					if f[1] != "" {
						c.add(p+"."+f[0], "only event-time windows (time: event) take %s", f[0])
					}
				}
			case "event":
				if t.maxFuture == 0 {
					t.maxFuture = time.Hour
				}
				if b := a.Bucket(t.Bucket); b != nil && b.EventTime == "" {
					c.add(p+".time", "event time needs an event_time column on bucket %q (or on the source that feeds it)", t.Bucket)
				}
				if t.LateBucket != "" && a.Bucket(t.LateBucket) == nil {
					c.add(p+".late_bucket", "unknown bucket %q%s", t.LateBucket, suggest(t.LateBucket, keys(a.bucketIdx)))
				}
			default:
				c.add(p+".time", "%q: want processing or event", t.Time)
			}
		case "by_name":
			if t.Match == "" {
				c.add(p+".match", "must be set for by_name (the key to fire on)")
			}
		case "by_set":
			if len(t.Keys) == 0 {
				c.add(p+".keys", "must list the keys by_set waits for")
			}
			seen := map[string]bool{}
			for j, k := range t.Keys {
				if seen[k] {
					c.add(fmt.Sprintf("%s.keys[%d]", p, j), "duplicate key %q", k)
				}
				seen[k] = true
			}
		case "redundant":
			if t.K <= 0 {
				c.add(p+".k", "must be > 0")
			}
			if t.N < t.K {
				c.add(p+".n", "must be >= k (%d): fire with the first k of n", t.K)
			}
		case "dynamic_join":
			if t.ControlKey == "" {
				t.ControlKey = "_join"
			}
			if t.CountColumn == "" {
				c.add(p+".count_column", "must name the int64 column of the announcement that holds how many parts to wait for")
			}
		case "dynamic_group":
			if t.ControlKey == "" {
				t.ControlKey = "_done"
			}
			if t.Controls <= 0 {
				c.add(p+".controls", "must be > 0: how many control objects close a stage")
			}
			if t.GroupColumn == "" {
				c.add(p+".group_column", "must name the column that holds an object's group")
			}
		case "":
			c.add(p+".primitive", "must be set (%s)", primitives)
		default:
			c.add(p+".primitive", "unknown primitive %q (%s)", t.Primitive, primitives)
		}
		if t.SessionTimeout != "" {
			if d, err := time.ParseDuration(t.SessionTimeout); err != nil || d <= 0 {
				c.add(p+".session_timeout", "%q is not a positive duration (try 30s, 5m)", t.SessionTimeout)
			} else {
				t.sessionTimeout = d
			}
		}
		only := func(field string, set bool, prims ...string) {
			if set && !slices.Contains(prims, t.Primitive) {
				c.add(p+"."+field, "only %s take %s", strings.Join(prims, " and "), field)
			}
		}
		only("match", t.Match != "", "by_name")
		only("keys", len(t.Keys) > 0, "by_set")
		only("k", t.K != 0, "redundant")
		only("n", t.N != 0, "redundant")
		only("control_key", t.ControlKey != "" && t.Primitive != "dynamic_join" && t.Primitive != "dynamic_group", "dynamic_join", "dynamic_group")
		only("count_column", t.CountColumn != "", "dynamic_join")
		only("controls", t.Controls != 0, "dynamic_group")
		only("group_column", t.GroupColumn != "", "dynamic_group")
		only("session_timeout", t.SessionTimeout != "", "by_batch_size", "by_set", "redundant", "dynamic_join", "dynamic_group")
		if t.Primitive != "by_batch_size" && t.Count != 0 {
			c.add(p+".count", "only by_batch_size takes a count")
		}
		if t.Primitive != "by_time" {
			for _, f := range [][2]string{{"window", t.Window}, {"slide", t.Slide}, {"gap", t.Gap}, {"time", t.Time},
				{"out_of_orderness", t.OutOfOrderness}, {"allowed_lateness", t.AllowedLateness}, {"idle_timeout", t.IdleTimeout},
				{"max_future", t.MaxFuture}, {"late_bucket", t.LateBucket}} {
				if f[1] != "" {
					c.add(p+"."+f[0], "only by_time takes %s", f[0])
				}
			}
		}
	}

	// Functions: derive schemas in dependency order, so a bucket fed by a
	// function knows its schema before the triggers on it are checked.
	checked := make([]bool, len(a.Functions))
	lateDone := make([]bool, len(a.Triggers))
	for progress := true; progress; {
		progress = false
		// A late bucket receives the objects of its trigger's bucket.
		for i, t := range a.Triggers {
			if lateDone[i] || t.LateBucket == "" || a.Bucket(t.LateBucket) == nil {
				continue
			}
			if s := bucketSchema[t.Bucket]; s != nil {
				setSchema(fmt.Sprintf("triggers[%d].late_bucket", i), t.LateBucket, s, "trigger "+t.Name+" (late objects)")
				lateDone[i], progress = true, true
			}
		}
		for i := range a.Functions {
			f := &a.Functions[i]
			if checked[i] {
				continue
			}
			in, ok := a.inputSchema(c, i, firedBy[f.Name], bucketSchema)
			if !ok {
				continue
			}
			checked[i], progress = true, true
			f.inSchema = in
			if in == nil {
				continue
			}
			windowed := false
			for _, ti := range firedBy[f.Name] {
				windowed = windowed || a.Triggers[ti].Primitive == "by_time"
			}
			f.outSchema = a.checkFunction(c, fmt.Sprintf("functions[%d]", i), f, in, windowed)
			if f.outSchema == nil {
				continue
			}
			for j, o := range f.Outputs {
				if a.Bucket(o) != nil {
					setSchema(fmt.Sprintf("functions[%d].outputs[%d]", i, j), o, f.outSchema, "function "+f.Name)
				}
			}
		}
	}
	for i := range a.Functions {
		f := &a.Functions[i]
		p := fmt.Sprintf("functions[%d]", i)
		if len(firedBy[f.Name]) == 0 && f.Name != "" {
			c.add(p, "function %q is never fired: no trigger names it", f.Name)
		}
		if len(f.Outputs) == 0 {
			c.add(p+".outputs", "must name at least one bucket or sink")
		}
		for j, o := range f.Outputs {
			if a.Bucket(o) == nil && a.Sink(o) == nil {
				c.add(fmt.Sprintf("%s.outputs[%d]", p, j), "unknown bucket or sink %q%s", o,
					suggest(o, append(keys(a.bucketIdx), keys(a.sinkIdx)...)))
			}
			if s := a.Sink(o); s != nil && s.Key != "" && f.outSchema != nil && !hasColumn(f.outSchema, s.Key) {
				c.add(fmt.Sprintf("%s.outputs[%d]", p, j), "sink %q is keyed by column %q, which function %q does not output", o, s.Key, f.Name)
			}
		}
		if f.Retries == 0 {
			f.Retries = DefaultRetries
		} else if f.Retries < 0 {
			c.add(p+".retries", "must be >= 0")
		}
		switch f.Order {
		case "", "firing":
			f.Order = "firing"
		case "completion":
		default:
			c.add(p+".order", "%q: want firing or completion", f.Order)
		}
		if f.Timeout == "" {
			f.timeout = DefaultTimeout
		} else if d, err := time.ParseDuration(f.Timeout); err != nil || d <= 0 {
			c.add(p+".timeout", "%q is not a positive duration (try 500ms, 30s)", f.Timeout)
		} else {
			f.timeout = d
		}
	}
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
			if s := bucketSchema[b.Name]; s != nil {
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
			if s := bucketSchema[b.Name]; s != nil {
				if !hasColumn(s, col) {
					c.add(fmt.Sprintf("buckets[%d].%s", i, field), "unknown column %q%s", col, suggest(col, columnNames(s)))
				} else if id := s.Field(s.FieldIndices(col)[0]).Type.ID(); id != arrow.STRING && id != arrow.INT64 && id != arrow.BINARY {
					c.add(fmt.Sprintf("buckets[%d].%s", i, field), "column %q is %s; keys and sessions are string, bytes or int64 columns", col, s.Field(s.FieldIndices(col)[0]).Type)
				}
			}
		}
	}
	for i, t := range a.Triggers {
		b := a.Bucket(t.Bucket)
		if b == nil {
			continue
		}
		p := fmt.Sprintf("triggers[%d]", i)
		switch t.Primitive {
		case "by_name", "by_set", "dynamic_join", "dynamic_group":
			if b.Key == "" {
				c.add(p+".bucket", "%s looks at object keys, but bucket %q has no key column (set its key, or the key of the source that feeds it)", t.Primitive, b.Name)
			}
		}
		s := bucketSchema[b.Name]
		if s == nil {
			continue
		}
		if t.CountColumn != "" {
			if !hasColumn(s, t.CountColumn) {
				c.add(p+".count_column", "unknown column %q%s", t.CountColumn, suggest(t.CountColumn, columnNames(s)))
			} else if s.Field(s.FieldIndices(t.CountColumn)[0]).Type.ID() != arrow.INT64 {
				c.add(p+".count_column", "column %q must be int64", t.CountColumn)
			}
		}
		if t.GroupColumn != "" && !hasColumn(s, t.GroupColumn) {
			c.add(p+".group_column", "unknown column %q%s", t.GroupColumn, suggest(t.GroupColumn, columnNames(s)))
		}
	}
	for i, t := range a.Triggers {
		b := a.Bucket(t.Bucket)
		if b == nil {
			continue
		}
		if t.Primitive == "by_batch_size" && b.MaxObjects > 0 && int64(t.Count) > b.MaxObjects {
			c.add(fmt.Sprintf("triggers[%d].count", i), "%d exceeds max_objects %d of bucket %q: the trigger can never fire", t.Count, b.MaxObjects, b.Name)
		}
		if m := b.MaxObjectsPerSession; m > 0 {
			if t.Primitive == "by_batch_size" && t.Count > m {
				c.add(fmt.Sprintf("triggers[%d].count", i), "%d exceeds max_objects_per_session %d of bucket %q: the trigger can never fire", t.Count, m, b.Name)
			}
			if t.Primitive == "by_set" && len(t.Keys) > m {
				c.add(fmt.Sprintf("triggers[%d].keys", i), "%d keys exceed max_objects_per_session %d of bucket %q: the set can never complete", len(t.Keys), m, b.Name)
			}
			if t.Primitive == "redundant" && t.K > m {
				c.add(fmt.Sprintf("triggers[%d].k", i), "%d exceeds max_objects_per_session %d of bucket %q: the trigger can never fire", t.K, m, b.Name)
			}
		}
	}
	if iv := a.Invoke; iv != nil {
		if iv.Entry == "" {
			c.add("invoke.entry", "must name the bucket invocations land in")
		} else if b := a.Bucket(iv.Entry); b == nil {
			c.add("invoke.entry", "unknown bucket %q%s", iv.Entry, suggest(iv.Entry, keys(a.bucketIdx)))
		} else if src := a.EntrySource(); src == nil || src.Format != "json" {
			c.add("invoke.entry", "bucket %q must be fed by a json source (its schema is the request's)", iv.Entry)
		} else if b.Session == "" {
			c.add("invoke.entry", "bucket %q needs a session column (buckets[].session or the source's session_header)", iv.Entry)
		} else if s := bucketSchema[iv.Entry]; s != nil {
			if idx := s.FieldIndices(b.Session); len(idx) == 0 || s.Field(idx[0]).Type.ID() != arrow.STRING {
				c.add("invoke.entry", "the session column %q of bucket %q must be a string column", b.Session, iv.Entry)
			}
		}
		if iv.Result == "" {
			c.add("invoke.result", "must name a sink of kind result")
		} else if s := a.Sink(iv.Result); s == nil || s.Kind != "result" {
			c.add("invoke.result", "%q must be a sink of kind result", iv.Result)
		}
		if iv.Timeout == "" {
			iv.timeout = DefaultTimeout
		} else if d, err := time.ParseDuration(iv.Timeout); err != nil || d <= 0 {
			c.add("invoke.timeout", "%q is not a positive duration", iv.Timeout)
		} else {
			iv.timeout = d
		}
	}
	a.checkPartitioning(c)
	a.checkCycles(c, firedBy)
	if len(c.ps) > 0 {
		return c.ps
	}
	return nil
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

// inputSchema returns the schema function i receives; ok is false while a
// bucket it reads has no schema yet.
func (a *App) inputSchema(c *checker, i int, triggers []int, bucketSchema map[string]*arrow.Schema) (*arrow.Schema, bool) {
	var in *arrow.Schema
	for _, ti := range triggers {
		s, ok := bucketSchema[a.Triggers[ti].Bucket]
		if !ok {
			return nil, false
		}
		if in != nil && !in.Equal(s) {
			c.add(fmt.Sprintf("triggers[%d].bucket", ti), "function %q is also fired from a bucket with another schema (%s vs %s)",
				a.Functions[i].Name, describe(s), describe(in))
			return nil, true
		}
		in = s
	}
	return in, true
}

func (a *App) checkSource(c *checker, p string, s *Source) *arrow.Schema {
	if s.Name == "" {
		c.add(p+".name", "must be set")
	}
	if s.Topic == "" {
		c.add(p+".topic", "must be set")
	}
	if s.Bucket == "" {
		c.add(p+".bucket", "must be set")
	} else if a.Bucket(s.Bucket) == nil {
		c.add(p+".bucket", "unknown bucket %q%s", s.Bucket, suggest(s.Bucket, keys(a.bucketIdx)))
	}
	if s.Partitions == 0 {
		s.Partitions = DefaultPartitions
	} else if s.Partitions < 0 {
		c.add(p+".partitions", "must be > 0")
	}
	if s.MaxRecordBytes == 0 {
		s.MaxRecordBytes = DefaultMaxRecordBytes
	} else if s.MaxRecordBytes < 0 {
		c.add(p+".max_record_bytes", "must be > 0")
	}
	switch s.Kind {
	case "", "kafka":
		s.Kind = "kafka"
		if s.Generator != nil {
			c.add(p+".generator", "only a source of kind generator takes generator settings")
		}
	case "generator":
		if s.Generator == nil {
			c.add(p+".generator", "must be set for kind generator (profile, rate)")
		} else {
			g := s.Generator
			if g.Profile == "" {
				g.Profile = "clickstream"
			} else if g.Profile != "clickstream" {
				c.add(p+".generator.profile", "unknown profile %q (clickstream)", g.Profile)
			}
			if g.Rate <= 0 {
				c.add(p+".generator.rate", "must be > 0 records per second")
			}
			if g.Seed == 0 {
				g.Seed = 1
			}
			if g.Limit < 0 {
				c.add(p+".generator.limit", "must be >= 0")
			}
		}
		if len(s.Schema) > 0 {
			c.add(p+".schema", "a generator source has the fixed %s schema; remove schema", "clickstream")
		}
		s.Schema = ClickstreamSchema()
		if s.Format == "" {
			s.Format = "json"
		}
	default:
		c.add(p+".kind", "unknown source kind %q (kafka, generator)", s.Kind)
	}
	switch s.Format {
	case "", "json":
		s.Format = "json"
		if len(s.Schema) == 0 {
			c.add(p+".schema", "a json source needs a schema (name and type of each column)")
		}
	case "raw":
		if len(s.Schema) > 0 {
			c.add(p+".schema", "a raw source has the fixed columns key and value; remove schema")
		}
		s.Schema = []Column{{Name: "key", Type: "bytes"}, {Name: "value", Type: "bytes"}}
	default:
		c.add(p+".format", "unknown format %q (json, raw)", s.Format)
	}
	if s.SessionHeader != "" {
		if s.Format != "json" {
			c.add(p+".session_header", "only json sources take session_header")
		}
		if s.SessionColumn == "" {
			s.SessionColumn = "session"
		}
		for _, col := range s.Schema {
			if col.Name == s.SessionColumn {
				c.add(p+".session_column", "%q is already a schema column; name the header's column differently", col.Name)
			}
		}
		s.Schema = append(s.Schema, Column{Name: s.SessionColumn, Type: "string"})
	} else if s.SessionColumn != "" {
		c.add(p+".session_column", "only a source with session_header takes session_column")
	}
	seen, ok := checkColumns(c, p+".schema", s.Schema)
	names := make([]string, 0, len(s.Schema))
	for _, col := range s.Schema {
		names = append(names, col.Name)
	}
	if s.Key != "" && !seen[s.Key] {
		c.add(p+".key", "unknown column %q%s", s.Key, suggest(s.Key, names))
	}
	if s.EventTime != "" {
		if !seen[s.EventTime] {
			c.add(p+".event_time", "unknown column %q%s", s.EventTime, suggest(s.EventTime, names))
		} else {
			for _, col := range s.Schema {
				if col.Name == s.EventTime && col.Type != "timestamp" && col.Type != "int64" {
					c.add(p+".event_time", "column %q has type %s; event time needs timestamp or int64", col.Name, col.Type)
				}
			}
		}
	}
	if !ok || len(s.Schema) == 0 {
		return nil
	}
	return s.ArrowSchema()
}

// ArrowSchema is the source's schema as Arrow (valid after Validate).
func (s *Source) ArrowSchema() *arrow.Schema {
	fields := make([]arrow.Field, len(s.Schema))
	for i, col := range s.Schema {
		t, _ := ColumnType(col.Type)
		fields[i] = arrow.Field{Name: col.Name, Type: t, Nullable: true}
	}
	return arrow.NewSchema(fields, nil)
}

// ColumnType maps a schema type name to its Arrow type.
func ColumnType(name string) (arrow.DataType, bool) {
	switch name {
	case "string":
		return arrow.BinaryTypes.String, true
	case "int64":
		return arrow.PrimitiveTypes.Int64, true
	case "float64":
		return arrow.PrimitiveTypes.Float64, true
	case "bool":
		return arrow.FixedWidthTypes.Boolean, true
	case "timestamp":
		return arrow.FixedWidthTypes.Timestamp_ms, true
	case "bytes":
		return arrow.BinaryTypes.Binary, true
	}
	return nil, false
}

// ClickstreamSchema is the schema of the clickstream generator profile.
func ClickstreamSchema() []Column {
	return []Column{
		{Name: "event_id", Type: "int64"},
		{Name: "user_id", Type: "string"},
		{Name: "page", Type: "string"},
		{Name: "action", Type: "string"},
		{Name: "duration_ms", Type: "int64"},
		{Name: "country", Type: "string"},
		{Name: "ts", Type: "timestamp"},
	}
}

func (a *App) checkFunction(c *checker, p string, f *Function, in *arrow.Schema, windowed bool) *arrow.Schema {
	only := func(field string, set bool, kinds string) {
		if set {
			c.add(p+"."+field, "only %s functions take %s", kinds, field)
		}
	}
	only("expr", f.Expr != "" && f.Kind != "filter", "filter")
	only("columns", len(f.Columns) > 0 && f.Kind != "project", "project")
	only("group_by", len(f.GroupBy) > 0 && f.Kind != "aggregate", "aggregate")
	only("aggregates", len(f.Aggregates) > 0 && f.Kind != "aggregate", "aggregate")
	only("column", f.Column != "" && f.Kind != "split", "split")
	only("as", f.As != "" && f.Kind != "split", "split")
	only("separator", f.Separator != "" && f.Kind != "split", "split")
	only("schema", len(f.Schema) > 0 && f.Kind != "go", "go")
	only("table", f.Table != "" && f.Kind != "lookup", "lookup")
	only("on", f.On != "" && f.Kind != "lookup", "lookup")
	only("table_columns", len(f.TableColumns) > 0 && f.Kind != "lookup", "lookup")
	only("by", f.By != "" && f.Kind != "route", "route")
	only("routes", len(f.Routes) > 0 && f.Kind != "route", "route")
	only("default", f.Default != "" && f.Kind != "route", "route")
	switch f.Kind {
	case "filter":
		if f.Expr == "" {
			c.add(p+".expr", "a filter needs a boolean expression")
			return nil
		}
		e, err := expr.Compile(f.Expr, in)
		if err != nil {
			c.add(p+".expr", "%v", strings.TrimPrefix(err.Error(), "expr: "))
			return nil
		}
		if e.Kind() != expr.Bool {
			c.add(p+".expr", "is %s; a filter needs a bool", e.Kind())
			return nil
		}
		return in
	case "emit":
		return in
	case "lookup":
		tb := a.Table(f.Table)
		if tb == nil {
			c.add(p+".table", "unknown table %q", f.Table)
			return nil
		}
		idx := in.FieldIndices(f.On)
		if len(idx) == 0 {
			c.add(p+".on", "unknown column %q%s", f.On, suggest(f.On, columnNames(in)))
			return nil
		}
		if id := in.Field(idx[0]).Type.ID(); id != arrow.STRING && id != arrow.INT64 {
			c.add(p+".on", "column %q must be a string or int64", f.On)
			return nil
		}
		ts := tb.ArrowSchema()
		cols := f.TableColumns
		if len(cols) == 0 {
			for _, col := range tb.Schema {
				if col.Name != tb.Key {
					cols = append(cols, col.Name)
				}
			}
			f.TableColumns = cols
		}
		fields := slices.Clone(in.Fields())
		for j, name := range cols {
			ti := ts.FieldIndices(name)
			if len(ti) == 0 {
				c.add(fmt.Sprintf("%s.table_columns[%d]", p, j), "table %q has no column %q", tb.Name, name)
				return nil
			}
			if hasColumn(in, name) {
				c.add(fmt.Sprintf("%s.table_columns[%d]", p, j), "the input already has a column %q", name)
				return nil
			}
			fields = append(fields, arrow.Field{Name: name, Type: ts.Field(ti[0]).Type, Nullable: true})
		}
		return arrow.NewSchema(fields, nil)
	case "route":
		switch {
		case f.By == "" && len(f.Routes) == 0:
			c.add(p, "a route needs by (a column naming the output) or routes (when/to)")
			return nil
		case f.By != "" && len(f.Routes) > 0:
			c.add(p, "a route takes by or routes, not both")
			return nil
		}
		if f.By != "" {
			idx := in.FieldIndices(f.By)
			if len(idx) == 0 {
				c.add(p+".by", "unknown column %q%s", f.By, suggest(f.By, columnNames(in)))
				return nil
			}
			if in.Field(idx[0]).Type.ID() != arrow.STRING {
				c.add(p+".by", "column %q must be a string (the output name)", f.By)
				return nil
			}
		}
		ok := true
		for j, r := range f.Routes {
			rp := fmt.Sprintf("%s.routes[%d]", p, j)
			if e, err := expr.Compile(r.When, in); err != nil {
				c.add(rp+".when", "%v", strings.TrimPrefix(err.Error(), "expr: "))
				ok = false
			} else if e.Kind() != expr.Bool {
				c.add(rp+".when", "is %s; a route condition needs a bool", e.Kind())
				ok = false
			}
			if !slices.Contains(f.Outputs, r.To) {
				c.add(rp+".to", "%q is not one of the function's outputs", r.To)
				ok = false
			}
		}
		if f.Default != "" && !slices.Contains(f.Outputs, f.Default) {
			c.add(p+".default", "%q is not one of the function's outputs", f.Default)
			ok = false
		}
		if !ok {
			return nil
		}
		return in
	case "go":
		if len(f.Schema) == 0 {
			c.add(p+".schema", "a go function must declare the columns it emits (name and type of each)")
			return nil
		}
		if _, ok := checkColumns(c, p+".schema", f.Schema); !ok {
			return nil
		}
		return schemaOf(f.Schema)
	case "split":
		if f.Column == "" {
			c.add(p+".column", "a split needs the string column to split")
			return nil
		}
		idx := in.FieldIndices(f.Column)
		if len(idx) == 0 {
			c.add(p+".column", "unknown column %q%s", f.Column, suggest(f.Column, columnNames(in)))
			return nil
		}
		if in.Field(idx[0]).Type.ID() != arrow.STRING {
			c.add(p+".column", "column %q is %s; split needs a string column", f.Column, in.Field(idx[0]).Type)
			return nil
		}
		as := f.As
		if as == "" {
			as = f.Column
		}
		var fields []arrow.Field
		for _, fl := range in.Fields() {
			if fl.Name != f.Column && fl.Name != as {
				fields = append(fields, fl)
			}
		}
		return arrow.NewSchema(append(fields, arrow.Field{Name: as, Type: arrow.BinaryTypes.String, Nullable: true}), nil)
	case "project":
		if len(f.Columns) == 0 {
			c.add(p+".columns", "a project needs at least one column")
			return nil
		}
		var fields []arrow.Field
		seen := map[string]bool{}
		ok := true
		for j, pc := range f.Columns {
			cp := fmt.Sprintf("%s.columns[%d]", p, j)
			if pc.Name == "" {
				c.add(cp+".name", "must be set")
				ok = false
				continue
			}
			if seen[pc.Name] {
				c.add(cp+".name", "duplicate output column %q", pc.Name)
				ok = false
			}
			seen[pc.Name] = true
			switch {
			case pc.From != "" && pc.Expr != "":
				c.add(cp, "set from or expr, not both")
				ok = false
			case pc.Expr != "":
				e, err := expr.Compile(pc.Expr, in)
				if err != nil {
					c.add(cp+".expr", "%v", strings.TrimPrefix(err.Error(), "expr: "))
					ok = false
					continue
				}
				fields = append(fields, arrow.Field{Name: pc.Name, Type: kindType(e.Kind()), Nullable: true})
			default:
				src := pc.From
				if src == "" {
					src = pc.Name
				}
				idx := in.FieldIndices(src)
				if len(idx) == 0 {
					field := ".name"
					if pc.From != "" {
						field = ".from"
					}
					c.add(cp+field, "unknown column %q%s", src, suggest(src, columnNames(in)))
					ok = false
					continue
				}
				fields = append(fields, arrow.Field{Name: pc.Name, Type: in.Field(idx[0]).Type, Nullable: true})
			}
		}
		if !ok {
			return nil
		}
		return arrow.NewSchema(fields, nil)
	case "aggregate":
		if len(f.Aggregates) == 0 {
			c.add(p+".aggregates", "an aggregate needs at least one aggregate column")
			return nil
		}
		var fields []arrow.Field
		seen := map[string]bool{}
		ok := true
		for j, g := range f.GroupBy {
			idx := in.FieldIndices(g)
			if len(idx) == 0 {
				c.add(fmt.Sprintf("%s.group_by[%d]", p, j), "unknown column %q%s", g, suggest(g, columnNames(in)))
				ok = false
				continue
			}
			seen[g] = true
			fields = append(fields, arrow.Field{Name: g, Type: in.Field(idx[0]).Type, Nullable: true})
		}
		if windowed {
			fields = append(fields,
				arrow.Field{Name: WindowStartColumn, Type: arrow.FixedWidthTypes.Timestamp_ms},
				arrow.Field{Name: WindowEndColumn, Type: arrow.FixedWidthTypes.Timestamp_ms})
			seen[WindowStartColumn], seen[WindowEndColumn] = true, true
		}
		for j, ag := range f.Aggregates {
			ap := fmt.Sprintf("%s.aggregates[%d]", p, j)
			if ag.Name == "" {
				c.add(ap+".name", "must be set")
				ok = false
			} else if seen[ag.Name] {
				c.add(ap+".name", "duplicate output column %q", ag.Name)
				ok = false
			}
			seen[ag.Name] = true
			var colType arrow.DataType
			if ag.Op != "count" || ag.Column != "" {
				if ag.Column == "" {
					c.add(ap+".column", "%s needs a column", ag.Op)
					ok = false
					continue
				}
				idx := in.FieldIndices(ag.Column)
				if len(idx) == 0 {
					c.add(ap+".column", "unknown column %q%s", ag.Column, suggest(ag.Column, columnNames(in)))
					ok = false
					continue
				}
				colType = in.Field(idx[0]).Type
			}
			numeric := colType != nil && (colType.ID() == arrow.INT64 || colType.ID() == arrow.FLOAT64)
			var out arrow.DataType
			switch ag.Op {
			case "count":
				out = arrow.PrimitiveTypes.Int64
			case "sum":
				if !numeric {
					c.add(ap+".column", "sum needs an int64 or float64 column, %q is %s", ag.Column, colType)
					ok = false
					continue
				}
				out = colType
			case "avg":
				if !numeric {
					c.add(ap+".column", "avg needs an int64 or float64 column, %q is %s", ag.Column, colType)
					ok = false
					continue
				}
				out = arrow.PrimitiveTypes.Float64
			case "min", "max":
				switch colType.ID() {
				case arrow.INT64, arrow.FLOAT64, arrow.STRING, arrow.TIMESTAMP:
					out = colType
				default:
					c.add(ap+".column", "%s needs an int64, float64, string or timestamp column, %q is %s", ag.Op, ag.Column, colType)
					ok = false
					continue
				}
			case "count_distinct":
				out = arrow.PrimitiveTypes.Int64
			case "top_k":
				if ag.K <= 0 {
					c.add(ap+".k", "top_k needs k > 0")
					ok = false
					continue
				}
				out = arrow.ListOf(arrow.BinaryTypes.String)
			case "":
				c.add(ap+".op", "must be set (%s)", aggregateOps)
				ok = false
				continue
			default:
				c.add(ap+".op", "unknown aggregate %q (%s)", ag.Op, aggregateOps)
				ok = false
				continue
			}
			if ag.K != 0 && ag.Op != "top_k" {
				c.add(ap+".k", "only top_k takes k")
			}
			fields = append(fields, arrow.Field{Name: ag.Name, Type: out, Nullable: true})
		}
		if !ok {
			return nil
		}
		return arrow.NewSchema(fields, nil)
	case "":
		c.add(p+".kind", "must be set (filter, project, aggregate, split, route, lookup, emit, go)")
	default:
		c.add(p+".kind", "unknown function kind %q (filter, project, aggregate, split, route, lookup, emit, go)", f.Kind)
	}
	return nil
}

// checkCycles refuses loops bucket -> trigger -> function -> bucket: an
// object in such a loop re-triggers itself forever, and a loop nothing else
// feeds can never fire.
func (a *App) checkCycles(c *checker, firedBy map[string][]int) {
	next := map[string][]string{} // bucket -> buckets its triggers' functions write
	for _, t := range a.Triggers {
		if t.LateBucket != "" && a.Bucket(t.LateBucket) != nil {
			next[t.Bucket] = append(next[t.Bucket], t.LateBucket)
		}
		if f := a.Function(t.Function); f != nil {
			for _, o := range f.Outputs {
				if a.Bucket(o) != nil {
					next[t.Bucket] = append(next[t.Bucket], o)
				}
			}
		}
	}
	const (
		white = iota
		grey
		black
	)
	color := map[string]int{}
	var stack []string
	reported := false
	var visit func(b string)
	visit = func(b string) {
		color[b] = grey
		stack = append(stack, b)
		for _, n := range next[b] {
			if color[n] == grey && !reported {
				i := len(stack) - 1
				for stack[i] != n {
					i--
				}
				cyc := append(append([]string{}, stack[i:]...), n)
				c.add("triggers", "cycle through buckets %s: objects would trigger themselves forever, or never fire if nothing else feeds the loop", strings.Join(cyc, " -> "))
				reported = true
			} else if color[n] == white {
				visit(n)
			}
		}
		stack = stack[:len(stack)-1]
		color[b] = black
	}
	names := keys(a.bucketIdx)
	for _, b := range names {
		if color[b] == white {
			visit(b)
		}
	}
	_ = firedBy
}

// checkColumns reports empty or duplicate names and unknown types of a
// declared column list at path (…schema), and whether it is usable.
func checkColumns(c *checker, path string, cols []Column) (names map[string]bool, ok bool) {
	names, ok = map[string]bool{}, true
	for j, col := range cols {
		cp := fmt.Sprintf("%s[%d]", path, j)
		if col.Name == "" {
			c.add(cp+".name", "must be set")
			ok = false
		} else if names[col.Name] {
			c.add(cp+".name", "duplicate column %q", col.Name)
			ok = false
		}
		names[col.Name] = true
		if _, known := ColumnType(col.Type); !known {
			c.add(cp+".type", "unknown type %q (string, int64, float64, bool, timestamp, bytes)", col.Type)
			ok = false
		}
	}
	return names, ok
}

// schemaOf is the Arrow schema of a checked column list.
func schemaOf(cols []Column) *arrow.Schema {
	src := Source{Schema: cols}
	return src.ArrowSchema()
}

func kindType(k expr.Kind) arrow.DataType {
	switch k {
	case expr.Bool:
		return arrow.FixedWidthTypes.Boolean
	case expr.Int:
		return arrow.PrimitiveTypes.Int64
	case expr.Float:
		return arrow.PrimitiveTypes.Float64
	}
	return arrow.BinaryTypes.String
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
	return ps
}
