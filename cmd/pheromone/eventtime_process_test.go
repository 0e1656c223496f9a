package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Event time under operations: a seeded workload with bounded disorder, a
// few events far too late and a few malformed lines, counted independently
// in plain Go below, fed at a steady rate while node processes are
// SIGKILLed, stopped (SIGSTOP) past the idle timeout, restarted after long
// downtimes and moved between nodes. The window records that come out of
// Kafka must equal the plain-Go count: at-least-once may repeat whole
// identical records, exactly-once (read_committed) may not.
//
// Bugs pinned: the time a node was down (or stopped, or behind the log end)
// counted as idle time, so windows open at a crash fired on restart with
// part of their data and the backlog was dropped as late; and watermarks did
// not travel through repartition topics, so most of an unkeyed stream was
// dropped as late in a partition_by bucket.

const etWindow = 10 * time.Second

// etApp counts events per key in 10 s event-time windows. Keyed: the
// window runs on the source bucket. Repartitioned: events arrive unkeyed
// and are put into a bucket with partition_by key.
func etApp(guarantee string, repartitioned bool) string {
	app := `
app: et
kafka:
  guarantee: ` + guarantee + `
  session_timeout: 3s
sources:
  - name: events
    topic: events
    partitions: 4
    schema: [{name: id, type: int64}, {name: key, type: string}, {name: ts, type: timestamp}]
    event_time: ts
    bucket: events
buckets:
  - {name: events}
triggers:
  - name: per10s
    bucket: events
    primitive: by_time
    time: event
    window: 10s
    out_of_orderness: 2s
    idle_timeout: 3s
    function: count
functions:
  - name: count
    kind: aggregate
    group_by: [key]
    aggregates: [{name: n, op: count}, {name: lo, op: min, column: id}, {name: hi, op: max, column: id}]
    outputs: [windows]
sinks:
  - {name: windows, topic: windows, key: key}
`
	if repartitioned {
		app = strings.NewReplacer(
			"  - {name: events}\n", "  - {name: events}\n  - {name: by_key, partition_by: key, event_time: ts}\n",
			"triggers:\n  - name: per10s\n    bucket: events", "triggers:\n  - {name: each, bucket: events, primitive: immediate, function: rekey}\n  - name: per10s\n    bucket: by_key",
			"functions:\n", "functions:\n  - {name: rekey, kind: emit, outputs: [by_key]}\n",
		).Replace(app)
	}
	return app
}

// etWorkload is the seeded input: per partition, events whose event times
// advance 40 ms apart with up to 1.5 s of disorder (the app allows 2 s), one
// in 700 far too late (30 s behind), one in 900 malformed, and a last event
// an hour ahead that closes every window (its own never fires).
type etWorkload struct {
	parts  [][]etRecord
	want   map[etKey]etWin
	late   int
	broken int
}

type etRecord struct {
	key, value []byte
}

type etKey struct {
	Key   string
	Start int64 // window start, unix ms
}

type etWin struct{ N, Lo, Hi int64 }

// With mixed keys every partition carries every key (the repartitioned
// case); otherwise the keys of partition p are p's alone.
func newETWorkload(seed uint64, partitions, perPartition int, mixed bool) *etWorkload {
	rnd := rand.New(rand.NewPCG(seed, 0xe7))
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	w := &etWorkload{parts: make([][]etRecord, partitions), want: map[etKey]etWin{}}
	id := int64(0)
	for p := range w.parts {
		var maxTs int64 = -1
		for i := 0; i < perPartition; i++ {
			if rnd.IntN(900) == 0 {
				w.parts[p] = append(w.parts[p], etRecord{value: []byte(fmt.Sprintf(`{"id":%d,"key":"k`, id))})
				w.broken++
				id++
			}
			ts := base + int64(i)*40 - rnd.Int64N(1500)
			if i > 1500 && rnd.IntN(700) == 0 {
				ts = maxTs - 30_000 // far too late: all its windows closed long ago
			}
			key := fmt.Sprintf("k%02d", rnd.IntN(12)*partitions+p) // keys of partition p
			if mixed {
				key = fmt.Sprintf("k%02d", rnd.IntN(12*partitions))
			}
			w.add(p, id, key, ts, &maxTs)
			id++
		}
		flush := maxTs + time.Hour.Milliseconds()
		w.parts[p] = append(w.parts[p], etRecord{key: []byte("flush"), value: []byte(fmt.Sprintf(`{"id":%d,"key":"flush","ts":%d}`, id, flush))})
		id++
	}
	return w
}

