package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestTestCommand: `pheromone test` passes the fanin example's cases with
// exit code 0, and a wrong expectation exits 1 with the diff, also in the
// JUnit report.
func TestTestCommand(t *testing.T) {
	var out, errb bytes.Buffer
	if code := Main([]string{"test", "-v", "../../../examples/fanin"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out.String(), errb.String())
	}
	if !strings.Contains(out.String(), "--- PASS: an order is decided once its three checks are in") {
		t.Fatalf("output:\n%s", out.String())
	}
	raw, err := os.ReadFile("../../../examples/fanin/app_test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	app, _ := filepath.Abs("../../../examples/fanin/app.yaml")
	dir := t.TempDir()
	bad := strings.Replace(strings.Replace(string(raw), "app: app.yaml", "app: "+app, 1), "{order: o-1, check: stock, ok: true}\n", "{order: o-1, check: stock, ok: false}\n", 1)
	if err := os.WriteFile(filepath.Join(dir, "bad_test.yaml"), []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	junit := filepath.Join(dir, "report.xml")
	out.Reset()
	if code := Main([]string{"test", "--junit", junit, dir}, &out, &errb); code != 1 {
		t.Fatalf("a failing case exited %d\n%s", code, out.String())
	}
	if !strings.Contains(out.String(), "--- FAIL: an order is decided") || !strings.Contains(out.String(), "record 2") || !strings.HasSuffix(out.String(), "FAIL\n") {
		t.Fatalf("output:\n%s", out.String())
	}
	x, err := os.ReadFile(junit)
	if err != nil || !strings.Contains(string(x), `<failure message="bad_test.yaml:`) || !strings.Contains(string(x), `failures="1"`) {
		t.Fatalf("junit: %v\n%s", err, x)
	}
}
