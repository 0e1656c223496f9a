package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pheromone-go/pheromone/engine"
	"github.com/pheromone-go/pheromone/engine/app"
)

// TestFileSourceResumesAfterItsLastLine: a source of the file kind (a
// connector written against engine.Feed, wired here) feeds the lines of a
// growing file through the app; a malformed line is dead-lettered; a node
// restarted on the same data dir resumes after the last line its state
// committed, so each line is processed once; and a live query answers.
func TestFileSourceResumesAfterItsLastLine(t *testing.T) {
	brokers := cluster(t)
	dir := t.TempDir()
	in := filepath.Join(dir, "orders.jsonl")
	yaml := `
app: fsrc
sources:
  - {name: orders, kind: file, options: {path: "` + in + `"}, schema: [{name: id, type: int64}, {name: user, type: string}], bucket: orders}
buckets: [{name: orders}]
triggers: [{name: each, bucket: orders, primitive: immediate, function: pass}]
functions: [{name: pass, kind: emit, outputs: [out, latest]}]
sinks:
  - {name: out, topic: out}
  - {name: latest, kind: table, key: user}
`
	appendLines := func(from, to int) {
		f, err := os.OpenFile(in, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		for i := from; i < to; i++ {
			line := fmt.Sprintf(`{"id":%d,"user":"u%d"}`, i, i%3)
			if i == 4 {
				line = `{"id":4,"user":` // malformed
			}
			fmt.Fprintln(f, line)
		}
	}
	appendLines(0, 6)
	data := t.TempDir()
	n := startNode(t, yaml, brokers, engine.NewManualClock(time.Unix(0, 0)), data)
	tp := engine.TopicPartition{Topic: "file.orders", Partition: 0}
	waitFor(t, 20*time.Second, "6 lines committed", func() bool { return n.info.Node.Committed()[tp] == 6 })
	appendLines(6, 10)
	waitFor(t, 20*time.Second, "10 lines committed", func() bool { return n.info.Node.Committed()[tp] == 10 })

	// A live query of the table the lines fed.
	resp, err := http.Get("http://" + n.info.HTTPAddr + "/v1/apps/fsrc/tables/latest?key=u0")
	if err != nil {
		t.Fatal(err)
	}
	var tb struct {
		Rows []struct {
			Row json.RawMessage `json:"row"`
		} `json:"rows"`
	}
	err = json.NewDecoder(resp.Body).Decode(&tb)
	resp.Body.Close()
	if err != nil || len(tb.Rows) != 1 || string(tb.Rows[0].Row) != `{"id":9,"user":"u0"}` {
		t.Fatalf("table row of u0: %v %s", err, tb.Rows)
	}
	if err := n.stop(); err != nil {
		t.Fatal(err)
	}

	appendLines(10, 13)
	n = startNode(t, yaml, brokers, engine.NewManualClock(time.Unix(0, 0)), data)
	waitFor(t, 20*time.Second, "13 lines committed", func() bool { return n.info.Node.Committed()[tp] == 13 })
	var want []string
	for i := 0; i < 13; i++ {
		if i != 4 {
			want = append(want, fmt.Sprintf(`{"id":%d,"user":"u%d"}`, i, i%3))
		}
	}
	equalLines(t, "outputs, each line once", sorted(values(consume(t, brokers, "out", 12, 300*time.Millisecond))), sorted(want))
	dead := consume(t, brokers, "fsrc.dlq", 1, 100*time.Millisecond)
	if len(dead) != 1 || string(dead[0].Value) != `{"id":4,"user":` || header(dead[0], engine.HeaderOffset) != "4" ||
		!strings.Contains(header(dead[0], engine.HeaderReason), "decode") {
		t.Fatalf("dead letters: %q", values(dead))
	}
}

// TestFileSourceCutBelowItsOffsetStops: a file rewritten with fewer lines
// than the state's offset is an offset loss like a recreated topic: with
// on_offset_loss: fail the partition stops and says why, never a silent
// skip of the new lines.
func TestFileSourceCutBelowItsOffsetStops(t *testing.T) {
	brokers := cluster(t)
	in := filepath.Join(t.TempDir(), "lines.jsonl")
	yaml := `
app: fcut
sources:
  - {name: lines, kind: file, options: {path: "` + in + `"}, schema: [{name: id, type: int64}], bucket: lines}
buckets: [{name: lines}]
triggers: [{name: each, bucket: lines, primitive: immediate, function: pass}]
functions: [{name: pass, kind: emit, outputs: [out]}]
sinks: [{name: out, topic: out}]
`
	write := func(from, to int) {
		var b strings.Builder
		for i := from; i < to; i++ {
			fmt.Fprintf(&b, "{\"id\":%d}\n", i)
		}
		if err := os.WriteFile(in, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(0, 10)
	data := t.TempDir()
	n := startNode(t, yaml, brokers, engine.NewManualClock(time.Unix(0, 0)), data)
	tp := engine.TopicPartition{Topic: "file.lines", Partition: 0}
	waitFor(t, 20*time.Second, "10 lines committed", func() bool { return n.info.Node.Committed()[tp] == 10 })
	if err := n.stop(); err != nil {
		t.Fatal(err)
	}
	write(100, 103) // the file is replaced by a shorter one
	// Started by hand: a node with a stopped partition is never ready.
	a, err := app.Parse([]byte(yaml))
	if err == nil {
		err = a.ValidateWith(Connectors())
	}
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	started, done := make(chan Info, 1), make(chan error, 1)
	go func() {
		done <- Run(ctx, a, DataDir(data), Brokers(brokers...), OnStarted(func(i Info) { started <- i }))
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("node: %v", err)
		}
	}()
	var info Info
	select {
	case info = <-started:
	case err := <-done:
		done <- err
		t.Fatalf("node did not start: %v", err)
	}
	var why string
	waitFor(t, 20*time.Second, "the partition stopped", func() bool {
		why = info.Node.Stopped()[0]
		return why != ""
	})
	if !strings.Contains(why, "file.lines") {
		t.Errorf("stopped because %q; want the source named", why)
	}
	if got := len(consume(t, brokers, "out", 10, 200*time.Millisecond)); got != 10 {
		t.Errorf("%d outputs, want the first file's 10 only (the cut file's lines are not read past the loss)", got)
	}
}

// TestFileSourceLongLineIsDeadLettered: a line longer than
// max_record_bytes is read only up to the limit (memory stays bounded),
// dead-lettered as too_large, and the lines after it flow on.
func TestFileSourceLongLineIsDeadLettered(t *testing.T) {
	brokers := cluster(t)
	in := filepath.Join(t.TempDir(), "lines.jsonl")
	long := `{"id":2,"pad":"` + strings.Repeat("x", 5000) + `"}`
	if err := os.WriteFile(in, []byte("{\"id\":1}\n"+long+"\n{\"id\":3}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	startNode(t, `
app: flong
sources:
  - {name: lines, kind: file, max_record_bytes: 100, options: {path: "`+in+`"}, schema: [{name: id, type: int64}], bucket: lines}
buckets: [{name: lines}]
triggers: [{name: each, bucket: lines, primitive: immediate, function: pass}]
functions: [{name: pass, kind: emit, outputs: [out]}]
sinks: [{name: out, topic: out}]
`, brokers, engine.NewManualClock(time.Unix(0, 0)), t.TempDir())
	equalLines(t, "outputs", values(consume(t, brokers, "out", 2, 200*time.Millisecond)), []string{`{"id":1}`, `{"id":3}`})
	dead := consume(t, brokers, "flong.dlq", 1, 100*time.Millisecond)
	if len(dead) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dead))
	}
	if header(dead[0], engine.HeaderReason) != engine.ReasonTooLarge || len(dead[0].Value) != 101 || header(dead[0], engine.HeaderOffset) != "1" {
		t.Fatalf("dead letters: %d, first of %d bytes, headers %v", len(dead), len(dead[0].Value), dead[0].Headers)
	}
}