// add appends one event and counts it the way a correct engine must: late
// when its window had closed in its partition's stream (watermark = the
// largest event time before it - 2 s), else in its window.
func (w *etWorkload) add(p int, id int64, key string, ts int64, maxTs *int64) {
	w.parts[p] = append(w.parts[p], etRecord{key: []byte(key), value: []byte(fmt.Sprintf(`{"id":%d,"key":%q,"ts":%d}`, id, key, ts))})
	start := ts - ((ts%etWindow.Milliseconds())+etWindow.Milliseconds())%etWindow.Milliseconds()
	if *maxTs >= 0 && start+etWindow.Milliseconds() <= *maxTs-2000 {
		w.late++
	} else {
		k := etKey{key, start}
		c, ok := w.want[k]
		if !ok {
			c = etWin{Lo: id, Hi: id}
		}
		c.N++
		c.Lo, c.Hi = min(c.Lo, id), max(c.Hi, id)
		w.want[k] = c
	}
	*maxTs = max(*maxTs, ts)
}

func (w *etWorkload) total() int {
	n := 0
	for _, p := range w.parts {
		n += len(p)
	}
	return n
}

// feed produces the workload at a steady rate (about rate records/s over
// all partitions), partition p's records to partition p, without a Kafka
// key when unkeyed is set. sent counts records acknowledged; done is closed
// at the end.
type feeder struct {
	sent atomic.Int64
	done chan struct{}
	err  error
}

func feed(t *testing.T, broker string, w *etWorkload, rate int, unkeyed bool) *feeder {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(broker), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	f := &feeder{done: make(chan struct{})}
	go func() {
		defer close(f.done)
		defer cl.Close()
		const batch = 100 // per partition
		next := make([]int, len(w.parts))
		tick := time.NewTicker(time.Duration(batch*len(w.parts)) * time.Second / time.Duration(rate))
		defer tick.Stop()
		for {
			var recs []*kgo.Record
			for p := range w.parts {
				for i := next[p]; i < min(next[p]+batch, len(w.parts[p])); i++ {
					r := w.parts[p][i]
					key := r.key
					if unkeyed {
						key = nil
					}
					recs = append(recs, &kgo.Record{Topic: "events", Partition: int32(p), Key: key, Value: r.value})
				}
				next[p] = min(next[p]+batch, len(w.parts[p]))
			}
			if len(recs) == 0 {
				return
			}
			if f.err = cl.ProduceSync(context.Background(), recs...).FirstErr(); f.err != nil {
				return
			}
			f.sent.Add(int64(len(recs)))
			<-tick.C
		}
	}()
	return f
}

// windowReader reads the window records (read_committed for exactly-once).
type windowReader struct {
	cl    *kgo.Client
	got   map[etKey][]etWin
	total int
}

