package app

import (
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// TestSpecCoversEveryKey: every key the app file's structs accept has a
// row in the spec, and every row is a key they accept, so the generated
// reference cannot drift from what the parser takes.
func TestSpecCoversEveryKey(t *testing.T) {
	types := map[string]reflect.Type{
		"(top level)": reflect.TypeOf(App{}), "kafka": reflect.TypeOf(Kafka{}), "sources[]": reflect.TypeOf(Source{}),
		"tables[]": reflect.TypeOf(Table{}), "buckets[]": reflect.TypeOf(Bucket{}), "triggers[]": reflect.TypeOf(Trigger{}),
		"functions[]": reflect.TypeOf(Function{}), "sinks[]": reflect.TypeOf(Sink{}), "invoke": reflect.TypeOf(Invoke{}),
		"schema_registry": reflect.TypeOf(SchemaRegistry{}),
	}
	if len(types) != len(Spec) {
		t.Fatalf("%d spec sections, %d types", len(Spec), len(types))
	}
	for _, sec := range Spec {
		typ := types[sec.Path]
		if typ == nil {
			t.Fatalf("no type for section %s", sec.Path)
		}
		var keys []string
		for i := 0; i < typ.NumField(); i++ {
			if k := yamlKey(typ.Field(i)); k != "" && k != "-" {
				keys = append(keys, k)
			}
		}
		var spec []string
		for _, f := range sec.Fields {
			spec = append(spec, f.Key)
			if !slices.Contains(keys, f.Key) {
				t.Errorf("%s: the spec has %q, which the parser does not take", sec.Path, f.Key)
			}
		}
		for _, k := range keys {
			if !slices.Contains(spec, k) {
				t.Errorf("%s: the parser takes %q, which the spec (and so the reference) lacks", sec.Path, k)
			}
		}
	}
}

const refBegin, refEnd = "<!-- reference: generated from engine/app/spec.go; do not edit -->\n", "<!-- end of reference -->\n"

// TestReferenceIsCurrent: the reference in docs/app-format.md is the one
// the spec generates. PHEROMONE_UPDATE_GOLDEN=1 writes it.
func TestReferenceIsCurrent(t *testing.T) {
	const doc = "../../docs/app-format.md"
	raw, err := os.ReadFile(doc)
	if err != nil {
		t.Fatal(err)
	}
	s := string(raw)
	i, j := strings.Index(s, refBegin), strings.Index(s, refEnd)
	if i < 0 || j < i {
		t.Fatalf("docs/app-format.md has no reference markers")
	}
	want := Reference()
	if got := s[i+len(refBegin) : j]; got != want {
		if os.Getenv("PHEROMONE_UPDATE_GOLDEN") != "" {
			if err := os.WriteFile(doc, []byte(s[:i+len(refBegin)]+want+s[j:]), 0o644); err != nil {
				t.Fatal(err)
			}
			return
		}
		t.Fatal("the reference in docs/app-format.md is stale: run PHEROMONE_UPDATE_GOLDEN=1 go test ./engine/app -run TestReferenceIsCurrent")
	}
}

// TestKeysOfOtherKindsAreRefused: a key the spec gives to other kinds is a
// problem naming the kinds that take it.
func TestKeysOfOtherKindsAreRefused(t *testing.T) {
	a, err := Parse([]byte(`
app: k
sources: [{name: in, topic: in, schema: [{name: id, type: int64}, {name: s, type: string}], bucket: in}]
buckets: [{name: in}]
triggers:
  - {name: t1, bucket: in, primitive: by_time, window: 1s, count: 3, function: f1}
  - {name: t2, bucket: in, primitive: immediate, session_timeout: 1m, function: f2}
functions:
  - {name: f1, kind: filter, expr: "id > 1", column: s, outputs: [out]}
  - {name: f2, kind: emit, keep_unmatched: true, outputs: [out]}
sinks: [{name: out, topic: out}]
`))
	if err != nil {
		t.Fatal(err)
	}
	err = a.Validate()
	for _, want := range []string{
		"triggers[0].count: only by_batch_size takes count",
		"triggers[1].session_timeout: only by_batch_size and by_set and redundant and dynamic_join and dynamic_group take session_timeout",
		"functions[0].column: only split functions take column",
		"functions[1].keep_unmatched: only lookup functions take keep_unmatched",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("want %q in:\n%v", want, err)
		}
	}
}

// TestSpecDefaultsAreWhatValidateFills: every default the spec documents as
// a plain value is the value Validate fills into an app that leaves the key
// out, so the reference cannot promise a default the code does not apply.
func TestSpecDefaultsAreWhatValidateFills(t *testing.T) {
	a, err := Parse([]byte(`
app: d
sources: [{name: in, topic: in, schema: [{name: id, type: int64}, {name: s, type: string}], session_header: x, bucket: in}]
tables: [{name: tb, topic: tb, schema: [{name: id, type: int64}], key: id}]
buckets: [{name: in}]
triggers: [{name: w, bucket: in, primitive: by_time, window: 1s, function: f}]
functions: [{name: f, kind: emit, outputs: [out]}]
sinks: [{name: out, topic: out}]
`))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Validate(); err != nil {
		t.Fatal(err)
	}
	items := map[string]any{
		"kafka": &a.Kafka, "sources[]": &a.Sources[0], "tables[]": &a.Tables[0], "buckets[]": &a.Buckets[0],
		"triggers[]": &a.Triggers[0], "functions[]": &a.Functions[0], "sinks[]": &a.Sinks[0],
	}
	checked := 0
	for _, sec := range Spec {
		item, ok := items[sec.Path]
		if !ok {
			continue
		}
		v := reflect.ValueOf(item).Elem()
		for _, f := range sec.Fields {
			// Only plain values: not templates ("<app>.dlq"), prose or
			// durations (kept parsed in unexported fields).
			if f.Default == "" || f.Type == durs || strings.ContainsAny(f.Default, "< ()/") {
				continue
			}
			for i := 0; i < v.NumField(); i++ {
				if yamlKey(v.Type().Field(i)) != f.Key {
					continue
				}
				fv := v.Field(i)
				if fv.Kind() == reflect.Pointer {
					if fv.IsNil() {
						continue // a nil bool pointer: its default applies where it is read
					}
					fv = fv.Elem()
				}
				if got := fmt.Sprint(fv.Interface()); got != f.Default {
					t.Errorf("%s.%s: Validate fills %q, the spec documents %q", sec.Path, f.Key, got, f.Default)
				}
				checked++
			}
		}
	}
	if checked < 12 {
		t.Fatalf("only %d defaults checked", checked)
	}
}
