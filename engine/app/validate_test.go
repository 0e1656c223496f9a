package app

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
)

const good = `
app: shop
sources:
  - name: orders
    topic: orders
    schema:
      - {name: id, type: int64}
      - {name: user, type: string}
      - {name: amount, type: float64}
      - {name: ts, type: timestamp}
    key: user
    event_time: ts
    bucket: orders
buckets:
  - name: orders
  - name: big
triggers:
  - {name: each, bucket: orders, primitive: immediate, function: keep_big}
  - {name: win, bucket: big, primitive: by_time, window: 10s, function: totals}
functions:
  - {name: keep_big, kind: filter, expr: "amount > 10", outputs: [big]}
  - name: totals
    kind: aggregate
    group_by: [user]
    aggregates: [{name: n, op: count}, {name: sum, op: sum, column: amount}]
    outputs: [out]
sinks:
  - {name: out, topic: totals, key: user}
`

func TestGoodAppValidates(t *testing.T) {
	a, err := Parse([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Validate(); err != nil {
		t.Fatal(err)
	}
	if got := a.Kafka.DLQTopic; got != "shop.dlq" {
		t.Errorf("dlq topic = %q", got)
	}
	s := a.Function("totals").OutputSchema()
	var names []string
	for _, f := range s.Fields() {
		names = append(names, f.Name+":"+f.Type.String())
	}
	if got := strings.Join(names, ","); got != "user:utf8,window_start:timestamp[ms, tz=UTC],window_end:timestamp[ms, tz=UTC],n:int64,sum:float64" {
		t.Errorf("aggregate schema = %s", got)
	}
}

// Each case breaks the good app one way; every listed problem must be
// reported, with its YAML path.
func TestBrokenApps(t *testing.T) {
	cases := []struct {
		name     string
		from, to string // textual edit of the good app
		want     []string
	}{
		{"unknown bucket in trigger", "{name: each, bucket: orders,", "{name: each, bucket: ordrs,",
			[]string{`triggers[0].bucket: unknown bucket "ordrs" (have: big, orders)`}},
		{"missing function", "function: totals}", "function: total}",
			[]string{`triggers[1].function: unknown function "total" (have: keep_big, totals)`,
				`functions[1]: function "totals" is never fired: no trigger names it`}},
		{"bad duration", "window: 10s", "window: ten",
			[]string{`triggers[1].window: "ten" is not a duration (try 10s, 1m, 500ms)`}},
		{"negative duration", "window: 10s", "window: -5s", []string{`triggers[1].window: must be > 0`}},
		{"duplicate bucket", "  - name: big\n", "  - name: big\n  - name: big\n",
			[]string{`buckets[2].name: duplicate name "big" (also buckets[1])`}},
		{"unknown column in expr", `expr: "amount > 10"`, `expr: "amt > 10"`,
			[]string{`functions[0].expr: unknown column "amt"`}},
		{"filter not bool", `expr: "amount > 10"`, `expr: "amount + 1"`,
			[]string{`functions[0].expr: is float64; a filter needs a bool`}},
		{"unknown key column", "    key: user\n", "    key: usr\n",
			[]string{`sources[0].key: unknown column "usr" (have: id, user, amount, ts)`}},
		{"unknown group column", "group_by: [user]", "group_by: [usr]",
			[]string{`functions[1].group_by[0]: unknown column "usr"`}},
		{"sum of string", "op: sum, column: amount", "op: sum, column: user",
			[]string{`functions[1].aggregates[1].column: sum needs an int64 or float64 column, "user" is utf8`}},
		{"unknown primitive", "primitive: immediate", "primitive: sometimes",
			[]string{`triggers[0].primitive: unknown primitive "sometimes" (immediate, by_batch_size, by_time, by_name, by_set, redundant, dynamic_join, dynamic_group)`}},
		{"batch without count", "primitive: immediate", "primitive: by_batch_size",
			[]string{`triggers[0].count: must be > 0 for by_batch_size`}},
		{"unknown output", "outputs: [out]", "outputs: [nowhere]",
			[]string{`functions[1].outputs[0]: unknown bucket or sink "nowhere"`}},
		{"cycle", "outputs: [big]}", "outputs: [orders]}",
			[]string{`triggers: cycle through buckets orders -> orders`,
				`buckets[1]: bucket "big" is never written`}},
		{"bad column type", "{name: id, type: int64}", "{name: id, type: integer}",
			[]string{`sources[0].schema[0].type: unknown type "integer"`}},
		{"no app name", "app: shop", "app: ''",
			[]string{`app: must be set`}},
		{"unknown format", "    topic: orders\n", "    topic: orders\n    format: xml\n",
			[]string{`sources[0].format: unknown format "xml" (json, raw)`}},
		{"sink key not in output", "{name: out, topic: totals, key: user}", "{name: out, topic: totals, key: id}",
			[]string{`functions[1].outputs[0]: sink "out" is keyed by column "id", which function "totals" does not output`}},
		{"batch larger than bucket", "primitive: by_time, window: 10s", "primitive: by_batch_size, count: 3",
			[]string{`triggers[1].count: 3 exceeds max_objects 2 of bucket "big": the trigger can never fire`}},
		{"two problems at once", "window: 10s", "window: 10x",
			[]string{`triggers[1].window`, `functions[1]`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(good, tc.from) {
				t.Fatalf("edit %q does not apply", tc.from)
			}
			src := strings.Replace(good, tc.from, tc.to, 1)
			if tc.name == "batch larger than bucket" {
				src = strings.Replace(src, "  - name: big\n", "  - name: big\n    max_objects: 2\n", 1)
			}
			if tc.name == "two problems at once" {
				src = strings.Replace(src, "op: count}", "op: counts}", 1)
			}
			a, err := Parse([]byte(src))
			if err == nil {
				err = a.Validate()
			}
			if err == nil {
				t.Fatal("validated, want problems")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("missing problem %q in:\n%v", w, err)
				}
			}
		})
	}
}

// TestUnknownFieldRefused: every unknown key and every type error at once,
// each with its YAML path or line (issue 11: the first one hid the others
// and had no path).
func TestUnknownFieldRefused(t *testing.T) {
	bad := strings.NewReplacer(
		"app: shop", "app: shop\nwindoww: 3",
		"  - name: big", "  - name: big\n    max_objectz: 5",
		"window: 10s, function: totals", "window: 10s, funtion: totals",
		"{name: n, op: count}", "{name: n, op: count, colum: x}",
	).Replace(good)
	_, err := Parse([]byte(bad))
	for _, want := range []string{
		"windoww: unknown key (have: app, kafka,",
		"sources, buckets, triggers, functions, sinks, invoke, tables, schema_registry) (line 3, column 1)",
		"buckets[1].max_objectz: unknown key (have: name, key,",
		"partition_by) (line 18, column 5)",
		"triggers[1].funtion: unknown key",
		"late_bucket, incremental) (line 21, column 63)",
		"functions[1].aggregates[0].colum: unknown key (have: name, op, column, k) (line 27, column 39)",
		"4 problem(s)",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("want %q in:\n%v", want, err)
		}
	}
	_, err = Parse([]byte(strings.Replace(good, "schema:", "partitions: many\n    schema:", 1)))
	if err == nil || !strings.Contains(err.Error(), "line 6") || !strings.Contains(err.Error(), "cannot unmarshal") {
		t.Errorf("type error: %v", err)
	}
}

