package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/twmb/franz-go/pkg/kgo"
)

// consoleApp is the quickstart with examples/fanin's by_set trigger added,
// so the console has every kind of box and a session waiting to fire.
func consoleApp(t *testing.T, broker string) string {
	t.Helper()
	raw, err := os.ReadFile("../../examples/quickstart/app.yaml")
	if err != nil {
		t.Fatal(err)
	}
	yaml := strings.NewReplacer(
		"app: quickstart", "app: quickstart\nkafka: {brokers: ["+broker+"], session_timeout: 2s}",
		"sources:\n", "sources:\n  - {name: checks, topic: checks, partitions: 4, schema: [{name: order, type: string}, {name: check, type: string}, {name: ok, type: bool}], key: check, bucket: checks}\n",
		"buckets:\n", "buckets:\n  - {name: checks, session: order}\n",
		"triggers:\n", "triggers:\n  - {name: all_checks, bucket: checks, primitive: by_set, keys: [payment, stock, fraud], function: decide}\n",
		"functions:\n", "functions:\n  - {name: decide, kind: emit, outputs: [decisions]}\n",
		"sinks:\n", "sinks:\n  - {name: decisions, topic: decisions, key: order}\n",
	).Replace(string(raw))
	yaml = strings.Replace(yaml, "generator: {profile: clickstream, rate: 2000}", "generator: {profile: clickstream, rate: 200}", 1)
	f := filepath.Join(t.TempDir(), "app.yaml")
	if err := os.WriteFile(f, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// browser opens headless Chromium (skipping without one) and collects the
// page's JavaScript errors.
func browser(t *testing.T) (context.Context, func() []string) {
	t.Helper()
	path := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		t.Skip("no Chromium (apt-get install -y chromium); .ci/run installs it")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.WindowSize(1400, 1600))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelCtx(); cancelAlloc() })
	var mu sync.Mutex
	var errs []string
	listen := chromedp.Listen(ctx, func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch e := ev.(type) {
		case *runtime.EventExceptionThrown:
			errs = append(errs, fmt.Sprintf("%s (line %d)", e.ExceptionDetails.Text, e.ExceptionDetails.LineNumber))
		case *runtime.EventConsoleAPICalled:
			if e.Type == runtime.ConsoleAPICalledTypeError {
				var parts []string
				for _, a := range e.Args {
					parts = append(parts, string(a.Value))
				}
				errs = append(errs, "console.error: "+strings.Join(parts, " "))
			}
		}
	})
	if listen != nil {
		t.Skipf("Chromium at %s does not start: %v", path, listen)
	}
	return ctx, func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), errs...) }
}

// screenshot saves the page under the test's temporary directory, or under
// $PHEROMONE_SCREENSHOTS when set (docs/console.jpg comes from there).
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(85))
	if err != nil {
		t.Fatal(err)
	}
	dir := os.Getenv("PHEROMONE_SCREENSHOTS")
	if dir == "" {
		dir = t.TempDir()
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s (%d KB)", p, len(png)/1024)
}

// waitJS polls a JavaScript condition in the page until it holds.
func waitJS(t *testing.T, ctx context.Context, d time.Duration, what, js string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		if ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](js)); err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			body, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector("main").innerText.slice(0, 3000)`))
			t.Fatalf("timed out after %s waiting for %s; the page shows:\n%s", d, what, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestConsoleInABrowser drives the console of a running quickstart (with a
// by_set trigger added) in headless Chromium: the topology shows every
// source, bucket, trigger, function and sink; the rates become non-zero;
// a malformed record sent with kcat appears among the dead letters with
// its reason; the by_set session with two of its three checks shows as
// "2 of 3"; with a second node, either node's console lists both nodes'
// partitions; no JavaScript error is logged. It saves screenshots.
func TestConsoleInABrowser(t *testing.T) {
	ctx, jsErrors := browser(t)
	broker := freeAddr(t)
	proc(t, "broker", "--addr", broker, "--data-dir", t.TempDir(), "--registry", "")
	waitPort(t, broker)
	appFile := consoleApp(t, broker)
	h1, h2 := freeAddr(t), freeAddr(t)
	proc(t, "run", "-f", appFile, "--data-dir", t.TempDir(), "--http", h1)
	waitPort(t, h1)

	if err := chromedp.Do(ctx, chromedp.Navigate("http://"+h1+"/")); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"source:clicks", "source:checks", "bucket:clicks", "bucket:long_views", "bucket:checks",
		"trigger:on_click", "trigger:every_10s", "trigger:all_checks", "function:keep_long_views", "function:count_per_page",
		"function:decide", "sink:long_views_out", "sink:page_views", "sink:decisions"} {
		waitJS(t, ctx, 20*time.Second, "the topology's "+id, fmt.Sprintf(`!!document.querySelector('#topology g.node[data-id=%q]')`, id))
	}
	waitJS(t, ctx, 20*time.Second, "a non-zero rate on the source's arrow",
		`[...document.querySelectorAll('#topology text.rate')].some(e => e.textContent !== "0/s")`)
	waitJS(t, ctx, 20*time.Second, "non-zero calls of keep_long_views",
		`(() => { const r = document.querySelector('#functions tr[data-function="keep_long_views"]'); return !!r && r.cells[2].textContent !== "0" && r.cells[2].textContent !== "–" })()`)

	// Two of the three checks of order o-1, and a malformed record.
	cl, err := kgo.NewClient(kgo.SeedBrokers(broker))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for _, v := range []string{`{"order":"o-1","check":"payment","ok":true}`, `{"order":"o-1","check":"stock","ok":true}`} {
		if err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: "checks", Key: []byte("o-1"), Value: []byte(v)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	if kcat, err := exec.LookPath("kcat"); err == nil {
		cmd := exec.Command(kcat, "-b", broker, "-t", "clicks", "-P")
		cmd.Stdin = strings.NewReader("this is not json\n")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("kcat: %v\n%s", err, out)
		}
	} else if err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: "clicks", Value: []byte("this is not json")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, 30*time.Second, "the malformed record among the dead letters",
		`[...document.querySelectorAll('#deadletters tr[data-reason="decode"]')].some(r => r.textContent.includes("this is not json"))`)
	waitJS(t, ctx, 30*time.Second, `the by_set session as "2 of 3"`,
		`(() => { const p = document.querySelector('#triggers tr[data-trigger="all_checks"] .pill[data-session="o-1"]'); return !!p && p.textContent.includes("2 of 3") && p.textContent.includes("fraud") })()`)
	screenshot(t, ctx, "console.jpg")

	// A second node joins: either console lists both nodes' partitions.
	proc(t, "run", "-f", appFile, "--data-dir", t.TempDir(), "--http", h2)
	waitPort(t, h2)
	both := fmt.Sprintf(`(() => { const ns = new Set([...document.querySelectorAll('#partitions tr[data-node]')].map(r => r.dataset.node));
		return ns.has("http://%s") && ns.has("http://%s") })()`, h1, h2)
	waitJS(t, ctx, 60*time.Second, "both nodes' partitions on the first node's console", both)
	if err := chromedp.Do(ctx, chromedp.Navigate("http://"+h2+"/")); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, 30*time.Second, "both nodes' partitions on the second node's console", both)
	screenshot(t, ctx, "console-two-nodes.jpg")
	if errs := jsErrors(); len(errs) > 0 {
		t.Fatalf("JavaScript errors:\n%s", strings.Join(errs, "\n"))
	}
}