func newWindowReader(t *testing.T, broker string, committed bool) *windowReader {
	opts := []kgo.Opt{kgo.SeedBrokers(broker), kgo.ConsumeTopics("windows"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(50 * time.Millisecond)}
	if committed {
		opts = append(opts, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return &windowReader{cl: cl, got: map[etKey][]etWin{}}
}

func (r *windowReader) poll(t *testing.T) int {
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	r.cl.PollFetches(ctx).EachRecord(func(rec *kgo.Record) {
		var v struct {
			Key         string    `json:"key"`
			WindowStart time.Time `json:"window_start"`
			N, Lo, Hi   int64
		}
		if err := json.Unmarshal(rec.Value, &v); err != nil {
			t.Errorf("window record %s: %v", rec.Value, err)
			return
		}
		k := etKey{v.Key, v.WindowStart.UnixMilli()}
		r.got[k] = append(r.got[k], etWin{v.N, v.Lo, v.Hi})
		r.total++
	})
	return r.total
}

// complete reports whether every expected window arrived.
func (r *windowReader) complete(w *etWorkload) bool {
	for k := range w.want {
		if len(r.got[k]) == 0 {
			return false
		}
	}
	return true
}

// check compares what arrived with the plain-Go count: no missing, wrong or
// extra window; duplicates (whole identical records) only if allowed.
func (r *windowReader) check(t *testing.T, w *etWorkload, dupsAllowed bool) {
	t.Helper()
	var missing, wrong, extra, dups int
	var examples []string
	note := func(s string) {
		if len(examples) < 8 {
			examples = append(examples, s)
		}
	}
	for k, want := range w.want {
		got := r.got[k]
		if len(got) == 0 {
			missing++
			note(fmt.Sprintf("missing %s@%d %+v", k.Key, k.Start, want))
			continue
		}
		for _, g := range got {
			if g != want {
				wrong++
				note(fmt.Sprintf("wrong %s@%d: got %+v, want %+v", k.Key, k.Start, g, want))
			}
		}
		dups += len(got) - 1
	}
	for k, got := range r.got {
		if _, ok := w.want[k]; !ok && k.Key != "flush" {
			// (The windows of the closing events fire only once idleness
			// has moved the watermark an hour on.)
			extra += len(got)
			note(fmt.Sprintf("unexpected %s@%d %+v", k.Key, k.Start, got))
		}
	}
	t.Logf("%d windows expected, %d records read: %d missing, %d wrong, %d extra, %d duplicates",
		len(w.want), r.total, missing, wrong, extra, dups)
	if missing+wrong+extra > 0 || (!dupsAllowed && dups > 0) {
		t.Errorf("window records differ from the independent count:\n  %s", strings.Join(examples, "\n  "))
	}
}

// etNode is one `pheromone run` process of the test app.
type etNode struct {
	t    *testing.T
	args []string
	http string
	cmd  *os.Process
}

func startETNode(t *testing.T, appFile, broker, dataDir string) *etNode {
	n := &etNode{t: t, http: freeAddr(t)}
	n.args = []string{"run", "-f", appFile, "--brokers", broker, "--data-dir", dataDir, "--http", n.http}
	n.start()
	return n
}

func (n *etNode) start() {
	n.cmd = proc(n.t, n.args...).Process
	waitPort(n.t, n.http)
}

func (n *etNode) kill() {
	_ = n.cmd.Signal(syscall.SIGKILL)
	_, _ = n.cmd.Wait()
}

// lateDropped sums the objects the window trigger dropped as late over the
// partitions, as the bucket query reports them from the committed state,
// and reports whether all four partitions answered (and, with progress,
// showed their watermark and idle state).
func lateDropped(t *testing.T, httpAddr, bucket string, progress bool) (int, bool) {
	resp, err := http.Get("http://" + httpAddr + "/v1/apps/et/buckets/" + bucket + "?limit=1")
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var v struct {
		Partitions []struct {
			Partition int32
			Triggers  []struct {
				Name      string
				Dropped   int
				Watermark *time.Time
				Idle      *bool
			}
		}
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &v) != nil {
		return 0, false
	}
	n := 0
	seen := map[int32]bool{}
	for _, p := range v.Partitions {
		seen[p.Partition] = true
		for _, tr := range p.Triggers {
			if tr.Name == "per10s" {
				n += tr.Dropped
				if progress && (tr.Watermark == nil || tr.Idle == nil) {
					t.Errorf("partition %d: the bucket query shows no watermark or idle state: %s", p.Partition, body)
				}
			}
		}
	}
	return n, len(seen) == 4
}

// deadLetters counts distinct dead-lettered input offsets.
func deadLetters(t *testing.T, broker string, want int) int {
	cl, err := kgo.NewClient(kgo.SeedBrokers(broker), kgo.ConsumeTopics("et.dlq"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	seen := map[string]bool{}
	deadline := time.Now().Add(10 * time.Second)
	for len(seen) < want && time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			var p, o string
			for _, h := range r.Headers {
				switch h.Key {
				case "pheromone.partition":
					p = string(h.Value)
				case "pheromone.offset":
					o = string(h.Value)
				}
			}
			seen[p+"/"+o] = true
		})
		cancel()
	}
	return len(seen)
}

func writeETApp(t *testing.T, guarantee string, repartitioned bool) string {
	f := filepath.Join(t.TempDir(), "app.yaml")
	if err := os.WriteFile(f, []byte(etApp(guarantee, repartitioned)), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestEventTimeExactUnderCrashes: one node, fed at a steady rate, is killed
// during the input and stays down while the input keeps arriving (longer
// than the idle timeout), is stopped with SIGSTOP past the idle timeout
// while input arrives (so it wakes up behind the log end), and is killed
// again and left down well past the idle timeout. Every window must equal
// the independent count.
func TestEventTimeExactUnderCrashes(t *testing.T) {
	for _, g := range []string{"at_least_once", "exactly_once"} {
		t.Run(g, func(t *testing.T) {
			t.Parallel()
			testEventTimeCrashes(t, g, false)
		})
	}
}

// TestEventTimeRepartitionedExact: unkeyed input, windows on a bucket with
// partition_by (watermarks merged through the repartition topic), with the
// same crashes; exactly-once, read_committed: exactly one exact record per
// window.
func TestEventTimeRepartitionedExact(t *testing.T) {
	t.Parallel()
	testEventTimeCrashes(t, "exactly_once", true)
}

func testEventTimeCrashes(t *testing.T, guarantee string, repartitioned bool) {
	w := newETWorkload(7, 4, 5000, repartitioned)
	broker := freeAddr(t)
	proc(t, "broker", "--addr", broker, "--data-dir", t.TempDir())
	waitPort(t, broker)
	appFile := writeETApp(t, guarantee, repartitioned)
	node := startETNode(t, appFile, broker, filepath.Join(t.TempDir(), "data"))
	eos := guarantee == "exactly_once"
	out := newWindowReader(t, broker, eos)
	waitFor(t, 60*time.Second, "the node ready", func() bool {
		_, ok := lateDropped(t, node.http, bucketOf(repartitioned), false)
		return ok
	})

	in := feed(t, broker, w, 2000, repartitioned)
	total := int64(w.total())
	// sentAfter waits until the feeder has sent n more records: input that
	// arrives while the node is down or stopped.
	sentAfter := func(what string, n int64) {
		from := in.sent.Load()
		waitFor(t, 60*time.Second, what, func() bool { return in.sent.Load() >= min(from+n, total) })
	}
	outputs := func(what string, n int) {
		from := out.total
		waitFor(t, 60*time.Second, what, func() bool { return out.poll(t) >= from+n })
	}

	outputs("windows before the first kill", 20)
	node.kill()
	sentAfter("input while the node is down (4 s > idle_timeout)", 8000)
	node.start()

	outputs("windows after the restart", 20)
	_ = node.cmd.Signal(syscall.SIGSTOP)
	sentAfter("input while the node is stopped (4 s > idle_timeout)", 8000)
	_ = node.cmd.Signal(syscall.SIGCONT)

	outputs("windows after the stop", 20)
	node.kill()
	<-in.done
	if in.err != nil {
		t.Fatal(in.err)
	}
	// A long downtime after the end of the input: the wall clock moves on
	// (the thing under test), nothing else does.
	time.Sleep(7 * time.Second)
	node.start()

	waitFor(t, 90*time.Second, "every window", func() bool { out.poll(t); return out.complete(w) })
	// Give stray records (duplicates beyond what was awaited) a moment.
	for settle := time.Now().Add(time.Second); time.Now().Before(settle); {
		out.poll(t)
	}
	out.check(t, w, !eos)

	var dropped int
	waitFor(t, 30*time.Second, "the late count committed", func() bool {
		d, ok := lateDropped(t, node.http, bucketOf(repartitioned), true)
		dropped = d
		return ok && d >= w.late
	})
	if dropped != w.late {
		t.Errorf("dropped as late: %d, want %d", dropped, w.late)
	}
	if got := deadLetters(t, broker, w.broken); got != w.broken {
		t.Errorf("malformed records dead-lettered: %d distinct, want %d", got, w.broken)
	}
}

func bucketOf(repartitioned bool) string {
	if repartitioned {
		return "by_key"
	}
	return "events"
}

// TestEventTimeRebalanceExact: two nodes share the partitions; one is
// killed mid-window, its partitions move to the other (restored from the
// changelog) while input keeps arriving, then it comes back and takes its
// share again. Windows equal the independent count (at-least-once: whole
// identical duplicates allowed; exactly-once: each once).
func TestEventTimeRebalanceExact(t *testing.T) {
	for _, g := range []string{"at_least_once", "exactly_once"} {
		t.Run(g, func(t *testing.T) {
			t.Parallel()
			testEventTimeRebalance(t, g)
		})
	}
}

func testEventTimeRebalance(t *testing.T, guarantee string) {
	eos := guarantee == "exactly_once"
	w := newETWorkload(11, 4, 5000, false)
	broker := freeAddr(t)
	proc(t, "broker", "--addr", broker, "--data-dir", t.TempDir())
	waitPort(t, broker)
	appFile := writeETApp(t, guarantee, false)
	a := startETNode(t, appFile, broker, filepath.Join(t.TempDir(), "a"))
	b := startETNode(t, appFile, broker, filepath.Join(t.TempDir(), "b"))
	owns := func(n *etNode) int {
		resp, err := http.Get("http://" + n.http + "/readyz")
		if err != nil {
			return 0
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return 0
		}
		s := string(body)
		i, j := strings.Index(s, "["), strings.Index(s, "]")
		if i < 0 || j < i {
			return 0
		}
		return len(strings.Fields(s[i+1 : j]))
	}
	waitFor(t, 60*time.Second, "both nodes own partitions", func() bool { return owns(a) > 0 && owns(b) > 0 })
	out := newWindowReader(t, broker, eos)
	in := feed(t, broker, w, 2000, false)
	waitFor(t, 60*time.Second, "windows before the kill", func() bool { return out.poll(t) >= 40 })
	b.kill()
	waitFor(t, 60*time.Second, "the survivor owns every partition", func() bool { out.poll(t); return owns(a) == 4 })
	from := in.sent.Load()
	waitFor(t, 60*time.Second, "more input", func() bool { out.poll(t); return in.sent.Load() >= min(from+5000, int64(w.total())) })
	b.start()
	waitFor(t, 60*time.Second, "the restarted node owns partitions again", func() bool { out.poll(t); return owns(b) > 0 })
	<-in.done
	if in.err != nil {
		t.Fatal(in.err)
	}
	waitFor(t, 90*time.Second, "every window", func() bool { out.poll(t); return out.complete(w) })
	for settle := time.Now().Add(time.Second); time.Now().Before(settle); {
		out.poll(t)
	}
	out.check(t, w, !eos)
}
