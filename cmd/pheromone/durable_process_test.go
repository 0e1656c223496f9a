package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// chainApp is a 100-step workflow: steps 1–49 add 1, step 50 waits for a
// second object of the session (a by_batch_size of 2 — the "human in the
// loop" of the workflow), steps 51–100 add 1 to every row, and the last
// answers the invocation.
func chainApp() string {
	var b strings.Builder
	b.WriteString(`app: workflow
kafka: {guarantee: exactly_once, commit_interval: 50ms, session_timeout: 2s}
sources:
  - {name: requests, topic: requests, partitions: 4, key: session, schema: [{name: session, type: string}, {name: n, type: int64}], bucket: requests}
buckets:
  - {name: requests, session: session}
`)
	for i := 1; i < 100; i++ {
		fmt.Fprintf(&b, "  - {name: b%d}\n", i)
	}
	b.WriteString("invoke: {entry: requests, result: reply, timeout: 20s}\ntriggers:\n")
	b.WriteString("  - {name: t0, bucket: requests, primitive: immediate, function: f1}\n")
	for i := 1; i < 100; i++ {
		if i == 49 {
			fmt.Fprintf(&b, "  - {name: t%d, bucket: b%d, primitive: by_batch_size, count: 2, function: f%d}\n", i, i, i+1)
			continue
		}
		fmt.Fprintf(&b, "  - {name: t%d, bucket: b%d, primitive: immediate, function: f%d}\n", i, i, i+1)
	}
	b.WriteString("functions:\n")
	for i := 1; i <= 100; i++ {
		out := fmt.Sprintf("b%d", i)
		if i == 100 {
			out = "reply"
		}
		fmt.Fprintf(&b, "  - {name: f%d, kind: project, columns: [{name: n, expr: \"n + 1\"}], outputs: [%s]}\n", i, out)
	}
	b.WriteString("sinks: [{name: reply, kind: result}]\n")
	return b.String()
}

// TestDurableWorkflowSurvivesSIGKILL: a 100-step workflow is invoked, and
// while it waits at step 50 the node that owns its session is killed with
// SIGKILL. The surviving node takes the partition over (state, the
// session's record and the object waiting at step 50, restored from the
// changelog); the second object arrives; the workflow finishes there, and
// GET /v1/sessions/{id} on the survivor returns the right result — as
// does a client's synchronous POST with the same Idempotency-Key, which
// does not run the workflow again.
func TestDurableWorkflowSurvivesSIGKILL(t *testing.T) {
	dir := t.TempDir()
	appFile := filepath.Join(dir, "app.yaml")
	if err := os.WriteFile(appFile, []byte(chainApp()), 0o644); err != nil {
		t.Fatal(err)
	}
	brokers := brokerProc(t, 1)
	nodes := []*clusterNode{
		startClusterNode(t, appFile, brokers, filepath.Join(dir, "a")),
		startClusterNode(t, appFile, brokers, filepath.Join(dir, "b")),
	}
	waitFor(t, 60*time.Second, "two nodes sharing the partitions", func() bool {
		return nodes[0].partitions() > 0 && nodes[1].partitions() > 0 && nodes[0].partitions()+nodes[1].partitions() == 4
	})

	get := func(node *clusterNode, path string) (int, map[string]any, string) {
		resp, err := http.Get("http://" + node.http + path)
		if err != nil {
			return 0, nil, ""
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		var m map[string]any
		_ = json.Unmarshal(raw, &m)
		return resp.StatusCode, m, resp.Header.Get("Pheromone-Served-By")
	}
	post := func(node *clusterNode, body string, hdr ...string) (int, map[string]any) {
		req, _ := http.NewRequest("POST", "http://"+node.http+"/v1/apps/workflow/invoke?async=true", strings.NewReader(body))
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatalf("POST: %s: %v", raw, err)
		}
		return resp.StatusCode, m
	}

	code, acc := post(nodes[0], `{"n":0}`, "Idempotency-Key", "workflow-1")
	if code != http.StatusAccepted {
		t.Fatalf("POST: %d %v", code, acc)
	}
	session := acc["session"].(string)
	// It runs to step 50 and waits there.
	waitFor(t, 30*time.Second, "the workflow waiting at step 50", func() bool {
		_, st, _ := get(nodes[1], "/v1/sessions/"+session)
		if st["status"] != "running" {
			return false
		}
		_, b, _ := get(nodes[1], "/v1/apps/workflow/buckets/b49")
		parts, _ := b["partitions"].([]any)
		pending := 0.0
		for _, p := range parts {
			trs, _ := p.(map[string]any)["triggers"].([]any)
			for _, tr := range trs {
				pending += tr.(map[string]any)["pending"].(float64)
			}
		}
		return pending == 1
	})
	// Kill the session's owner.
	_, _, servedBy := get(nodes[0], "/v1/sessions/"+session)
	owner, survivor := nodes[0], nodes[1]
	if servedBy != "" {
		owner, survivor = nodes[1], nodes[0]
	}
	if _, _, by := get(survivor, "/v1/sessions/"+session); by == "" || !strings.Contains(by, owner.http) {
		t.Fatalf("the survivor answered the session itself (served by %q): the owner is not the node to kill", by)
	}
	t.Logf("killing the session's owner %s; %s survives", owner.http, survivor.http)
	if err := owner.cmd.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// The second object of the session arrives (keyed by the session, on
	// its partition) while the partition moves.
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	rec := &kgo.Record{Topic: "requests", Key: []byte(session), Value: fmt.Appendf(nil, `{"session":%q,"n":1000}`, session)}
	if err := cl.ProduceSync(context.Background(), rec).FirstErr(); err != nil {
		t.Fatal(err)
	}
	// Both rows went through all 100 steps: the request's 0 and the 1000
	// that entered at the source.
	want := `[{"n":100},{"n":1100}]`
	var final map[string]any
	waitFor(t, 60*time.Second, "the survivor to answer the session", func() bool {
		code, st, _ := get(survivor, "/v1/sessions/"+session+"?wait=2s")
		final = st
		return code == http.StatusOK && st["status"] != "running"
	})
	if final["status"] != "done" || compact(t, final["result"]) != want {
		t.Fatalf("after the kill: %v, want done with %s", final, want)
	}
	// A retry with the same key: the same session, the same answer, not
	// run again (it would wait at step 50 forever).
	req, _ := http.NewRequest("POST", "http://"+survivor.http+"/v1/apps/workflow/invoke", strings.NewReader(`{"n":0}`))
	req.Header.Set("Idempotency-Key", "workflow-1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var again map[string]any
	_ = json.Unmarshal(raw, &again)
	if resp.StatusCode != http.StatusOK || again["session"] != session || compact(t, again["result"]) != want {
		t.Fatalf("retry: %d %s", resp.StatusCode, raw)
	}
}

func compact(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
