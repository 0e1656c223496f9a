package cli

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// TestValidateCommand pins the CLI contract: every problem with its YAML
// path and line on stderr and exit code 1; a valid file exits 0.
func TestValidateCommand(t *testing.T) {
	dir := t.TempDir()
	raw, err := os.ReadFile("../../../examples/quickstart/app.yaml")
	if err != nil {
		t.Fatal(err)
	}
	good := string(raw)
	bad := strings.NewReplacer("window: 10s", "window: soon", `expr: action == "view"`, `expr: actionn == "view"`).Replace(good)
	var out, errb bytes.Buffer
	code := Main([]string{"validate", "-f", writeFile(t, dir, "bad.yaml", bad)}, &out, &errb)
	if code != 1 {
		t.Fatalf("exit code %d, want 1", code)
	}
	for _, want := range []string{
		`triggers[1].window: "soon" is not a duration (try 10s, 1m, 500ms) (line 29, column 5)`,
		`functions[0].expr: unknown column "actionn"`,
		"2 problem(s)",
	} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, errb.String())
		}
	}
	out.Reset()
	if code := Main([]string{"validate", "-f", writeFile(t, dir, "good.yaml", good)}, &out, &errb); code != 0 {
		t.Fatalf("valid app: exit %d", code)
	}
	if !strings.Contains(out.String(), `app "quickstart" is valid`) {
		t.Errorf("stdout: %s", out.String())
	}
	if code := Main([]string{"nonsense"}, &out, &errb); code != 2 {
		t.Errorf("unknown command: exit %d, want 2", code)
	}
}

// TestValidatePrintsCaveats: a valid app whose event-time results cannot be
// exact under crashes passes, with a warning naming the trigger's path.
func TestValidatePrintsCaveats(t *testing.T) {
	yaml := `
app: views
sources:
  - {name: events, topic: events, schema: [{name: campaign, type: string}, {name: ts, type: timestamp}], event_time: ts, bucket: events}
buckets:
  - {name: events}
  - {name: by_campaign, partition_by: campaign, event_time: ts}
triggers:
  - {name: each, bucket: events, primitive: immediate, function: rekey}
  - {name: per10s, bucket: by_campaign, primitive: by_time, time: event, window: 10s, idle_timeout: 5s, function: count}
functions:
  - {name: rekey, kind: emit, outputs: [by_campaign]}
  - {name: count, kind: aggregate, group_by: [campaign], aggregates: [{name: n, op: count}], outputs: [out]}
sinks:
  - {name: out, topic: counts, key: campaign}
`
	var out, errb bytes.Buffer
	if code := Main([]string{"validate", "-f", writeFile(t, t.TempDir(), "app.yaml", yaml)}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if want := `warning: triggers[1]: bucket "by_campaign" is repartitioned (partition_by) and the guarantee is at_least_once`; !strings.Contains(out.String(), want) {
		t.Errorf("stdout lacks %q:\n%s", want, out.String())
	}
}

// TestCLIArgumentsNeverPanic pins issue 11's CLI findings: `invoke --addr
// host:port` (no scheme) panicked; -h exited 2. Every argument list here
// must return an exit code, 0 for help and version.
func TestCLIArgumentsNeverPanic(t *testing.T) {
	for _, c := range []struct {
		args []string
		code int
	}{
		{[]string{"--help"}, 0},
		{[]string{"version"}, 0},
		{[]string{"run", "-h"}, 0},
		{[]string{"validate", "-h"}, 0},
		{[]string{"broker", "-h"}, 0},
		{[]string{"invoke", "-h"}, 0},
		{[]string{"query", "--help"}, 0},
		{[]string{"gen", "ysb", "-h"}, 0},
		{[]string{"run", "--nope"}, 2},
		{[]string{"run", "-f"}, 2},
		{[]string{"validate"}, 2},
		{[]string{"broker", "--count", "x"}, 2},
		{[]string{"invoke"}, 2},
		{[]string{"invoke", "app", "--addr", "127.0.0.1:1", "--data", "/dev/null"}, 1},
		{[]string{"invoke", "app", "--addr", "://bad", "--data", "/dev/null"}, 2},
		{[]string{"query", "app"}, 2},
		{[]string{"query", "app", "b", "--addr", "127.0.0.1:1"}, 1},
		{[]string{"gen"}, 2},
		{[]string{"gen", "ysb", "--rate", "x"}, 2},
		{[]string{"nonsense"}, 2},
	} {
		var out, errb bytes.Buffer
		code := func() (code int) {
			defer func() {
				if p := recover(); p != nil {
					t.Errorf("%q panicked: %v", c.args, p)
					code = -1
				}
			}()
			return Main(c.args, &out, &errb)
		}()
		if code != c.code {
			t.Errorf("%q: exit %d, want %d (stderr: %s)", c.args, code, c.code, errb.String())
		}
	}
}
