package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pheromone-go/pheromone/engine"
	"github.com/pheromone-go/pheromone/state/pebblestore"
	"github.com/pheromone-go/pheromone/triggers"
)

var binary_ string

// TestMain builds the pheromone binary once for the process tests.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "pheromone-bin")
	if err != nil {
		panic(err)
	}
	binary_ = filepath.Join(dir, "pheromone")
	out, err := exec.Command("go", "build", "-o", binary_, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// proc starts the binary with args; its output goes to the test log.
func proc(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(binary_, args...)
	logf, err := os.Create(filepath.Join(t.TempDir(), "out.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_, _ = cmd.Process.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("output of %v:\n%s", args, b)
		}
	})
	return cmd
}

func waitPort(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not open", addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

const restartApp = `
app: restart
sources:
  - name: events
    topic: events
    partitions: 2
    schema: [{name: id, type: int64}, {name: user, type: string}]
    key: user
    bucket: events
buckets:
  - name: events
triggers:
  - {name: each, bucket: events, primitive: immediate, function: pass}
  - {name: seven, bucket: events, primitive: by_batch_size, count: 7, function: batch, incremental: false}
  - {name: seven_folded, bucket: events, primitive: by_batch_size, count: 7, function: batch_folded}
functions:
  - {name: pass, kind: emit, outputs: [copy]}
  - name: batch
    kind: aggregate
    aggregates: [{name: n, op: count}, {name: lo, op: min, column: id}, {name: hi, op: max, column: id}]
    outputs: [batches]
  - name: batch_folded
    kind: aggregate
    aggregates: [{name: n, op: count}, {name: lo, op: min, column: id}, {name: hi, op: max, column: id}]
    outputs: [batches_folded]
sinks:
  - {name: copy, topic: copy}
  - {name: batches, topic: batches}
  - {name: batches_folded, topic: batches-folded}
`

// hardRestartApp is restartApp with event time (ts) and an event-time
// window that keeps only its running aggregate.
var hardRestartApp = strings.NewReplacer(
	"{name: user, type: string}]\n    key: user\n", "{name: user, type: string}, {name: ts, type: int64}]\n    key: user\n    event_time: ts\n",
	"function: batch_folded}\n", "function: batch_folded}\n  - {name: second, bucket: events, primitive: by_time, window: 1s, time: event, function: per_second}\n",
	"    outputs: [batches_folded]\n", "    outputs: [batches_folded]\n"+`  - name: per_second
    kind: aggregate
    aggregates: [{name: n, op: count}, {name: lo, op: min, column: id}, {name: hi, op: max, column: id}]
    outputs: [seconds]
`,
	"topic: batches-folded}\n", "topic: batches-folded}\n  - {name: seconds, topic: seconds}\n",
).Replace(restartApp)

// TestHardRestart kills the node with SIGKILL mid-stream, restarts it on the
// same data dir, and checks that every input is reflected in the output
// (at-least-once to sinks), that count batches are exactly the ones an
// uninterrupted run makes (trigger state and offsets committed together),
// and so are event-time windows that keep only their running aggregate,
// and that the state's offsets and pending objects match the input.
func TestHardRestart(t *testing.T) {
	const perPartition = 6000
	brokerAddr := freeAddr(t)
	proc(t, "broker", "--addr", brokerAddr, "--data-dir", t.TempDir())
	waitPort(t, brokerAddr)
	dir := t.TempDir()
	appFile := filepath.Join(dir, "app.yaml")
	if err := os.WriteFile(appFile, []byte(hardRestartApp), 0o644); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(hardRestartApp, "event_time: ts") || !strings.Contains(hardRestartApp, "function: per_second") ||
		!strings.Contains(hardRestartApp, "outputs: [seconds]") || !strings.Contains(hardRestartApp, "topic: seconds") {
		t.Fatalf("hardRestartApp did not take its changes:\n%s", hardRestartApp)
	}
	dataDir := filepath.Join(dir, "data")
	runArgs := []string{"run", "-f", appFile, "--brokers", brokerAddr, "--data-dir", dataDir, "--http", "127.0.0.1:0"}
	node := proc(t, runArgs...)

	cl, err := kgo.NewClient(kgo.SeedBrokers(brokerAddr), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	// Produce steadily in the background: ids 0..2*perPartition-1, id%2 is
	// the partition.
	produced := make(chan error, 1)
	go func() {
		for start := 0; start < 2*perPartition; start += 200 {
			var recs []*kgo.Record
			for id := start; id < start+200; id++ {
				recs = append(recs, &kgo.Record{Topic: "events", Partition: int32(id % 2),
					Value: fmt.Appendf(nil, `{"id":%d,"user":"u%d","ts":%d}`, id, id%13, 10*id)})
			}
			if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
				produced <- err
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
		produced <- nil
	}()

	out := newReader(t, brokerAddr, "copy")
	waitFor(t, 60*time.Second, "first outputs before the kill", func() bool { return out.poll() >= 2000 })
	if err := node.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_, _ = node.Process.Wait()
	killedAt := out.count()
	node = proc(t, runArgs...)
	if err := <-produced; err != nil {
		t.Fatal(err)
	}
	waitFor(t, 90*time.Second, "every input in the output", func() bool {
		out.poll()
		return out.distinct() == 2*perPartition
	})
	dups := out.count() - out.distinct()
	t.Logf("killed after %d outputs; %d outputs, %d distinct, %d duplicates", killedAt, out.count(), out.distinct(), dups)

	// Batches: exactly the chunks of 7 of each partition's ids, in order.
	want := map[string]bool{}
	for p := 0; p < 2; p++ {
		for k := 0; k+7 <= perPartition; k += 7 {
			lo, hi := 2*k+p, 2*(k+6)+p
			want[fmt.Sprintf(`{"n":7,"lo":%d,"hi":%d}`, lo, hi)] = true
		}
	}
	// The same batches from the trigger that keeps only each batch's
	// running aggregate (committed with the offsets like the objects).
	for _, topic := range []string{"batches", "batches-folded"} {
		batches := newReader(t, brokerAddr, topic)
		waitFor(t, 30*time.Second, "every batch of "+topic, func() bool { batches.poll(); return batches.distinct() >= len(want) })
		for v := range batches.seen {
			if !want[v] {
				t.Errorf("%s: unexpected batch %s (a batch mixed objects across the restart)", topic, v)
			}
		}
		if batches.distinct() != len(want) {
			t.Errorf("%s: %d distinct, want %d", topic, batches.distinct(), len(want))
		}
	}

	// Event-time seconds: ids 100k..100k+99 (ts = 10*id), 50 per partition;
	// the last second of each partition may still be open.
	seconds := newReader(t, brokerAddr, "seconds")
	last := 2 * perPartition / 100
	secondOf := func(p, k int) string {
		start, end := time.UnixMilli(int64(1000*k)).UTC(), time.UnixMilli(int64(1000*(k+1))).UTC()
		return fmt.Sprintf(`{"window_start":"%s","window_end":"%s","n":50,"lo":%d,"hi":%d}`,
			start.Format("2006-01-02T15:04:05.000Z"), end.Format("2006-01-02T15:04:05.000Z"), 100*k+p, 100*k+98+p)
	}
	waitFor(t, 30*time.Second, "every closed second", func() bool { seconds.poll(); return seconds.distinct() >= 2*(last-1) })
	for p := 0; p < 2; p++ {
		for k := 0; k < last-1; k++ {
			if seconds.seen[secondOf(p, k)] == 0 {
				t.Errorf("second %d of partition %d: missing", k, p)
			}
		}
	}
	for v := range seconds.seen {
		var k, p int
		if i := strings.Index(v, `"lo":`); i >= 0 {
			if _, err := fmt.Sscanf(v[i:], `"lo":%d`, &k); err == nil {
				p = k % 100
			}
		}
		if k/100 >= last || v != secondOf(p, k/100) {
			t.Errorf("seconds: unexpected window %s (a window's aggregate mixed objects across the restart)", v)
		}
	}

	// Stop softly and check the committed state against the input.
	if err := node.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if _, err := node.Process.Wait(); err != nil {
		t.Fatal(err)
	}
	st, err := pebblestore.Open(filepath.Join(dataDir, "state"), pebblestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for p := int32(0); p < 2; p++ {
		v, err := st.Get(engine.OffsetKey("restart", "events", p))
		if err != nil {
			t.Fatal(err)
		}
		if off := binary.BigEndian.Uint64(v); off != perPartition {
			t.Errorf("partition %d: committed offset %d, want %d", p, off, perPartition)
		}
		tr, _ := triggers.New(triggers.Spec{Name: "seven", Primitive: triggers.ByBatchSize, Count: 7}, 0)
		raw, err := st.Get(engine.TriggerKey("restart", "events", p, "seven"))
		if err != nil {
			t.Fatal(err)
		}
		if err := tr.UnmarshalState(raw, 0); err != nil {
			t.Fatal(err)
		}
		if got, want := tr.Pending(), perPartition%7; got != want {
			t.Errorf("partition %d: %d objects pending in by_batch_size, want %d", p, got, want)
		}
		folded, _ := triggers.New(triggers.Spec{Name: "seven_folded", Primitive: triggers.ByBatchSize, Count: 7, Fold: true}, 0)
		if raw, err = st.Get(engine.TriggerKey("restart", "events", p, "seven_folded")); err != nil {
			t.Fatal(err)
		}
		if err := folded.UnmarshalState(raw, 0); err != nil {
			t.Fatal(err)
		}
		if got, want := folded.Pending(), perPartition%7; got != want {
			t.Errorf("partition %d: %d objects folded into the open batch, want %d", p, got, want)
		}
		var held uint64
		_ = st.Scan(engine.BucketChunkPrefix("restart", "events", p), func(k, _ []byte) error {
			first, end := engine.ChunkRange(k)
			if end > tr.Low() {
				held += end - max(first, tr.Low())
			}
			return nil
		})
		if held != perPartition%7 {
			t.Errorf("partition %d: chunks hold %d pending objects, want %d", p, held, perPartition%7)
		}
	}
}

// reader consumes a topic from the start and counts values.
type reader struct {
	t    *testing.T
	cl   *kgo.Client
	seen map[string]int
	n    int
}

func newReader(t *testing.T, broker, topic string) *reader {
	cl, err := kgo.NewClient(kgo.SeedBrokers(broker), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return &reader{t: t, cl: cl, seen: map[string]int{}}
}

func (r *reader) poll() int {
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	r.cl.PollFetches(ctx).EachRecord(func(rec *kgo.Record) {
		r.seen[string(rec.Value)]++
		r.n++
	})
	return r.n
}

func (r *reader) count() int    { return r.n }
func (r *reader) distinct() int { return len(r.seen) }

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestKcatInterop feeds a running `pheromone run` (embedded broker) with
// kcat and reads its output with kcat: an independent Kafka client.
func TestKcatInterop(t *testing.T) {
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		t.Skip("kcat not installed (apt-get install -y kcat); .ci/run installs it")
	}
	dir := t.TempDir()
	appFile := filepath.Join(dir, "app.yaml")
	app := strings.Replace(restartApp, "app: restart", "app: kcat", 1)
	if err := os.WriteFile(appFile, []byte(app), 0o644); err != nil {
		t.Fatal(err)
	}
	broker := freeAddr(t)
	proc(t, "run", "-f", appFile, "--data-dir", filepath.Join(dir, "data"), "--http", "127.0.0.1:0", "--embedded-broker", broker)
	waitPort(t, broker)

	var in strings.Builder
	var want []string
	for id := 0; id < 50; id++ {
		v := fmt.Sprintf(`{"id":%d,"user":"u%d"}`, id, id%5)
		in.WriteString(v + "\n")
		want = append(want, v)
	}
	// The topic exists once the node created it; retry until kcat succeeds.
	waitFor(t, 30*time.Second, "kcat produce", func() bool {
		cmd := exec.Command(kcat, "-b", broker, "-t", "events", "-P", "-K", ":")
		cmd.Stdin = strings.NewReader(keyed(in.String()))
		return cmd.Run() == nil
	})
	var got []string
	waitFor(t, 60*time.Second, "kcat consume", func() bool {
		out, err := exec.Command(kcat, "-b", broker, "-t", "copy", "-C", "-e", "-o", "beginning", "-q").Output()
		if err != nil {
			return false
		}
		got = nil
		sc := bufio.NewScanner(strings.NewReader(string(out)))
		for sc.Scan() {
			if sc.Text() != "" {
				got = append(got, sc.Text())
			}
		}
		return len(got) >= len(want)
	})
	sort.Strings(got)
	sort.Strings(want)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("kcat read:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// keyed prefixes every line with its user as the Kafka key ("key:value").
func keyed(lines string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimSpace(lines), "\n") {
		i := strings.Index(l, `"user":"`)
		user := l[i+8 : len(l)-2]
		b.WriteString(user + ":" + l + "\n")
	}
	return b.String()
}
