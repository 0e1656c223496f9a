package app

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
)

// Field is one key of a section of the app file: its type, default, the
// kinds (trigger primitives, function kinds, sink kinds) that take it, and
// one line of documentation. The reference in docs/app-format.md is
// generated from these tables (Reference), and Validate refuses a key set
// on a kind that does not take it (checkKinds).
type Field struct {
	Key     string
	Type    string
	Default string   // "" when required or empty by default (see Required)
	Req     bool     // required
	Kinds   []string // the kinds that take it; nil: every kind of the section
	Doc     string
}

// Section is one list or object of the app file.
type Section struct {
	Path    string // its YAML path: "triggers[]", "kafka"
	KindKey string // the key that selects the kind ("primitive", "kind"), if any
	Fields  []Field
}

const durs = "duration"

const registryType = "{subject, strategy, record, version, schema_file, message, register}"

// Spec is the app file's reference, section by section. Defaults that are
// constants of this package are printed from them, so the reference and
// the code cannot disagree.
var Spec = []Section{
	{Path: "(top level)", Fields: []Field{
		{Key: "app", Type: "string", Req: true, Doc: "the app's name: letters, digits, '-', '_', '.'; names its group, topics and state"},
		{Key: "kafka", Type: "object", Doc: "how the app uses Kafka (below)"},
		{Key: "sources", Type: "list", Req: true, Doc: "where records come from"},
		{Key: "tables", Type: "list", Doc: "reference data for lookup functions"},
		{Key: "buckets", Type: "list", Doc: "where objects wait for their triggers"},
		{Key: "triggers", Type: "list", Doc: "when which function runs on which objects"},
		{Key: "functions", Type: "list", Doc: "what runs"},
		{Key: "sinks", Type: "list", Doc: "where results go"},
		{Key: "invoke", Type: "object", Doc: "the invocation API's entry bucket and result sink"},
		{Key: "schema_registry", Type: "object", Doc: "the schema registry of the avro, protobuf and json_schema formats (below)"},
	}},
	{Path: "kafka", Fields: []Field{
		{Key: "brokers", Type: "list of host:port", Doc: "none: `pheromone run` starts the embedded broker"},
		{Key: "group", Type: "string", Default: "pheromone-<app>", Doc: "the consumer group of the app's nodes"},
		{Key: "dlq_topic", Type: "topic", Default: "<app>.dlq", Doc: "the dead-letter topic"},
		{Key: "guarantee", Type: "at_least_once | exactly_once", Default: "at_least_once", Doc: "exactly_once: outputs, state and offsets in one Kafka transaction"},
		{Key: "commit_interval", Type: durs, Default: DefaultCommitInterval.String(), Doc: "exactly_once: how long a transaction gathers cycles"},
		{Key: "changelog", Type: "bool", Default: "true", Doc: "every state change also goes to a compacted topic, to restore from"},
		{Key: "changelog_topic", Type: "topic", Default: "<app>.changelog", Doc: "the changelog topic (one partition per source partition)"},
		{Key: "session_timeout", Type: durs, Default: DefaultSessionTimeout.String(), Doc: "how long the group waits for a silent node"},
		{Key: "standby_replicas", Type: "int", Default: "0", Doc: "other nodes that keep a warm copy of each partition's state"},
		{Key: "on_offset_loss", Type: "fail | earliest | latest", Default: "fail", Doc: "when the log no longer holds the state's offset: stop the partition, or resume at the log's start or end"},
		{Key: "tls", Type: "{ca_file, cert_file, key_file, server_name, insecure_skip_verify}", Doc: "encrypt every connection to the brokers"},
		{Key: "sasl", Type: "{mechanism, username, password_env, password_file, token_file}", Doc: "authenticate every connection: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 (password from the environment variable password_env or the file password_file), OAUTHBEARER (token_file, re-read at every login) or AWS_MSK_IAM (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN)"},
	}},
	{Path: "sources[]", KindKey: "kind", Fields: []Field{
		{Key: "name", Type: "string", Req: true, Doc: "unique among sources"},
		{Key: "kind", Type: "kafka | generator | a connector's", Default: "kafka", Doc: "generator: the node writes test data to the topic itself; file: JSON lines of a local file"},
		{Key: "topic", Type: "topic", Kinds: []string{"kafka", "generator"}, Doc: "the topic read (required for kafka and generator)"},
		{Key: "format", Type: "json | raw | avro | protobuf | json_schema", Default: "json", Doc: "raw: columns key and value, both bytes; avro, protobuf, json_schema: the Confluent wire format, schemas from the registry"},
		{Key: "schema", Type: "list of {name, type}", Doc: "json: the columns of each record's object (string, int64, float64, bool, timestamp, bytes); registry formats: default from the schema"},
		{Key: "registry", Type: registryType, Doc: "registry formats: the subject (default <topic>-value), its version (default latest), and a schema_file registered when the subject has none"},
		{Key: "key", Type: "column", Doc: "the column whose value is the object key"},
		{Key: "event_time", Type: "column", Doc: "a timestamp or int64 (ms) column: the event time"},
		{Key: "bucket", Type: "bucket", Req: true, Doc: "where decoded objects land"},
		{Key: "session_header", Type: "string", Doc: "a Kafka header carrying the session id"},
		{Key: "session_column", Type: "string", Default: "session", Doc: "the column session_header's value is stored in"},
		{Key: "partitions", Type: "int", Default: fmt.Sprint(DefaultPartitions), Doc: "when the node creates the topic (a connector's source: 1)"},
		{Key: "max_record_bytes", Type: "int", Default: fmt.Sprint(DefaultMaxRecordBytes), Doc: "larger records go to the dead-letter topic (too_large)"},
		{Key: "generator", Type: "{profile, rate, seed, limit}", Kinds: []string{"generator"}, Doc: "what a generator source writes"},
		{Key: "options", Type: "map", Doc: "a connector's source options (file: path)"},
	}},
	{Path: "tables[]", Fields: []Field{
		{Key: "name", Type: "string", Req: true, Doc: "unique among tables"},
		{Key: "topic", Type: "topic", Doc: "a compacted topic holding the rows (or file)"},
		{Key: "file", Type: "path", Doc: "a file of JSON lines holding the rows (or topic)"},
		{Key: "schema", Type: "list of {name, type}", Doc: "the rows' columns (required for json; registry formats: default from the schema)"},
		{Key: "format", Type: "json | avro | protobuf | json_schema", Default: "json", Doc: "a topic's rows: JSON, or the Confluent wire format with a registry"},
		{Key: "registry", Type: registryType, Doc: "registry formats: the subject (default <topic>-value), as for sources"},
		{Key: "key", Type: "column", Req: true, Doc: "the column rows are kept and looked up by"},
		{Key: "partitions", Type: "int", Default: "1", Doc: "when the node creates the topic"},
	}},
	{Path: "buckets[]", Fields: []Field{
		{Key: "name", Type: "string", Req: true, Doc: "unique among buckets and sinks"},
		{Key: "key", Type: "column", Default: "the feeding source's key", Doc: "the object key triggers look at"},
		{Key: "session", Type: "column", Doc: "the column that names an object's session"},
		{Key: "event_time", Type: "column", Default: "the feeding source's", Doc: "the event-time column"},
		{Key: "max_objects", Type: "int", Default: fmt.Sprint(DefaultMaxObjects), Doc: "per partition; overflow goes to the dead-letter topic (bucket_full)"},
		{Key: "max_bytes", Type: "int", Default: fmt.Sprint(DefaultMaxBytes), Doc: "per partition; overflow goes to the dead-letter topic (bucket_full)"},
		{Key: "max_objects_per_session", Type: "int", Doc: "per session in each per-session trigger; excess goes to the dead-letter topic (session_full)"},
		{Key: "partition_by", Type: "column", Doc: "objects go to the partition owning murmur2(column), through <app>.<bucket>.repartition"},
	}},
	{Path: "triggers[]", KindKey: "primitive", Fields: []Field{
		{Key: "name", Type: "string", Req: true, Doc: "unique among triggers"},
		{Key: "bucket", Type: "bucket", Req: true, Doc: "the bucket it watches"},
		{Key: "primitive", Type: "primitive", Req: true, Doc: "immediate, by_batch_size, by_time, by_name, by_set, redundant, dynamic_join, dynamic_group"},
		{Key: "function", Type: "function", Req: true, Doc: "the function it fires"},
		{Key: "count", Type: "int", Kinds: []string{"by_batch_size"}, Doc: "fire with every count objects"},
		{Key: "window", Type: durs, Kinds: []string{"by_time"}, Doc: "tumbling (or sliding, with slide) window length"},
		{Key: "slide", Type: durs, Kinds: []string{"by_time"}, Doc: "sliding windows: divides window; at most 1000 windows per object"},
		{Key: "gap", Type: durs, Kinds: []string{"by_time"}, Doc: "session windows: close after this long without objects"},
		{Key: "time", Type: "processing | event", Default: "processing", Kinds: []string{"by_time"}, Doc: "event: windows close on the watermark"},
		{Key: "out_of_orderness", Type: durs, Kinds: []string{"by_time"}, Doc: "event time: the watermark trails the newest event by this"},
		{Key: "allowed_lateness", Type: durs, Kinds: []string{"by_time"}, Doc: "event time: a window fires again for objects this late"},
		{Key: "idle_timeout", Type: durs, Kinds: []string{"by_time"}, Doc: "event time: a caught-up partition quiet this long follows the clock"},
		{Key: "max_future", Type: durs, Default: "1h (event time)", Kinds: []string{"by_time"}, Doc: "event time: events further ahead of the clock are late"},
		{Key: "late_bucket", Type: "bucket", Kinds: []string{"by_time"}, Doc: "event time: where objects too late for their window go (default: dropped and counted)"},
		{Key: "incremental", Type: "bool", Default: "true", Kinds: []string{"by_time", "by_batch_size"}, Doc: "firing a built-in aggregate: keep each window's (or batch's) partial aggregate, not its objects"},
		{Key: "match", Type: "key", Kinds: []string{"by_name"}, Doc: "fire on each object with this key"},
		{Key: "keys", Type: "list of keys", Kinds: []string{"by_set"}, Doc: "fire a session once it holds all of these keys"},
		{Key: "k", Type: "int", Kinds: []string{"redundant"}, Doc: "fire with the first k of n replicas"},
		{Key: "n", Type: "int", Kinds: []string{"redundant"}, Doc: "replicas per session (>= k)"},
		{Key: "control_key", Type: "key", Default: "_join / _done", Kinds: []string{"dynamic_join", "dynamic_group"}, Doc: "the key of control objects"},
		{Key: "count_column", Type: "column", Kinds: []string{"dynamic_join"}, Doc: "int64 column of the announcement: how many parts to wait for"},
		{Key: "controls", Type: "int", Kinds: []string{"dynamic_group"}, Doc: "how many control objects close a stage"},
		{Key: "group_column", Type: "column", Kinds: []string{"dynamic_group"}, Doc: "the column that holds an object's group"},
		{Key: "session_timeout", Type: durs, Kinds: []string{"by_batch_size", "by_set", "redundant", "dynamic_join", "dynamic_group"},
			Doc: "an unfinished session older than this goes to the dead-letter topic (session_timeout)"},
	}},
	{Path: "functions[]", KindKey: "kind", Fields: []Field{
		{Key: "name", Type: "string", Req: true, Doc: "unique among functions"},
		{Key: "kind", Type: "kind", Req: true, Doc: "filter, project, aggregate, split, route, lookup, sort, emit, go"},
		{Key: "outputs", Type: "list of buckets and sinks", Req: true, Doc: "each gets the whole result (route: by its routes)"},
		{Key: "retries", Type: "int", Default: fmt.Sprint(DefaultRetries), Doc: "attempts after a failure before the input goes to the dead-letter topic"},
		{Key: "timeout", Type: durs, Default: DefaultTimeout.String(), Doc: "kind: go: an attempt longer than this fails (built-in kinds cannot hang and run without it)"},
		{Key: "order", Type: "firing | completion", Default: "firing", Doc: "completion: results apply as they finish, not in firing order"},
		{Key: "expr", Type: "expression", Kinds: []string{"filter"}, Doc: "keep the rows where it is true"},
		{Key: "columns", Type: "list of {name, from | expr}", Kinds: []string{"project"}, Doc: "the output columns: kept, renamed or computed"},
		{Key: "group_by", Type: "list of columns", Kinds: []string{"aggregate"}, Doc: "one output row per group"},
		{Key: "aggregates", Type: "list of {name, op, column, k}", Kinds: []string{"aggregate"}, Doc: "count, sum, min, max, avg, count_distinct, top_k"},
		{Key: "column", Type: "column", Kinds: []string{"split"}, Doc: "the string column split into one row per part"},
		{Key: "as", Type: "string", Default: "the column", Kinds: []string{"split"}, Doc: "the column of the part"},
		{Key: "separator", Type: "string", Default: "white space", Kinds: []string{"split"}, Doc: "what parts are split on"},
		{Key: "schema", Type: "list of {name, type}", Kinds: []string{"go"}, Doc: "the columns the Go function emits (checked)"},
		{Key: "table", Type: "table", Kinds: []string{"lookup"}, Doc: "the reference table joined"},
		{Key: "on", Type: "column", Kinds: []string{"lookup"}, Doc: "the input column matched with the table's key"},
		{Key: "table_columns", Type: "list of columns", Default: "all but the key", Kinds: []string{"lookup"}, Doc: "the table columns added"},
		{Key: "keep_unmatched", Type: "bool", Default: "false", Kinds: []string{"lookup"}, Doc: "true: a left join (nulls); false: rows without a match are dropped and counted"},
		{Key: "by", Type: "column", Kinds: []string{"route", "sort"}, Doc: "route: the column routes look at; sort: the column rows are ordered by"},
		{Key: "routes", Type: "list of {when, to}", Kinds: []string{"route"}, Doc: "rows whose column equals when go to the output to"},
		{Key: "default", Type: "output", Kinds: []string{"route"}, Doc: "where rows no route takes go (default: dropped)"},
	}},
	{Path: "sinks[]", KindKey: "kind", Fields: []Field{
		{Key: "name", Type: "string", Req: true, Doc: "unique among sinks and buckets"},
		{Key: "kind", Type: "kafka | table | result | a connector's", Default: "kafka", Doc: "table: latest row per key, queryable; result: answers invocations; file: JSON lines"},
		{Key: "topic", Type: "topic", Kinds: []string{"kafka"}, Doc: "the topic written"},
		{Key: "format", Type: "json | avro | protobuf | json_schema", Default: "json", Kinds: []string{"kafka"}, Doc: "the records' encoding; the registry formats derive the schema from the function's output"},
		{Key: "registry", Type: registryType, Kinds: []string{"kafka"}, Doc: "registry formats: the subject (default <topic>-value); register: false uses the subject's latest schema"},
		{Key: "key", Type: "column", Kinds: []string{"kafka", "table"}, Doc: "kafka: the records' key; table: the column rows are kept by"},
		{Key: "partitions", Type: "int", Default: fmt.Sprint(DefaultPartitions), Kinds: []string{"kafka"}, Doc: "when the node creates the topic"},
		{Key: "options", Type: "map", Doc: "a connector's sink options (file: path, sync)"},
	}},
	{Path: "schema_registry", Fields: []Field{
		{Key: "url", Type: "http(s) URL", Default: "the embedded registry", Doc: "a Confluent-compatible schema registry"},
		{Key: "username", Type: "string", Doc: "basic authentication (with password_env)"},
		{Key: "password_env", Type: "string", Doc: "the environment variable holding the password"},
		{Key: "tls", Type: "{ca_file, cert_file, key_file, server_name, insecure_skip_verify}", Doc: "https: trust and client certificate"},
	}},
	{Path: "invoke", Fields: []Field{
		{Key: "entry", Type: "bucket", Req: true, Doc: "where invocations land (fed by a json source, with a session column)"},
		{Key: "result", Type: "sink", Req: true, Doc: "the sink of kind result whose rows answer"},
		{Key: "timeout", Type: durs, Default: DefaultTimeout.String(), Doc: "how long POST /invoke waits before answering pending"},
		{Key: "durable", Type: "bool", Default: "true", Doc: "write each invocation to <app>.invocations before accepting it (false: in memory, lost on a crash)"},
		{Key: "session_timeout", Type: durs, Default: DefaultInvocationTimeout.String(), Doc: "a durable session running this long without a result is timed out"},
		{Key: "session_ttl", Type: durs, Default: DefaultInvocationTTL.String(), Doc: "how long a durable session's status, result and idempotency key are kept"},
		{Key: "max_sessions", Type: "int", Default: "100000", Doc: "sessions kept per partition; beyond, an invocation fails (429)"},
		{Key: "max_waiting", Type: "int", Default: "10000", Doc: "requests a node holds open for their results; beyond, 429"},
	}},
}