// TestDocumentedExampleValidates keeps docs/app-format.md honest: its
// complete example must be a valid app.
func TestDocumentedExampleValidates(t *testing.T) {
	raw, err := os.ReadFile("../../docs/app-format.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	start := strings.Index(doc, "```yaml\n")
	if start < 0 {
		t.Fatal("no yaml block in docs/app-format.md")
	}
	body := doc[start+len("```yaml\n"):]
	body = body[:strings.Index(body, "```")]
	a, err := Parse([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	// The example has a file sink: the kind the pheromone binary wires
	// (connectors/file declares it the same way).
	file := SinkKind{Name: "file", Options: []Option{{Name: "path", Required: true}, {Name: "sync"}}}
	if err := a.ValidateWith(Connectors{Sinks: []SinkKind{file}}); err != nil {
		t.Fatal(err)
	}
	if len(a.Triggers) != 4 || len(a.Functions) != 4 {
		t.Fatalf("example lost parts: %d triggers, %d functions", len(a.Triggers), len(a.Functions))
	}
}

// TestCaveatsOfRepartitionedEventTime: a window on a bucket with
// partition_by is exact only under exactly_once (at-least-once repeats the
// repartitioned objects of the cycles in flight at a crash, and a window
// counts them twice), and without idle_timeout one partition without input
// holds back every window; validate says so with the trigger's path.
func TestCaveatsOfRepartitionedEventTime(t *testing.T) {
	app := func(guarantee, idle string) string {
		return `
app: views
kafka: {guarantee: ` + guarantee + `}
sources:
  - name: events
    topic: events
    schema: [{name: ad, type: string}, {name: campaign, type: string}, {name: ts, type: timestamp}]
    event_time: ts
    bucket: events
buckets:
  - {name: events}
  - {name: by_campaign, partition_by: campaign, event_time: ts}
triggers:
  - {name: each, bucket: events, primitive: immediate, function: rekey}
  - {name: per10s, bucket: by_campaign, primitive: by_time, time: event, window: 10s` + idle + `, function: count}
functions:
  - {name: rekey, kind: emit, outputs: [by_campaign]}
  - {name: count, kind: aggregate, group_by: [campaign], aggregates: [{name: n, op: count}], outputs: [out]}
sinks:
  - {name: out, topic: counts, key: campaign}
`
	}
	for _, c := range []struct {
		guarantee, idle string
		want            []string
	}{
		{"at_least_once", "", []string{"triggers[1]: bucket \"by_campaign\" is repartitioned (partition_by) and the guarantee is at_least_once",
			"triggers[1].idle_timeout: bucket \"by_campaign\" is repartitioned"}},
		{"exactly_once", ", idle_timeout: 5s", nil},
	} {
		a, err := Parse([]byte(app(c.guarantee, c.idle)))
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Validate(); err != nil {
			t.Fatal(err)
		}
		got := a.Caveats()
		if len(got) != len(c.want) {
			t.Fatalf("%s: caveats %v, want %d", c.guarantee, got, len(c.want))
		}
		for i, w := range c.want {
			if !strings.HasPrefix(got[i].String(), w) {
				t.Errorf("%s: caveat %d = %q, want prefix %q", c.guarantee, i, got[i], w)
			}
		}
	}
}

// TestValidateTopicNamesAndWindowBounds pins issue 11's validation gaps:
// topic names Kafka refuses were accepted, and a 1h window sliding by 1ms
// (3.6 M windows per object) took 2.4 GB for one record.
func TestValidateTopicNamesAndWindowBounds(t *testing.T) {
	bad := strings.NewReplacer(
		"topic: orders", "topic: \"orders/2026\"",
		"topic: totals", "topic: ..",
		"window: 10s", "window: 1h, slide: 1ms",
	).Replace(good)
	a, err := Parse([]byte(bad))
	if err != nil {
		t.Fatal(err)
	}
	err = a.Validate()
	for _, want := range []string{
		`sources[0].topic: "orders/2026": a Kafka topic name takes only letters`,
		`sinks[0].topic: "..": Kafka refuses it as a topic name`,
		"triggers[1].slide: every object would be in 3600000 windows",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("want %q in:\n%v", want, err)
		}
	}
}

// TestConnectorSinkKinds: a sink of a connector's kind is accepted only
// when the binary declares the kind, with its required options and none it
// does not know; Kafka's fields and options on built-in kinds are refused;
// under exactly_once it is a caveat (not in Kafka transactions).
func TestConnectorSinkKinds(t *testing.T) {
	kinds := []SinkKind{{Name: "file", Options: []Option{{Name: "path", Required: true, Doc: "the file"}, {Name: "sync"}}}}
	app := func(sinks string) *App {
		t.Helper()
		a, err := Parse([]byte(`
app: k
kafka: {guarantee: exactly_once}
sources: [{name: in, topic: in, schema: [{name: id, type: int64}], bucket: in}]
buckets: [{name: in}]
triggers: [{name: each, bucket: in, primitive: immediate, function: pass}]
functions: [{name: pass, kind: emit, outputs: [s]}]
sinks: [` + sinks + `]
`))
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	a := app(`{name: s, kind: file, options: {path: out.jsonl}}`)
	if err := a.ValidateWith(Connectors{Sinks: kinds}); err != nil {
		t.Fatalf("a declared kind: %v", err)
	}
	if cs := a.Caveats(); len(cs) != 1 || !strings.Contains(cs[0].String(), "sinks[0].kind: a file sink is not part of Kafka transactions") {
		t.Errorf("caveats %v", cs)
	}
	for sinks, want := range map[string]string{
		`{name: s, kind: file, options: {path: x}}`:           `sinks[0].kind: unknown sink kind "file" (kafka, table, result)`,
		`{name: s, kind: filez, options: {path: x}}`:          `sinks[0].kind: unknown sink kind "filez" (kafka, table, result, file)`,
		`{name: s, kind: file}`:                               `sinks[0].options.path: must be set: the file`,
		`{name: s, kind: file, options: {path: x, mode: y}}`:  `sinks[0].options.mode: unknown option of a file sink (path, sync)`,
		`{name: s, kind: file, topic: t, options: {path: x}}`: `sinks[0]: a file sink takes no topic, format or partitions`,
		`{name: s, topic: t, options: {path: x}}`:             `sinks[0].options: only sinks of a connector's kind take options`,
	} {
		use := kinds
		if strings.Contains(want, "(kafka, table, result)") {
			use = nil
		}
		err := app(sinks).ValidateWith(Connectors{Sinks: use})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: want %q in:\n%v", sinks, want, err)
		}
	}
}

// TestProblemsCarryTheirLine: a problem Validate finds names the line and
// column of its key in the file, or of the nearest enclosing one the file
// has (a missing key is reported at its list item).
func TestProblemsCarryTheirLine(t *testing.T) {
	a, err := Parse([]byte(strings.NewReplacer("window: 10s", "window: soon", "primitive: immediate, ", "").Replace(good)))
	if err != nil {
		t.Fatal(err)
	}
	err = a.Validate()
	lines := strings.Split(good, "\n")
	at := func(needle string) int {
		for i, l := range lines {
			if strings.Contains(l, needle) {
				return i + 1
			}
		}
		t.Fatalf("no %q in the app", needle)
		return 0
	}
	for _, want := range []string{
		fmt.Sprintf("is not a duration (try 10s, 1m, 500ms) (line %d, column", at("window: 10s")),
		fmt.Sprintf("triggers[0].primitive: must be set (immediate, by_batch_size, by_time, by_name, by_set, redundant, dynamic_join, dynamic_group) (line %d, column", at("primitive: immediate")),
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("want %q in:\n%v", want, err)
		}
	}
}

// TestSubjectStrategies: a registry section names its subject by the
// strategies Confluent's serializers use.
func TestSubjectStrategies(t *testing.T) {
	for _, c := range []struct {
		s    Subject
		want string
	}{
		{Subject{}, "orders-value"},
		{Subject{Strategy: TopicName}, "orders-value"},
		{Subject{Strategy: RecordName, Record: "shop.Order"}, "shop.Order"},
		{Subject{Strategy: TopicRecordName, Record: "shop.Order"}, "orders-shop.Order"},
		{Subject{Subject: "custom", Strategy: RecordName, Record: "x"}, "custom"},
	} {
		if got := c.s.Name("orders"); got != c.want {
			t.Errorf("%+v: %s, want %s", c.s, got, c.want)
		}
	}
}

// TestRegistrySettingsChecked: registry formats validate against the
// formats the binary wires; every misuse is named with its path.
func TestRegistrySettingsChecked(t *testing.T) {
	avro := FormatKind{Name: "avro", Sinks: true, Columns: func(_ *App, s *Source) ([]Column, error) {
		if s.Registry.SchemaFile == "missing.avsc" {
			return nil, errors.New("schema_file: open missing.avsc: no such file or directory")
		}
		return []Column{{Name: "id", Type: "int64"}}, nil
	}}
	a, err := Parse([]byte(`
app: reg
schema_registry: {url: "ftp://x", username: u}
tables:
  - {name: t, file: t.jsonl, format: avro, key: id}
sources:
  - {name: a, topic: a, format: avro, registry: {strategy: record_name}, bucket: b}
  - {name: c, topic: c, format: avro, registry: {schema_file: missing.avsc}, bucket: b}
  - {name: d, topic: d, format: xml, bucket: b}
  - {name: e, topic: e, schema: [{name: id, type: int64}], registry: {subject: x}, bucket: b}
buckets: [{name: b}]
triggers: [{name: t, bucket: b, primitive: immediate, function: f}]
functions: [{name: f, kind: emit, outputs: [s]}]
sinks: [{name: s, topic: s, format: avro, registry: {version: 2}}]
`))
	if err != nil {
		t.Fatal(err)
	}
	err = a.ValidateWith(Connectors{Formats: []FormatKind{avro}})
	for _, want := range []string{
		`schema_registry.url: "ftp://x": want http:// or https://`,
		`schema_registry: username and password_env go together`,
		`tables[0].format: a table file holds JSON lines`,
		`sources[0].registry.record: must be set for strategy record_name`,
		`sources[1].registry: schema_file: open missing.avsc`,
		`sources[2].format: unknown format "xml" (json, raw, avro)`,
		`sources[3].registry: only the registry formats take registry`,
		`sinks[0].registry.version: only sources take a version`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("want %q in:\n%v", want, err)
		}
	}
}
