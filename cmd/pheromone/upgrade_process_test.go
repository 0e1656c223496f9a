package main

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

const upgradeApp = `
app: upg
kafka: {brokers: [BROKER]}
sources: [{name: in, topic: in, partitions: 1, schema: [{name: id, type: int64}], bucket: in}]
buckets: [{name: in}, {name: kept}]
triggers:
  - {name: each, bucket: in, primitive: immediate, function: keep}
  - {name: threes, bucket: kept, primitive: by_batch_size, count: 3, function: count, incremental: false}
functions:
  - {name: keep, kind: filter, expr: "id >= 0", outputs: [kept]}
  - {name: count, kind: aggregate, aggregates: [{name: n, op: count}, {name: lo, op: min, column: id}], outputs: [out]}
sinks: [{name: out, topic: out, partitions: 1}]
`

// TestUpgradeWithProcesses upgrades an app the way an operator does:
// `pheromone plan` (against the data dir, and against a running node),
// then `pheromone run` with the new file on the same data dir. A changed filter keeps the state (a batch begun before
// completes after, exactly); a changed batch size is refused by plan and
// run alike, naming the trigger; with --reset that trigger's held objects
// are dropped and the rest is kept.
func TestUpgradeWithProcesses(t *testing.T) {
	dir := t.TempDir()
	broker := freeAddr(t)
	proc(t, "broker", "--addr", broker, "--data-dir", filepath.Join(dir, "broker"), "--registry", "")
	waitPort(t, broker)
	data := filepath.Join(dir, "data")
	file := func(name, yaml string) string {
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, []byte(strings.Replace(yaml, "BROKER", broker, 1)), 0o644); err != nil {
			t.Fatal(err)
		}
		return f
	}
	v1 := file("v1.yaml", upgradeApp)
	v2 := file("v2.yaml", strings.Replace(upgradeApp, `"id >= 0"`, `"id >= 1"`, 1))
	v3 := file("v3.yaml", strings.Replace(strings.Replace(upgradeApp, `"id >= 0"`, `"id >= 1"`, 1), "count: 3,", "count: 2,", 1))
	cl, err := kgo.NewClient(kgo.SeedBrokers(broker), kgo.ConsumeTopics("out"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DefaultProduceTopic("in"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	send := func(vs ...string) {
		for _, v := range vs {
			if err := cl.ProduceSync(context.Background(), &kgo.Record{Value: []byte(v)}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	var outs []string
	waitOut := func(n int) {
		waitFor(t, 30*time.Second, "outputs", func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) { outs = append(outs, string(r.Value)) })
			return len(outs) >= n
		})
	}
	held := func(addr string) int {
		resp, err := http.Get("http://" + addr + "/v1/apps/upg/buckets/kept?limit=1")
		if err != nil {
			return -1
		}
		defer resp.Body.Close()
		var v struct{ Partitions []struct{ Held int } }
		if json.NewDecoder(resp.Body).Decode(&v) != nil || len(v.Partitions) == 0 {
			return -1
		}
		return v.Partitions[0].Held
	}
	run := func(f string, extra ...string) (*exec.Cmd, string) {
		addr := freeAddr(t)
		cmd := proc(t, append([]string{"run", "-f", f, "--data-dir", data, "--http", addr}, extra...)...)
		waitPort(t, addr)
		return cmd, addr
	}
	stop := func(cmd *exec.Cmd) {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_, _ = cmd.Process.Wait()
	}

	node, addr := run(v1)
	send(`{"id":1}`, `{"id":2}`)
	waitFor(t, 30*time.Second, "two objects held", func() bool { return held(addr) == 2 })
	stop(node)

	out, err := exec.Command(binary_, "plan", "-f", v2, "--data-dir", data).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "keep     function keep: changed") || !strings.Contains(string(out), "the node would start") {
		t.Fatalf("plan v2: %v\n%s", err, out)
	}
	node, addr = run(v2)
	send(`{"id":3}`)
	waitOut(1)
	send(`{"id":4}`)
	waitFor(t, 30*time.Second, "one object held", func() bool { return held(addr) == 1 })
	// Planned against the running node, over HTTP.
	out, err = exec.Command(binary_, "plan", "-f", v3, "--addr", "http://"+addr).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "refused  trigger threes: count: 3 → 2") {
		t.Fatalf("plan v3 against the running node: %v\n%s", err, out)
	}
	stop(node)

	out, err = exec.Command(binary_, "plan", "-f", v3, "--data-dir", data).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "refused  trigger threes: count: 3 → 2") || !strings.Contains(string(out), "(--reset threes)") {
		t.Fatalf("plan v3: %v\n%s", err, out)
	}
	out, err = exec.Command(binary_, "run", "-f", v3, "--data-dir", data, "--http", "127.0.0.1:0").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "trigger threes: count: 3 → 2") {
		t.Fatalf("run v3: %v\n%s", err, out)
	}
	node, _ = run(v3, "--reset", "threes")
	send(`{"id":5}`, `{"id":6}`)
	waitOut(2)
	stop(node)
	if strings.Join(outs, " ") != `{"n":3,"lo":1} {"n":2,"lo":5}` {
		t.Fatalf("outputs %q", outs)
	}
}