// section returns the spec of the section at path.
func section(path string) *Section {
	for i := range Spec {
		if Spec[i].Path == path {
			return &Spec[i]
		}
	}
	panic("app: no spec section " + path)
}

// checkKinds refuses every key of item (a struct of the section at path)
// that is set although its kind does not take it, as the spec says.
func checkKinds(c *checker, sectionPath, p, kind string, item any) {
	sec := section(sectionPath)
	v := reflect.Indirect(reflect.ValueOf(item))
	t := v.Type()
	for _, f := range sec.Fields {
		if f.Kinds == nil || slices.Contains(f.Kinds, kind) {
			continue
		}
		for i := 0; i < t.NumField(); i++ {
			if yamlKey(t.Field(i)) == f.Key && !v.Field(i).IsZero() {
				verb := "takes"
				if len(f.Kinds) > 1 {
					verb = "take"
				}
				what := strings.Join(f.Kinds, " and ")
				if sec.Path == "functions[]" {
					what += " functions"
					verb = "take"
				}
				c.add(p+"."+f.Key, "only %s %s %s", what, verb, f.Key)
			}
		}
	}
}

func yamlKey(f reflect.StructField) string {
	k, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	return k
}

// Reference is the app file's reference in Markdown, generated from Spec:
// a table per section. docs/app-format.md holds it between markers, and a
// test fails when it is stale.
func Reference() string {
	var b strings.Builder
	for _, sec := range Spec {
		fmt.Fprintf(&b, "### `%s`\n\n| key | type | default | taken by | |\n|---|---|---|---|---|\n", sec.Path)
		for _, f := range sec.Fields {
			def := f.Default
			if f.Req {
				def = "required"
			}
			kinds := "all"
			if f.Kinds != nil {
				kinds = strings.Join(f.Kinds, ", ")
			}
			if sec.KindKey == "" {
				kinds = ""
			}
			esc := func(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
			fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s |\n", f.Key, esc(f.Type), esc(def), kinds, esc(f.Doc))
		}
		b.WriteString("\n")
	}
	return b.String()
}
