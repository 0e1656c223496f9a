package apptest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func runFile(t *testing.T, path string) []Result {
	t.Helper()
	res, err := Run(context.Background(), path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) == 0 {
		t.Fatalf("%s: no cases ran", path)
	}
	return res
}

// TestExamplesPass: the examples' test files pass.
func TestExamplesPass(t *testing.T) {
	for _, f := range []string{"../../examples/quickstart/app_test.yaml", "../../examples/fanin/app_test.yaml"} {
		for _, r := range runFile(t, f) {
			if !r.Passed {
				t.Errorf("%s: %s: %s", f, r.Case, r.Failure)
			} else {
				t.Logf("%s: %s: ok in %v", filepath.Base(filepath.Dir(f)), r.Case, r.Duration.Round(time.Millisecond))
			}
		}
	}
}

// TestWrongExpectationNamesSinkRecordAndField: a wrong expectation fails
// with the step's line, the sink, the record and the field that differ.
func TestWrongExpectationNamesSinkRecordAndField(t *testing.T) {
	raw, err := os.ReadFile("../../examples/fanin/app_test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	app, _ := filepath.Abs("../../examples/fanin/app.yaml")
	wrong := strings.Replace(strings.Replace(string(raw), "app: app.yaml", "app: "+app, 1), "{order: o-1, check: fraud, ok: false}\n", "{order: o-1, check: fraud, ok: true}\n", 1)
	f := filepath.Join(dir, "wrong_test.yaml")
	if err := os.WriteFile(f, []byte(wrong), 0o644); err != nil {
		t.Fatal(err)
	}
	res := runFile(t, f)
	if res[0].Passed {
		t.Fatal("a wrong expectation passed")
	}
	for _, want := range []string{"wrong_test.yaml:22:", "sink decisions", "record 3", "field ok: got false, want true"} {
		if !strings.Contains(res[0].Failure, want) {
			t.Errorf("the failure does not say %q:\n%s", want, res[0].Failure)
		}
	}
	t.Logf("failure:\n%s", res[0].Failure)
}

// TestTenMinuteWindowInWellUnderASecond: an event-time window of ten
// minutes with a late event fires on the virtual clock, without waiting
// for a wall clock (about 0.1 s on the 2-core VM, 1.5 s under -race with
// the whole suite running).
func TestTenMinuteWindowInWellUnderASecond(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "app.yaml"), []byte(`
app: tenmin
sources:
  - {name: in, topic: in, partitions: 1, schema: [{name: user, type: string}, {name: ts, type: timestamp}], key: user, event_time: ts, bucket: in}
buckets: [{name: in}, {name: late}]
triggers:
  - {name: per_10m, bucket: in, primitive: by_time, time: event, window: 10m, idle_timeout: 1m, late_bucket: late, function: count}
functions:
  - {name: count, kind: aggregate, group_by: [user], aggregates: [{name: n, op: count}], outputs: [counts]}
sinks: [{name: counts, topic: counts, partitions: 1}]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "app_test.yaml"), []byte(`
start: 2026-01-01T00:00:00Z
cases:
  - name: ten minutes, then a late event
    steps:
      - send:
          source: in
          records:
            - {key: a, value: {user: a, ts: "2026-01-01T00:01:00Z"}}
            - {key: a, value: {user: a, ts: "2026-01-01T00:09:00Z"}}
            - {key: b, value: {user: b, ts: "2026-01-01T00:05:00Z"}}
            - {key: a, value: {user: a, ts: "2026-01-01T00:12:00Z"}}
      - expect:
          sink: counts
          records:
            - {user: a, n: 2, window_start: "2026-01-01T00:00:00.000Z"}
            - {user: b, n: 1, window_start: "2026-01-01T00:00:00.000Z"}
      - send: {source: in, records: [{key: a, value: {user: a, ts: "2026-01-01T00:02:00Z"}}]}
      - expect: {sink: counts, records: []}
      - advance: 30m
      - expect:
          sink: counts
          records:
            - {user: a, n: 1, window_start: "2026-01-01T00:10:00.000Z"}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	res := runFile(t, filepath.Join(dir, "app_test.yaml"))
	if !res[0].Passed {
		t.Fatal(res[0].Failure)
	}
	// How long it took is a figure, not an assertion (docs/testing.md
	// records it); the case's 40 virtual minutes never wait on a wall clock.
	t.Logf("forty virtual minutes of event-time windows in %v", res[0].Duration.Round(time.Millisecond))
}

// TestInvocationStep: an invoke step runs the app's invocation through its
// chain of functions and checks the answer; a wrong one names the field.
func TestInvocationStep(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "app.yaml"), []byte(`
app: chain
sources:
  - {name: requests, topic: requests, partitions: 2, schema: [{name: session, type: string}, {name: text, type: string}, {name: n, type: int64}], bucket: requests}
buckets: [{name: requests, session: session}, {name: step1}]
invoke: {entry: requests, result: reply}
triggers:
  - {name: t1, bucket: requests, primitive: immediate, function: shout}
  - {name: t2, bucket: step1, primitive: immediate, function: answer}
functions:
  - {name: shout, kind: project, columns: [{name: text, expr: "upper(text)"}, {name: n, expr: "n * 2"}], outputs: [step1]}
  - {name: answer, kind: project, columns: [{name: answer, expr: "text + '!'"}, {name: n}], outputs: [reply]}
sinks: [{name: reply, kind: result}]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	write := func(n int) string {
		f := filepath.Join(dir, "app_test.yaml")
		if err := os.WriteFile(f, []byte(fmt.Sprintf(`
cases:
  - name: a chain answers
    steps:
      - invoke:
          data: [{text: hi, n: 2}, {text: yo, n: 5}]
          match: exact
          expect: [{answer: HI!, n: 4}, {answer: YO!, n: %d}]
`, n)), 0o644); err != nil {
			t.Fatal(err)
		}
		return f
	}
	if r := runFile(t, write(10)); !r[0].Passed {
		t.Fatal(r[0].Failure)
	}
	r := runFile(t, write(11))
	if r[0].Passed || !strings.Contains(r[0].Failure, "the invocation's answer: record 2") || !strings.Contains(r[0].Failure, "field n: got 10, want 11") {
		t.Fatalf("a wrong answer: %+v", r[0])
	}
}
