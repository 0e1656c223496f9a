package server

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pheromone-go/pheromone/engine"
	"github.com/pheromone-go/pheromone/engine/app"
)

const upgradeV1 = `
app: upg
sources: [{name: in, topic: in, partitions: 1, schema: [{name: id, type: int64}], bucket: in}]
buckets: [{name: in}, {name: kept}]
triggers:
  - {name: each, bucket: in, primitive: immediate, function: keep}
  - {name: threes, bucket: kept, primitive: by_batch_size, count: 3, function: count}
functions:
  - {name: keep, kind: filter, expr: "id >= 0", outputs: [kept]}
  - {name: count, kind: aggregate, aggregates: [{name: n, op: count}, {name: lo, op: min, column: id}], outputs: [out]}
sinks: [{name: out, topic: out, partitions: 1}]
`

// TestUpgrades: a changed filter keeps the state (a batch begun before the
// change completes after it, exactly); a changed batch size is refused
// with the trigger, the change and the reset to pass, and `Plan` says the
// same without touching anything; with that reset the trigger's held
// objects are dropped and the rest of the state is kept.
func TestUpgrades(t *testing.T) {
	brokers := cluster(t)
	dir := t.TempDir()
	clock := engine.NewManualClock(time.Unix(0, 0))
	n := startNode(t, upgradeV1, brokers, clock, dir)
	produce(t, brokers, "in", 0, `{"id":1}`, `{"id":2}`)
	waitFor(t, 20*time.Second, "two records committed", func() bool { return n.info.Node.Committed()[engine.TopicPartition{Topic: "in"}] == 2 })
	if err := n.stop(); err != nil {
		t.Fatal(err)
	}

	// v2: a changed filter expression — compatible.
	v2 := strings.Replace(upgradeV1, `expr: "id >= 0"`, `expr: "id >= 1"`, 1)
	n = startNode(t, v2, brokers, clock, dir)
	produce(t, brokers, "in", 0, `{"id":3}`)
	equalLines(t, "the batch begun before the change", values(consume(t, brokers, "out", 1, 200*time.Millisecond)), []string{`{"n":3,"lo":1}`})
	produce(t, brokers, "in", 0, `{"id":4}`)
	waitFor(t, 20*time.Second, "the fourth record committed", func() bool { return n.info.Node.Committed()[engine.TopicPartition{Topic: "in"}] == 4 })
	if err := n.stop(); err != nil {
		t.Fatal(err)
	}

	// v3: a changed batch size — the trigger holds {"id":4} for the old one.
	v3 := strings.Replace(v2, "count: 3,", "count: 2,", 1)
	a := mustApp(t, v3)
	plan, err := Plan(a, dir)
	if err != nil {
		t.Fatal(err)
	}
	var shown []string
	for _, it := range plan {
		shown = append(shown, fmt.Sprintf("%s %s: %s", it.Action, it.Item, it.Change))
	}
	equalLines(t, "plan", shown, []string{"refused trigger threes: count: 3 → 2"})
	err = Run(context.Background(), a, DataDir(dir), Brokers(brokers...), Clock(clock))
	var ue *engine.UpgradeError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "trigger threes: count: 3 → 2") || !strings.Contains(err.Error(), "--reset threes") {
		t.Fatalf("a changed batch size: %v", err)
	}
	t.Logf("refused:\n%v", err)

	// With the reset: the held object is gone, the offsets stay.
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan Info, 1)
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, a, DataDir(dir), Brokers(brokers...), Clock(clock), Reset("threes"), OnStarted(func(i Info) { started <- i }))
	}()
	select {
	case <-started:
	case err := <-done:
		t.Fatalf("with --reset threes: %v", err)
	}
	produce(t, brokers, "in", 0, `{"id":5}`, `{"id":6}`)
	out := values(consume(t, brokers, "out", 2, 300*time.Millisecond))
	equalLines(t, "outputs after the reset", out, []string{`{"n":3,"lo":1}`, `{"n":2,"lo":5}`})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Started again with the same file: nothing to plan.
	if plan, err := Plan(a, dir); err != nil || plan != nil {
		t.Fatalf("plan after the upgrade: %v %v", plan, err)
	}
}

func mustApp(t *testing.T, yaml string) *app.App {
	t.Helper()
	a, err := app.Parse([]byte(yaml))
	if err == nil {
		err = a.ValidateWith(Connectors())
	}
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestMixedVersionsInAGroup: a node whose app changes what a running
// member's state holds (a batch size) refuses to join its group, naming the
// member, its version and the change; a node with a compatible change (a
// filter) joins beside it — a rolling upgrade.
func TestMixedVersionsInAGroup(t *testing.T) {
	brokers := cluster(t)
	n1 := startNode(t, upgradeV1, brokers, engine.SystemClock{}, t.TempDir())
	defer n1.stop()
	bad := mustApp(t, strings.Replace(upgradeV1, "count: 3,", "count: 2,", 1))
	err := Run(context.Background(), bad, DataDir(t.TempDir()), Brokers(brokers...), HTTPAddr("127.0.0.1:0"))
	for _, want := range []string{"runs another version of app upg", "node http://" + n1.info.HTTPAddr, "trigger threes", "count: 3 → 2"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("an incompatible newcomer: %v (want %q)", err, want)
		}
	}
	t.Logf("refused: %v", err)

	// A newcomer that looked at the group before n1 had joined it (here: did
	// not look) sees n1 when the group gives it partitions, and takes none.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = Run(ctx, bad, DataDir(t.TempDir()), Brokers(brokers...), HTTPAddr("127.0.0.1:0"), func(c *config) { c.joinedMeanwhile = true })
	if err == nil || !strings.Contains(err.Error(), "runs another version of app upg") || !strings.Contains(err.Error(), "count: 3 → 2") {
		t.Fatalf("an incompatible newcomer, checked at its first assignment: %v", err)
	}
	produce(t, brokers, "in", 0, `{"id":1}`, `{"id":2}`, `{"id":3}`)
	equalLines(t, "n1 kept the partition", values(consume(t, brokers, "out", 1, 200*time.Millisecond)), []string{`{"n":3,"lo":1}`})
	n2 := startNode(t, strings.Replace(upgradeV1, `"id >= 0"`, `"id >= 1"`, 1), brokers, engine.SystemClock{}, t.TempDir())
	defer n2.stop()
}

