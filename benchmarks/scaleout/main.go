// Command scaleout measures Pheromone across node processes on this
// machine, against one kfake broker in a child process:
//
//   - throughput with 1, 2 and 3 `pheromone run` processes (at-least-once)
//     and with exactly_once, each as a ratio to the raw franz-go
//     consume→produce loop measured right before it;
//
//   - failover: a partition holding -state-mb of bucket state; its node is
//     killed with SIGKILL and the time until the partition processes again
//     on the other node (session timeout, rebalance, restore) is measured,
//     with and without a standby replica;
//
//   - restore rate: changelog MB/s applied into Pebble, against reading the
//     same changelog partition raw with franz-go.
//
//     go run ./benchmarks/scaleout -n 400000 -state-mb 100 -out benchmarks/scaleout-results.md
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pheromone-go/pheromone/benchmarks/internal/bench"
	"github.com/pheromone-go/pheromone/connectors/generator"
	"github.com/pheromone-go/pheromone/connectors/kafka"
)

func main() {
	bench.ServeBrokerIfChild()
	n := flag.Int("n", 400_000, "records per throughput run")
	stateMB := flag.Int("state-mb", 100, "bucket state of the failover partition, in MB")
	out := flag.String("out", "", "also write the Markdown report to this file")
	skip := flag.String("skip", "", "comma-separated sections to skip: throughput, latency, failover")
	flag.Parse()
	var report bytes.Buffer
	if err := run(&report, *n, *stateMB, *skip); err != nil {
		fmt.Fprintln(os.Stderr, "scaleout:", err)
		os.Exit(1)
	}
	fmt.Print(report.String())
	if *out != "" {
		if err := os.WriteFile(*out, report.Bytes(), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
}

var (
	binary  string
	workDir string
	brokers []string
)

func run(w io.Writer, n, stateMB int, skip string) (err error) {
	if workDir, err = os.MkdirTemp("", "pheromone-scaleout"); err != nil {
		return err
	}
	defer func() {
		if err == nil {
			os.RemoveAll(workDir)
		}
	}()
	binary = filepath.Join(workDir, "pheromone")
	fmt.Fprintln(os.Stderr, "building pheromone...")
	if out, err := exec.Command("go", "build", "-o", binary, "./cmd/pheromone").CombinedOutput(); err != nil {
		return fmt.Errorf("build: %v\n%s", err, out)
	}
	var stop func()
	if brokers, stop, err = bench.StartBroker(); err != nil {
		return err
	}
	defer stop()
	fmt.Fprintf(w, "# Scale-out, exactly-once and failover\n\n%s, GOMAXPROCS=%d, %s; one kfake broker in a child process; nodes are `pheromone run` processes.\n\n",
		time.Now().Format("2006-01-02"), runtime.GOMAXPROCS(0), runtime.Version())
	if !strings.Contains(skip, "throughput") {
		if err := throughput(w, n); err != nil {
			return err
		}
	}
	if !strings.Contains(skip, "latency") {
		if err := latency(w); err != nil {
			return err
		}
	}
	if !strings.Contains(skip, "failover") {
		if err := failover(w, stateMB); err != nil {
			return err
		}
	}
	return nil
}

// node is one `pheromone run` process.
type node struct {
	cmd  *exec.Cmd
	http string
	log  string
}

func startNode(appFile, name string) (*node, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	logf, err := os.Create(filepath.Join(workDir, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(binary, "run", "-f", appFile, "--brokers", strings.Join(brokers, ","),
		"--data-dir", filepath.Join(workDir, name), "--http", addr)
	cmd.Stdout, cmd.Stderr = logf, logf
	if dir := os.Getenv("SCALEOUT_PROFILES"); dir != "" {
		cmd.Env = append(os.Environ(), "PHEROMONE_CPUPROFILE="+filepath.Join(dir, name+".pprof"))
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return &node{cmd: cmd, http: addr, log: logf.Name()}, nil
}

func (n *node) stop() {
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _, _ = n.cmd.Process.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = n.cmd.Process.Kill()
		<-done
	}
}

func (n *node) kill() {
	_ = n.cmd.Process.Kill()
	_, _ = n.cmd.Process.Wait()
}

// partitions returns what the node's /readyz says it runs (nil when not ready).
func (n *node) partitions() []string {
	resp, err := http.Get("http://" + n.http + "/readyz")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`partitions \[([0-9 ]*)\]`).FindSubmatch(b)
	if resp.StatusCode != http.StatusOK || m == nil {
		return nil
	}
	return strings.Fields(string(m[1]))
}

func writeApp(name, yaml string) (string, error) {
	p := filepath.Join(workDir, name+".yaml")
	return p, os.WriteFile(p, []byte(yaml), 0o644)
}

// outputCount sums the end offsets of topic (committed ones for read_committed).
func outputCount(ctx context.Context, adm *kadm.Client, topic string, committed bool) int64 {
	var l kadm.ListedOffsets
	var err error
	if committed {
		l, err = adm.ListCommittedOffsets(ctx, topic)
	} else {
		l, err = adm.ListEndOffsets(ctx, topic)
	}
	if err != nil {
		return 0
	}
	var sum int64
	l.Each(func(o kadm.ListedOffset) {
		if o.Err == nil {
			sum += o.Offset
		}
	})
	return sum
}

const clickSchema = `
    schema:
      - {name: event_id, type: int64}
      - {name: user_id, type: string}
      - {name: page, type: string}
      - {name: action, type: string}
      - {name: duration_ms, type: int64}
      - {name: country, type: string}
      - {name: ts, type: timestamp}
    key: page`

func passApp(name, guarantee string) string { return passAppOn(name, guarantee, "clicks") }

func passAppOn(name, guarantee, topic string) string {
	return fmt.Sprintf(`app: %s
kafka: {guarantee: %s}
sources:
  - name: clicks
    topic: %s
    partitions: 6
%s
    bucket: clicks
buckets: [{name: clicks}]
triggers: [{name: each, bucket: clicks, primitive: immediate, function: keep}]
functions: [{name: keep, kind: filter, expr: "duration_ms >= 0", outputs: [out]}]
sinks: [{name: out, topic: %s-out, key: page, partitions: 6}]
`, name, guarantee, topic, clickSchema, name)
}

func throughput(w io.Writer, n int) error {
	ctx := context.Background()
	if err := kafka.EnsureTopics(ctx, kafka.Plain(brokers...), map[string]int{"clicks": 6}); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "producing %d clickstream records into 6 partitions...\n", n)
	if err := bench.PreloadClicks(ctx, brokers, "clicks", n); err != nil {
		return err
	}
	if _, err := bench.RawLoop(ctx, brokers, "clicks", n); err != nil { // warm-up
		return err
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	fmt.Fprintf(w, "## Throughput across node processes\n\n%d clickstream records in 6 partitions; app: JSON → filter (every record passes) → JSON sink, changelog on. "+
		"Rate = the middle 80%% of the output divided by the time it took (excludes start-up and group join); the raw loop is measured right before each run.\n\n", n)
	fmt.Fprintln(w, "| nodes | guarantee | records/s | raw loop records/s | ratio to raw |")
	fmt.Fprintln(w, "|---|---|---|---|---|")
	runs := []struct {
		nodes int
		g     string
	}{{1, "at_least_once"}, {2, "at_least_once"}, {3, "at_least_once"}, {1, "exactly_once"}, {2, "exactly_once"}, {3, "exactly_once"}}
	for i, r := range runs {
		raw, err := bench.RawLoop(ctx, brokers, "clicks", n)
		if err != nil {
			return err
		}
		name := fmt.Sprintf("tp%d", i)
		appFile, err := writeApp(name, passApp(name, r.g))
		if err != nil {
			return err
		}
		// Created up front: the admin client would cache the topic as
		// missing for a while if the first listing came before the node
		// created it.
		if err := kafka.EnsureTopics(ctx, kafka.Plain(brokers...), map[string]int{name + "-out": 6}); err != nil {
			return err
		}
		var nodes []*node
		for k := 0; k < r.nodes; k++ {
			nd, err := startNode(appFile, fmt.Sprintf("%s-node%d", name, k))
			if err != nil {
				return err
			}
			nodes = append(nodes, nd)
		}
		eos := r.g == "exactly_once"
		var t10, t90 time.Time
		deadline := time.Now().Add(10 * time.Minute)
		for time.Now().Before(deadline) {
			c := outputCount(ctx, adm, name+"-out", eos)
			now := time.Now()
			if t10.IsZero() && c >= int64(n)/10 {
				t10 = now
			}
			if c >= int64(n)*9/10 {
				t90 = now
				break
			}
			bench.Progress(fmt.Sprintf("%d node(s) %s", r.nodes, r.g), c, int64(n))
			time.Sleep(20 * time.Millisecond)
		}
		bench.Progress(fmt.Sprintf("%d node(s) %s", r.nodes, r.g), int64(n), int64(n))
		for _, nd := range nodes {
			nd.stop()
		}
		if t90.IsZero() {
			return fmt.Errorf("%d nodes %s: output did not reach 90%% within 10 minutes (logs in %s)", r.nodes, r.g, workDir)
		}
		rate := float64(n) * 0.8 / t90.Sub(t10).Seconds()
		rawRate := float64(n) / raw.Seconds()
		fmt.Fprintf(w, "| %d | %s | %.0f | %.0f | %.2fx |\n", r.nodes, r.g, rate, rawRate, rate/rawRate)
	}
	fmt.Fprintln(w)
	return nil
}

// latency offers 20,000 records/s for 8 s to one node and measures, for
// every output record, the time from its event timestamp (set when it was
// produced) to when a consumer read it — read_committed for exactly_once.
func latency(w io.Writer) error {
	ctx := context.Background()
	fmt.Fprintln(w, "## End-to-end latency, at-least-once vs exactly-once\n\nOne node, the same filter app, 20,000 records/s offered for 8 s (in 10 ms ticks); latency = read by a consumer (read_committed for exactly_once) − produced. commit_interval 100 ms (the default).")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| guarantee | records | p50 | p99 | max |")
	fmt.Fprintln(w, "|---|---|---|---|---|")
	for i, g := range []string{"at_least_once", "exactly_once"} {
		name := fmt.Sprintf("lat%d", i)
		in := name + "-in"
		if err := kafka.EnsureTopics(ctx, kafka.Plain(brokers...), map[string]int{in: 6, name + "-out": 6}); err != nil {
			return err
		}
		appFile, err := writeApp(name, passAppOn(name, g, in))
		if err != nil {
			return err
		}
		nd, err := startNode(appFile, name+"-node")
		if err != nil {
			return err
		}
		for deadline := time.Now().Add(time.Minute); len(nd.partitions()) == 0; {
			if time.Now().After(deadline) {
				return fmt.Errorf("%s: node not ready (log %s)", name, nd.log)
			}
			time.Sleep(20 * time.Millisecond)
		}
		iso := kgo.ReadUncommitted()
		if g == "exactly_once" {
			iso = kgo.ReadCommitted()
		}
		cons, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(name+"-out"),
			kgo.FetchIsolationLevel(iso), kgo.FetchMaxWait(10*time.Millisecond))
		if err != nil {
			return err
		}
		prod, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ProducerLinger(0))
		if err != nil {
			return err
		}
		const rate, dur = 20_000, 8 * time.Second
		go func() {
			gen := generator.NewClickstream(7)
			t := time.NewTicker(10 * time.Millisecond)
			defer t.Stop()
			for end := time.Now().Add(dur); time.Now().Before(end); <-t.C {
				for k := 0; k < rate/100; k++ {
					v, key := gen.Append(nil, time.Now(), "page")
					prod.Produce(ctx, &kgo.Record{Topic: in, Key: key, Value: v}, nil)
				}
			}
		}()
		want := rate * int(dur/time.Second)
		var lats []time.Duration
		tsRe := regexp.MustCompile(`"ts":"([^"]+)"`)
		for deadline := time.Now().Add(dur + 30*time.Second); len(lats) < want*99/100 && time.Now().Before(deadline); {
			pctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
			fs := cons.PollFetches(pctx)
			cancel()
			now := time.Now()
			fs.EachRecord(func(r *kgo.Record) {
				if m := tsRe.FindSubmatch(r.Value); m != nil {
					if ts, err := time.Parse(time.RFC3339Nano, string(m[1])); err == nil {
						lats = append(lats, now.Sub(ts))
					}
				}
			})
		}
		prod.Close()
		cons.Close()
		nd.stop()
		if len(lats) == 0 {
			return fmt.Errorf("%s: no output (log %s)", name, nd.log)
		}
		slices.Sort(lats)
		fmt.Fprintf(w, "| %s | %d | %s | %s | %s |\n", g, len(lats), bench.Pct(lats, 50).Round(100*time.Microsecond),
			bench.Pct(lats, 99).Round(100*time.Microsecond), lats[len(lats)-1].Round(100*time.Microsecond))
	}
	fmt.Fprintln(w)
	return nil
}

func holdApp(name string, standby int) string {
	return fmt.Sprintf(`app: %s
kafka: {session_timeout: 2s, standby_replicas: %d}
sources:
  - name: in
    topic: %s-in
    partitions: 1
    schema: [{name: id, type: int64}, {name: pad, type: string}]
    bucket: data
buckets: [{name: data, max_objects: 10000000, max_bytes: 2000000000}]
triggers:
  - {name: copy, bucket: data, primitive: immediate, function: pass}
  - {name: never, bucket: data, primitive: by_batch_size, count: 10000000, function: pass}
functions: [{name: pass, kind: project, columns: [{name: id}], outputs: [copies]}]
sinks: [{name: copies, topic: %s-copies, partitions: 1}]
`, name, standby, name, name)
}

func failover(w io.Writer, stateMB int) error {
	fmt.Fprintf(w, "## Failover and restore\n\nOne partition whose bucket holds %d MB of objects (1 KB each, kept by a trigger that never fires; "+
		"an immediate trigger copies each object's id to a sink). Two nodes; the one owning the partition is killed with SIGKILL while probe "+
		"records keep arriving. Failover = SIGKILL → the first probe's copy written by the other node (session timeout 2 s + rebalance + restore + processing). "+
		"Restore rate = changelog bytes applied to Pebble per second of restore; raw = franz-go reading the same changelog partition without applying it, "+
		"first before the kill (the log's first read, as the restore's is) and again after the restore (a second read is faster).\n\n", stateMB)
	fmt.Fprintln(w, "| standby replicas | failover (SIGKILL → processing on the other node) | restored | restore time | restore MB/s | raw changelog read MB/s (first / second read) | ratio to each |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
	for i, standby := range []int{0, 1} {
		if err := failoverRun(w, fmt.Sprintf("hold%d", i), standby, stateMB); err != nil {
			return err
		}
	}
	fmt.Fprintln(w)
	return nil
}

var restoredRe = regexp.MustCompile(`restored from the changelog.*partition=0 .*bytes=(\d+) .*elapsed=(\S+)`)

func failoverRun(w io.Writer, name string, standby, stateMB int) error {
	ctx := context.Background()
	appFile, err := writeApp(name, holdApp(name, standby))
	if err != nil {
		return err
	}
	a, err := startNode(appFile, name+"-a")
	if err != nil {
		return err
	}
	defer a.kill()
	var b *node
	deadline := time.Now().Add(time.Minute)
	for len(a.partitions()) == 0 {
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: first node not ready (log %s)", name, a.log)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if b, err = startNode(appFile, name+"-b"); err != nil {
		return err
	}
	defer b.kill()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ProducerLinger(5*time.Millisecond), kgo.MaxBufferedRecords(50_000))
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	pad := strings.Repeat("x", 1000)
	count := stateMB * 1000
	fmt.Fprintf(os.Stderr, "%s: writing %d MB of state...\n", name, stateMB)
	for i := 0; i < count; i++ {
		cl.Produce(ctx, &kgo.Record{Topic: name + "-in", Value: fmt.Appendf(nil, `{"id":%d,"pad":%q}`, i, pad)}, nil)
	}
	if err := cl.Flush(ctx); err != nil {
		return err
	}
	for outputCount(ctx, adm, name+"-copies", false) < int64(count) {
		bench.Progress(name+" state", outputCount(ctx, adm, name+"-copies", false), int64(count))
		time.Sleep(100 * time.Millisecond)
	}
	bench.Progress(name+" state", int64(count), int64(count))
	owner, other := a, b
	if len(b.partitions()) > 0 {
		owner, other = b, a
	}
	// Wait until the owner's committed state holds every object (the
	// bucket query reads the last commit).
	for deadline := time.Now().Add(time.Minute); heldObjects(owner, name) < int64(count); {
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: state not committed within a minute (log %s)", name, owner.log)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if standby > 0 {
		// The follower applies the changelog as it arrives; its progress is
		// not exported, so give it a moment to take the last cycles.
		time.Sleep(time.Second)
	}
	// The raw read of the changelog before the kill: the first read of it,
	// as the restore's is (a second read of the same log is faster).
	coldMB, err := rawChangelogRead(ctx, name+".changelog")
	if err != nil {
		return err
	}
	before := outputCount(ctx, adm, name+"-copies", false)
	owner.kill()
	killed := time.Now()
	probeCtx, stopProbes := context.WithCancel(ctx)
	go func() {
		for i := 0; probeCtx.Err() == nil; i++ {
			cl.Produce(probeCtx, &kgo.Record{Topic: name + "-in", Value: fmt.Appendf(nil, `{"id":%d,"pad":"probe"}`, -1-i)}, nil)
			time.Sleep(10 * time.Millisecond)
		}
	}()
	var took time.Duration
	for deadline := time.Now().Add(3 * time.Minute); ; {
		if outputCount(ctx, adm, name+"-copies", false) > before {
			took = time.Since(killed)
			break
		}
		if time.Now().After(deadline) {
			stopProbes()
			return fmt.Errorf("%s: no output within 3 minutes of the kill (log %s)", name, other.log)
		}
		time.Sleep(5 * time.Millisecond)
	}
	stopProbes()
	logb, _ := os.ReadFile(other.log)
	restored, restoreTime := int64(0), time.Duration(0)
	if m := restoredRe.FindAllSubmatch(logb, -1); m != nil {
		last := m[len(m)-1]
		restored, _ = strconv.ParseInt(string(last[1]), 10, 64)
		restoreTime, _ = time.ParseDuration(string(last[2]))
	}
	rawMB, err := rawChangelogRead(ctx, name+".changelog")
	if err != nil {
		return err
	}
	rate := "—"
	ratio := "—"
	if restoreTime > 0 && restored > 1e6 {
		r := float64(restored) / 1e6 / restoreTime.Seconds()
		rate = fmt.Sprintf("%.0f", r)
		ratio = fmt.Sprintf("%.2fx / %.2fx", r/coldMB, r/rawMB)
	}
	fmt.Fprintf(w, "| %d | %s | %.1f MB | %s | %s | %.0f / %.0f | %s |\n", standby, took.Round(10*time.Millisecond),
		float64(restored)/1e6, restoreTime, rate, coldMB, rawMB, ratio)
	other.stop()
	return nil
}

// heldObjects is how many objects the node's bucket "data" holds in its
// committed state (-1 when the query fails).
func heldObjects(n *node, app string) int64 {
	resp, err := http.Get("http://" + n.http + "/v1/apps/" + app + "/buckets/data?limit=1")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	var v struct {
		Partitions []struct {
			Held int64 `json:"held"`
		} `json:"partitions"`
	}
	if json.NewDecoder(resp.Body).Decode(&v) != nil || len(v.Partitions) == 0 {
		return -1
	}
	return v.Partitions[0].Held
}

// rawChangelogRead reads partition 0 of topic from the start to its end
// with franz-go and returns MB/s of keys and values.
func rawChangelogRead(ctx context.Context, topic string) (float64, error) {
	acl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return 0, err
	}
	ends, err := kadm.NewClient(acl).ListEndOffsets(ctx, topic)
	acl.Close()
	if err != nil {
		return 0, err
	}
	end, ok := ends.Lookup(topic, 0)
	if !ok || end.Err != nil {
		return 0, errors.New("no end offset for the changelog")
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}),
		kgo.FetchMaxPartitionBytes(32<<20), kgo.FetchMaxBytes(64<<20))
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	start := time.Now()
	var bytes, next int64
	for next < end.Offset {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			bytes += int64(len(r.Key) + len(r.Value))
			next = r.Offset + 1
		})
	}
	return float64(bytes) / 1e6 / time.Since(start).Seconds(), nil
}
