package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pheromone-go/pheromone/engine"
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