// TestResetAll: a change no --reset NAME covers (the partition count here
// stays, the batch size changes) started with ResetAll drops every piece
// of the app's state, offsets too: the input is read again from its start.
func TestResetAll(t *testing.T) {
	brokers := cluster(t)
	dir := t.TempDir()
	clock := engine.NewManualClock(time.Unix(0, 0))
	n := startNode(t, upgradeV1, brokers, clock, dir)
	produce(t, brokers, "in", 0, `{"id":1}`, `{"id":2}`, `{"id":3}`, `{"id":4}`)
	equalLines(t, "v1", values(consume(t, brokers, "out", 1, 200*time.Millisecond)), []string{`{"n":3,"lo":1}`})
	if err := n.stop(); err != nil {
		t.Fatal(err)
	}
	a := mustApp(t, strings.Replace(upgradeV1, "count: 3,", "count: 2,", 1))
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan Info, 1)
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, a, DataDir(dir), Brokers(brokers...), Clock(clock), ResetAll(), OnStarted(func(i Info) { started <- i }))
	}()
	select {
	case <-started:
	case err := <-done:
		t.Fatalf("with ResetAll: %v", err)
	}
	// All four records again, in batches of two; nothing of v1's state.
	out := values(consume(t, brokers, "out", 3, 300*time.Millisecond))
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	equalLines(t, "outputs after reset-all", out, []string{`{"n":3,"lo":1}`, `{"n":2,"lo":1}`, `{"n":2,"lo":3}`})
}

// TestRestoredStateIsChecked: a node with an empty data dir restores a
// partition's state from the changelog; the app that wrote it comes back
// with it. A compatible change keeps it; a changed batch size is refused
// naming the partition and the trigger; with --reset the trigger's held
// objects are dropped from the restored state and from the changelog, so
// the next fresh node restores the reset state under the new app.
func TestRestoredStateIsChecked(t *testing.T) {
	brokers := cluster(t)
	clock := engine.NewManualClock(time.Unix(0, 0))
	committed := func(n *runningNode, want int64) {
		t.Helper()
		waitFor(t, 20*time.Second, fmt.Sprintf("%d records committed", want), func() bool {
			return n.info.Node.Committed()[engine.TopicPartition{Topic: "in"}] == want
		})
	}
	n := startNode(t, upgradeV1, brokers, clock, t.TempDir())
	produce(t, brokers, "in", 0, `{"id":1}`, `{"id":2}`)
	committed(n, 2)
	if err := n.stop(); err != nil {
		t.Fatal(err)
	}

	v2 := strings.Replace(upgradeV1, `expr: "id >= 0"`, `expr: "id >= 1"`, 1)
	v3 := strings.Replace(v2, "count: 3,", "count: 2,", 1)
	refused := func(label string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err := Run(ctx, mustApp(t, v3), DataDir(t.TempDir()), Brokers(brokers...), Clock(clock))
		var ue *engine.UpgradeError
		if !errors.As(err, &ue) || ue.Partition == nil || *ue.Partition != 0 ||
			!strings.Contains(err.Error(), "partition 0's state, restored from the changelog") || !strings.Contains(err.Error(), "trigger threes: count: 3 → 2") {
			t.Fatalf("%s: %v", label, err)
		}
		t.Logf("%s: %v", label, err)
	}
	refused("v1's state restored under a changed batch size")

	// A compatible change on an empty data dir: the restored batch goes on.
	n = startNode(t, v2, brokers, clock, t.TempDir())
	produce(t, brokers, "in", 0, `{"id":3}`)
	equalLines(t, "the restored batch", values(consume(t, brokers, "out", 1, 200*time.Millisecond)), []string{`{"n":3,"lo":1}`})
	produce(t, brokers, "in", 0, `{"id":4}`)
	committed(n, 4)
	if err := n.stop(); err != nil {
		t.Fatal(err)
	}
	refused("v2's state restored under a changed batch size")

	// With the reset: {"id":4}, held for a batch of three, is dropped.
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan Info, 1)
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, mustApp(t, v3), DataDir(t.TempDir()), Brokers(brokers...), Clock(clock), Reset("threes"), OnStarted(func(i Info) { started <- i }))
	}()
	select {
	case <-started:
	case err := <-done:
		t.Fatalf("with --reset threes: %v", err)
	}
	produce(t, brokers, "in", 0, `{"id":5}`, `{"id":6}`)
	equalLines(t, "after the reset", values(consume(t, brokers, "out", 2, 300*time.Millisecond)), []string{`{"n":3,"lo":1}`, `{"n":2,"lo":5}`})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// The changelog now says v3: a fresh node needs no reset, holds nothing.
	n = startNode(t, v3, brokers, clock, t.TempDir())
	defer n.stop()
	produce(t, brokers, "in", 0, `{"id":7}`, `{"id":8}`)
	equalLines(t, "a fresh node after the reset", values(consume(t, brokers, "out", 3, 300*time.Millisecond)), []string{`{"n":3,"lo":1}`, `{"n":2,"lo":5}`, `{"n":2,"lo":7}`})
}
