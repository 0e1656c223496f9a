package server

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pheromone-go/pheromone/engine"
)

// The app whose state testdata/state-format1 holds: two objects waiting in
// a batch of three, one row in a table sink, and the source's offsets.
const fixtureApp = `
app: fixture
kafka: {changelog: false, on_offset_loss: earliest}
sources: [{name: in, topic: in, partitions: 1, schema: [{name: id, type: int64}, {name: user, type: string}], bucket: in}]
buckets: [{name: in}]
triggers:
  - {name: threes, bucket: in, primitive: by_batch_size, count: 3, function: count}
  - {name: each, bucket: in, primitive: immediate, function: latest}
functions:
  - {name: count, kind: aggregate, aggregates: [{name: n, op: count}, {name: lo, op: min, column: id}], outputs: [out]}
  - {name: latest, kind: emit, outputs: [users]}
sinks:
  - {name: out, topic: out, partitions: 1}
  - {name: users, kind: table, key: user}
`

const fixtureDir = "testdata/state-format1"

// TestStateOfFormat1Loads: a data dir written by an earlier build
// (testdata/state-format1, format version 1; PHEROMONE_UPDATE_GOLDEN=1
// writes it again) loads in this one: the recorded app is accepted, the
// objects a trigger held fire with the next record, a table sink's rows
// are served.
func TestStateOfFormat1Loads(t *testing.T) {
	brokers := cluster(t)
	clock := engine.NewManualClock(time.Unix(0, 0))
	if os.Getenv("PHEROMONE_UPDATE_GOLDEN") != "" {
		dir := t.TempDir()
		n := startNode(t, fixtureApp, brokers, clock, dir)
		produce(t, brokers, "in", 0, `{"id":1,"user":"ann"}`, `{"id":2,"user":"bob"}`)
		waitFor(t, 20*time.Second, "two records committed", func() bool { return n.info.Node.Committed()[engine.TopicPartition{Topic: "in"}] == 2 })
		if err := n.stop(); err != nil {
			t.Fatal(err)
		}
		if err := os.RemoveAll(fixtureDir); err != nil {
			t.Fatal(err)
		}
		if err := os.CopyFS(fixtureDir, os.DirFS(dir)); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(fixtureDir)); err != nil {
		t.Fatal(err)
	}
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil {
			_ = os.Chmod(p, 0o755) // CopyFS keeps the read-only modes of a checkout
		}
		return nil
	})
	n := startNode(t, fixtureApp, brokers, clock, dir)
	defer n.stop()
	waitFor(t, 20*time.Second, "the table row of the fixture", func() bool {
		rows, err := n.info.Node.QueryTable("users", "bob")
		return err == nil && len(rows) == 1
	})
	// The log is new (empty): the partition resumes at its start, with the
	// two held objects.
	produce(t, brokers, "in", 0, `{"id":3,"user":"cid"}`)
	equalLines(t, "the batch begun by the earlier build", values(consume(t, brokers, "out", 1, 200*time.Millisecond)), []string{`{"n":3,"lo":1}`})
}
