package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pheromone-go/pheromone/engine/app"
	"github.com/pheromone-go/pheromone/server"
)

// startNode runs yaml on a fresh kfake cluster and returns the node's base
// URL and brokers; the node stops at the end of the test.
func startNode(t *testing.T, yaml string) (base string, brokers []string) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	a, err := app.Parse([]byte(yaml))
	if err == nil {
		err = a.Validate()
	}
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan server.Info, 1)
	done := make(chan error, 1)
	go func() {
		done <- server.Run(ctx, a, server.DataDir(t.TempDir()), server.Brokers(c.ListenAddrs()...), server.HTTPAddr("127.0.0.1:0"),
			server.OnStarted(func(i server.Info) { started <- i }))
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("node: %v", err)
		}
	})
	select {
	case info := <-started:
		deadline := time.Now().Add(30 * time.Second)
		for !info.Node.Ready() {
			if time.Now().After(deadline) {
				t.Fatal("node not ready after 30s")
			}
			time.Sleep(10 * time.Millisecond)
		}
		return "http://" + info.HTTPAddr, c.ListenAddrs()
	case err := <-done:
		t.Fatalf("node did not start: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("node did not start within 30s")
	}
	return "", nil
}

const shoutApp = `
app: shout
sources:
  - {name: requests, topic: requests, partitions: 1, schema: [{name: session, type: string}, {name: text, type: string}, {name: n, type: int64}], bucket: requests}
buckets: [{name: requests, session: session}]
invoke: {entry: requests, result: reply, timeout: 10s}
triggers: [{name: t1, bucket: requests, primitive: immediate, function: answer}]
functions:
  - {name: answer, kind: project, columns: [{name: answer, expr: "upper(text) + upper(text) + upper(text) + '!'"}, {name: n, expr: "n * 2"}], outputs: [reply]}
sinks: [{name: reply, kind: result}]
`

// TestInvokeCommand: `pheromone invoke` posts the input and prints the
// answer (of a durable invocation; with --idempotency-key a retry gets the
// first answer); an answer larger than a page (16 MiB)
// is printed whole: the command follows the pages.
func TestInvokeCommand(t *testing.T) {
	base, _ := startNode(t, shoutApp)
	var out, errb bytes.Buffer
	if code := Main([]string{"invoke", "shout", "--addr", base, "--data", writeFile(t, t.TempDir(), "in.json", `{"text":"cli","n":5}`)}, &out, &errb); code != 0 ||
		!strings.Contains(out.String(), `"result":[{"answer":"CLICLICLI!","n":10}]`) {
		t.Fatalf("pheromone invoke: exit %d, %s %s", code, out.String(), errb.String())
	}
	// With an idempotency key, a second call with other input returns the
	// first answer: it does not run again.
	for i, in := range []string{`{"text":"once","n":1}`, `{"text":"twice","n":2}`} {
		out.Reset()
		if code := Main([]string{"invoke", "shout", "--addr", base, "--idempotency-key", "k1", "--data", writeFile(t, t.TempDir(), "in.json", in)}, &out, &errb); code != 0 ||
			!strings.Contains(out.String(), `"result":[{"answer":"ONCEONCEONCE!","n":2}]`) {
			t.Fatalf("pheromone invoke --idempotency-key, call %d: exit %d, %s %s", i+1, code, out.String(), errb.String())
		}
	}

	// An answer this large goes through an in-memory invocation (a
	// durable one is one record of the invocations topic).
	base, _ = startNode(t, strings.Replace(shoutApp, "invoke: {", "invoke: {durable: false, ", 1))
	const rows = 4000
	pad := strings.Repeat("p", 2000)
	var body strings.Builder
	body.WriteString("[")
	for i := 0; i < rows; i++ {
		if i > 0 {
			body.WriteString(",")
		}
		fmt.Fprintf(&body, `{"text":"r%05d-%s","n":%d}`, i, pad, i)
	}
	body.WriteString("]")
	out.Reset()
	if code := Main([]string{"invoke", "shout", "--data", writeFile(t, t.TempDir(), "big.json", body.String()), "--addr", base}, &out, &errb); code != 0 {
		t.Fatalf("pheromone invoke: exit %d: %s", code, errb.String())
	}
	var whole struct {
		Rows   int `json:"rows"`
		Next   int `json:"next"`
		Result []struct {
			Answer string `json:"answer"`
			N      int    `json:"n"`
		} `json:"result"`
	}
	if err := json.Unmarshal(out.Bytes(), &whole); err != nil {
		t.Fatal(err)
	}
	if whole.Rows != rows || whole.Next != 0 || len(whole.Result) != rows {
		t.Fatalf("pheromone invoke printed %d of %d rows, next %d", len(whole.Result), whole.Rows, whole.Next)
	}
	for i, g := range whole.Result {
		want := strings.ToUpper(fmt.Sprintf("r%05d-%s", i, pad))
		if g.N != 2*i || g.Answer != want+want+want+"!" {
			t.Fatalf("row %d = n %d, answer of %d bytes", i, g.N, len(g.Answer))
		}
	}
}

const holdApp = `
app: q
sources:
  - {name: parts, topic: parts, partitions: 1, schema: [{name: req, type: string}, {name: key, type: string}, {name: v, type: int64}], key: key, bucket: parts}
buckets: [{name: parts, session: req}]
triggers: [{name: all3, bucket: parts, primitive: by_set, keys: [a, b, c], function: pass}]
functions: [{name: pass, kind: emit, outputs: [out]}]
sinks: [{name: out, topic: out}]
`

// TestQueryCommand: `pheromone query` prints what a bucket holds, filtered
// by session.
func TestQueryCommand(t *testing.T) {
	base, brokers := startNode(t, holdApp)
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic("parts"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(context.Background(), &kgo.Record{Value: []byte(`{"req":"r1","key":"a","v":1}`)},
		&kgo.Record{Value: []byte(`{"req":"r2","key":"c","v":2}`)}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	deadline := time.Now().Add(10 * time.Second)
	for {
		out.Reset()
		code := Main([]string{"query", "q", "parts", "--addr", base, "--session", "r2"}, &out, &errb)
		if code == 0 && strings.Contains(out.String(), `"objects":[{"req":"r2","key":"c","v":2}]`) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pheromone query: %d %s %s", code, out.String(), errb.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
