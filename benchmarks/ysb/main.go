// Command ysb runs the Yahoo Streaming Benchmark three ways against the same
// broker in one run and prints one table:
//
//	raw        franz-go consume→produce of the events, no work (the ceiling)
//	franz-go   a hand-written YSB: encoding/json, a map of windows, the
//	           campaigns table in memory — what a user writes without an engine
//	pheromone  examples/ysb on a node (Pebble state, synced commits)
//
// with throughput, ratios, the node's peak RSS and state size, and checks
// that both YSB implementations produce exactly the generator's counts.
//
//	go run ./benchmarks/ysb -n 1000000 -out benchmarks/ysb-results
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pheromone-go/pheromone/benchmarks/internal/bench"
	"github.com/pheromone-go/pheromone/connectors/generator"
	"github.com/pheromone-go/pheromone/connectors/kafka"
	"github.com/pheromone-go/pheromone/engine/app"
)

var (
	loads        string
	loadDuration time.Duration
	micro        bool
)

type row struct {
	Name         string  `json:"name"`
	Seconds      float64 `json:"seconds"`
	EventsPerSec float64 `json:"events_per_sec"`
	PerCore      float64 `json:"events_per_sec_per_core"`
	RatioRaw     float64 `json:"ratio_to_raw"`
	RatioFranzGo float64 `json:"ratio_to_franz_go"`
	Correct      string  `json:"correct"`
	PeakRSSMiB   float64 `json:"peak_rss_mib,omitempty"`
	StateDiskMiB float64 `json:"state_disk_mib,omitempty"`
	ChangelogMiB float64 `json:"changelog_mib,omitempty"`
}

func main() {
	bench.ServeBrokerIfChild()
	n := flag.Int("n", 1_000_000, "events")
	seed := flag.Int64("seed", 7, "generator seed")
	out := flag.String("out", "", "also write the table to OUT.md and OUT.json, and the latency plot to OUT.png")
	flag.StringVar(&loads, "loads", "0.25,0.5,0.75", "offered loads for the latency runs, as fractions of the measured saturation (empty: skip)")
	flag.DurationVar(&loadDuration, "load-duration", 25*time.Second, "how long each latency run offers load")
	flag.BoolVar(&micro, "micro", true, "also run the invocation microbenchmarks (chain, fan-out, data exchange)")
	flag.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the (first) pheromone run to this file")
	flag.BoolVar(&withObjects, "objects", true, "also run examples/ysb with incremental: false (windows keep their objects: the path before incremental aggregates)")
	flag.Parse()
	if err := run(*n, *seed, *out); err != nil {
		fmt.Fprintln(os.Stderr, "ysb:", err)
		os.Exit(1)
	}
}

func step(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func run(n int, seed int64, outPath string) error {
	ctx := context.Background()
	brokers, stop, err := bench.StartBroker()
	if err != nil {
		return err
	}
	defer stop()
	const rate = 10_000 // event-time spacing; all event times lie in the past
	start := time.Now().Add(-time.Duration(n/rate+1) * time.Second)
	gen := generator.NewYSB(seed, start, rate)
	if err := kafka.EnsureCompactedTopics(ctx, kafka.Plain(brokers...), map[string]int{"ysb-campaigns": 1}); err != nil {
		return err
	}
	if err := kafka.EnsureTopics(ctx, kafka.Plain(brokers...), map[string]int{"ad-events": 4}); err != nil {
		return err
	}
	step("producing the campaigns table and %d events", n)
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ProducerLinger(5*time.Millisecond), kgo.MaxBufferedRecords(200_000))
	if err != nil {
		return err
	}
	var failed atomic.Value
	cb := func(_ *kgo.Record, err error) {
		if err != nil {
			failed.Store(err)
		}
	}
	gen.Campaigns(func(k, v []byte) { cl.Produce(ctx, &kgo.Record{Topic: "ysb-campaigns", Key: k, Value: v}, cb) })
	for i := 0; i < n; i++ {
		v, k := gen.Next(nil)
		cl.Produce(ctx, &kgo.Record{Topic: "ad-events", Key: k, Value: v}, cb)
		if i%(n/100+1) == 0 {
			bench.Progress("producing events", int64(i), int64(n))
		}
	}
	if err := cl.Flush(ctx); err != nil {
		return err
	}
	bench.Progress("producing events", int64(n), int64(n))
	cl.Close()
	if err, ok := failed.Load().(error); ok {
		return err
	}
	want := gen.ExpectedLines()
	sort.Strings(want)

	step("raw franz-go loop")
	raw, err := bench.RawLoop(ctx, brokers, "ad-events", n)
	if err != nil {
		return err
	}
	step("pheromone examples/ysb")
	ph, rss, disk, clog, phOK, err := pheromone(ctx, brokers, n, want, true)
	if err != nil {
		return err
	}
	var obj time.Duration
	var objDisk, objLog int64
	var objOK string
	if withObjects {
		step("pheromone examples/ysb, incremental: false")
		if obj, _, objDisk, objLog, objOK, err = pheromone(ctx, brokers, n, want, false); err != nil {
			return err
		}
	}
	step("hand-written franz-go YSB")
	hw, hwOK, err := handWritten(ctx, brokers, n, want)
	if err != nil {
		return err
	}
	cores := float64(runtime.GOMAXPROCS(0))
	mk := func(name string, d time.Duration, ok string) row {
		return row{Name: name, Seconds: d.Seconds(), EventsPerSec: float64(n) / d.Seconds(), PerCore: float64(n) / d.Seconds() / cores,
			RatioRaw: raw.Seconds() / d.Seconds(), RatioFranzGo: hw.Seconds() / d.Seconds(), Correct: ok}
	}
	rows := []row{mk("raw franz-go consume→produce (ceiling)", raw, "n/a"), mk("hand-written franz-go YSB", hw, hwOK), mk("pheromone examples/ysb", ph, phOK)}
	rows[2].PeakRSSMiB, rows[2].StateDiskMiB, rows[2].ChangelogMiB = float64(rss)/(1<<20), float64(disk)/(1<<20), float64(clog)/(1<<20)
	if withObjects {
		r := mk("pheromone examples/ysb, incremental: false (windows keep objects)", obj, objOK)
		r.StateDiskMiB, r.ChangelogMiB = float64(objDisk)/(1<<20), float64(objLog)/(1<<20)
		rows = append(rows, r)
	}
	var md strings.Builder
	fmt.Fprintf(&md, "%d YSB events (%d campaign windows), %d partitions, GOMAXPROCS=%d, %s, kfake in a child process\n\n",
		n, len(want), 4, runtime.GOMAXPROCS(0), runtime.Version())
	md.WriteString("| run | seconds | events/s | events/s per core | ratio to raw | ratio to hand-written | output exact | peak RSS | state on disk | changelog written |\n|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		rssS, diskS, logS := "", "", ""
		if r.PeakRSSMiB > 0 {
			rssS = fmt.Sprintf("%.0f MiB", r.PeakRSSMiB)
		}
		if r.StateDiskMiB > 0 {
			diskS, logS = fmt.Sprintf("%.1f MiB", r.StateDiskMiB), fmt.Sprintf("%.2f MiB", r.ChangelogMiB)
		}
		fmt.Fprintf(&md, "| %s | %.2f | %.0f | %.0f | %.2fx | %.2fx | %s | %s | %s | %s |\n",
			r.Name, r.Seconds, r.EventsPerSec, r.PerCore, r.RatioRaw, r.RatioFranzGo, r.Correct, rssS, diskS, logS)
	}
	var points []latencyPoint
	if loads != "" {
		raw, _ := os.ReadFile("examples/ysb/app.yaml")
		const natural = 10.05 // window 10 s + allowed lateness 0 + 50 ms
		md.WriteString("\nEvent-to-output latency of examples/ysb at offered loads (fractions of the saturation rate above):\n\n")
		md.WriteString("| offered load | events/s | p50 | p99 | windows | target p99 < 2 x natural delay |\n|---|---|---|---|---|---|\n")
		for i, f := range strings.Split(loads, ",") {
			var frac float64
			if _, err := fmt.Sscanf(strings.TrimSpace(f), "%g", &frac); err != nil || frac <= 0 {
				return fmt.Errorf("bad load %q", f)
			}
			rate := int(frac * rows[2].EventsPerSec)
			step("latency at %.0f%% of saturation: %d events/s for %v", frac*100, rate, loadDuration)
			p50, p99, wins, err := latencyRun(ctx, brokers, raw, seed, i+1, rate, loadDuration)
			if err != nil {
				return err
			}
			pt := latencyPoint{Load: frac, Rate: rate, P50: p50.Seconds(), P99: p99.Seconds(), Windows: wins, Natural: natural}
			points = append(points, pt)
			ok := "met"
			if pt.P99 >= 2*natural {
				ok = "NOT met"
			}
			fmt.Fprintf(&md, "| %.0f%% | %d | %.2f s | %.2f s | %d | %s (%.2f s) |\n", frac*100, rate, pt.P50, pt.P99, wins, ok, 2*natural)
		}
		if outPath != "" && len(points) > 0 {
			if err := plot(outPath+".png", points); err != nil {
				return err
			}
			md.WriteString("\n![latency against offered load](" + filepathBase(outPath) + ".png) (blue p50, orange p99, red: the p99 target)\n")
		}
	}
	if micro {
		if err := microbenchmarks(brokers, &md); err != nil {
			return err
		}
	}
	fmt.Print(md.String())
	if outPath != "" {
		if err := os.WriteFile(outPath+".md", []byte(md.String()), 0o644); err != nil {
			return err
		}
		js, _ := json.MarshalIndent(map[string]any{"events": n, "windows": len(want), "rows": rows, "latency": points}, "", "  ")
		if err := os.WriteFile(outPath+".json", js, 0o644); err != nil {
			return err
		}
	}
	return nil
}

var (
	ysbRuns     int
	withObjects bool
	cpuProfile  string
)

// pheromone runs examples/ysb until its committed offsets cover n events,
// then waits for the last windows and checks the output. It returns the
// time, the peak RSS, the state on disk and the bytes written to the
// changelog; incremental false turns the windows' partial aggregates off.
func pheromone(ctx context.Context, brokers []string, n int, want []string, incremental bool) (time.Duration, int64, int64, int64, string, error) {
	raw, err := os.ReadFile("examples/ysb/app.yaml")
	if err != nil {
		return 0, 0, 0, 0, "", fmt.Errorf("run from the repository root: %w", err)
	}
	a, err := app.Parse(raw)
	if err != nil {
		return 0, 0, 0, 0, "", err
	}
	ysbRuns++
	out := "campaign-counts"
	if ysbRuns > 1 {
		// Another app name: another group, repartition topic and
		// changelog; another output topic.
		a.Name = fmt.Sprintf("%s%d", a.Name, ysbRuns)
		out = fmt.Sprintf("%s-%d", out, ysbRuns)
		a.Sinks[0].Topic = out
	}
	if err := a.Validate(); err != nil {
		return 0, 0, 0, 0, "", err
	}
	for i := range a.Triggers {
		a.Triggers[i].Incremental = &incremental
	}
	// A fresh changelog per run: a node with an empty data dir would
	// otherwise restore the previous run's state from it.
	a.Kafka.ChangelogTopic = fmt.Sprintf("%s-%d", a.Kafka.ChangelogTopic, ysbRuns)
	if cpuProfile != "" && ysbRuns == 1 {
		f, err := os.Create(cpuProfile)
		if err != nil {
			return 0, 0, 0, 0, "", err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return 0, 0, 0, 0, "", err
		}
		defer f.Close()
	}
	t0 := time.Now()
	node, err := bench.StartNode(ctx, a, brokers)
	if err != nil {
		return 0, 0, 0, 0, "", err
	}
	node.WaitCommitted("ad-events", int64(n))
	d := time.Since(t0)
	if cpuProfile != "" && ysbRuns == 1 {
		pprof.StopCPUProfile()
	}
	rss := bench.PeakRSS()
	disk := bench.DirBytes(node.Dir) // the open windows' state, at the end of the input
	// The input stopped: the idle timeout lets the last windows close.
	got, err := bench.Collect(ctx, brokers, out, len(want), 60*time.Second)
	if err != nil {
		return 0, 0, 0, 0, "", err
	}
	if err := node.Stop(); err != nil {
		return 0, 0, 0, 0, "", err
	}
	recs, _, err := kafka.ReadFrom(ctx, kafka.Plain(brokers...), a.Kafka.ChangelogTopic, func(int32, int64, int64) int64 { return 0 })
	if err != nil {
		return 0, 0, 0, 0, "", err
	}
	var logged int64
	for _, r := range recs {
		logged += int64(len(r.Key) + len(r.Value))
	}
	return d, rss, disk, logged, verdict(got, want), nil
}

func verdict(got, want []string) string {
	sort.Strings(got)
	if strings.Join(got, "\n") == strings.Join(want, "\n") {
		return fmt.Sprintf("yes (%d windows)", len(want))
	}
	return fmt.Sprintf("NO: %d windows, want %d", len(got), len(want))
}

type event struct {
	AdID      string `json:"ad_id"`
	EventType string `json:"event_type"`
	EventTime int64  `json:"event_time"`
}

type window struct {
	count, last int64
}

type wkey struct {
	campaign string
	start    int64
}

// handWritten is the YSB a franz-go user would write: decode with
// encoding/json, keep views, join in a map, count per campaign window, emit
// a window when the largest event time passed its end by 1 s.
func handWritten(ctx context.Context, brokers []string, n int, want []string) (time.Duration, string, error) {
	if err := kafka.EnsureTopics(ctx, kafka.Plain(brokers...), map[string]int{"hw-counts": 4}); err != nil {
		return 0, "", err
	}
	t0 := time.Now()
	campaigns := map[string]string{}
	tcl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics("ysb-campaigns"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return 0, "", err
	}
	for len(campaigns) < 1000 {
		tcl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			var row struct {
				Ad       string `json:"ad_id"`
				Campaign string `json:"campaign_id"`
			}
			if json.Unmarshal(r.Value, &row) == nil {
				campaigns[row.Ad] = row.Campaign
			}
		})
	}
	tcl.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumerGroup("hand-written-ysb"), kgo.ConsumeTopics("ad-events"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.ProducerLinger(2*time.Millisecond), kgo.DisableAutoCommit())
	if err != nil {
		return 0, "", err
	}
	defer cl.Close()
	windows := map[wkey]*window{}
	// A window closes when every partition's largest event time passed its
	// end by 1 s (one global maximum would close windows that lagging
	// partitions still feed).
	partMax := map[int32]int64{}
	emit := func(k wkey, w *window) {
		v, _ := json.Marshal(map[string]any{"campaign_id": k.campaign, "window_start": ms(k.start), "window_end": ms(k.start + 10_000),
			"count": w.count, "last_update": ms(w.last)})
		cl.Produce(ctx, &kgo.Record{Topic: "hw-counts", Key: []byte(k.campaign), Value: v}, nil)
	}
	for consumed := 0; consumed < n; {
		cl.PollRecords(ctx, 10_000).EachRecord(func(r *kgo.Record) {
			consumed++
			var e event
			defer func() { partMax[r.Partition] = max(partMax[r.Partition], e.EventTime) }()
			if json.Unmarshal(r.Value, &e) != nil || e.EventType != "view" {
				return
			}
			c, ok := campaigns[e.AdID]
			if !ok {
				return
			}
			k := wkey{c, e.EventTime - e.EventTime%10_000}
			w := windows[k]
			if w == nil {
				w = &window{}
				windows[k] = w
			}
			w.count++
			w.last = max(w.last, e.EventTime)
		})
		wm := int64(-1)
		if len(partMax) == 4 {
			wm = int64(1) << 62
			for _, m := range partMax {
				wm = min(wm, m-1000)
			}
		}
		for k, w := range windows {
			if k.start+10_000 <= wm {
				emit(k, w)
				delete(windows, k)
			}
		}
	}
	for k, w := range windows { // end of input
		emit(k, w)
	}
	if err := cl.Flush(ctx); err != nil {
		return 0, "", err
	}
	d := time.Since(t0)
	got, err := bench.Collect(ctx, brokers, "hw-counts", len(want), 30*time.Second)
	if err != nil {
		return 0, "", err
	}
	// encoding/json orders map keys alphabetically; normalise to the app's order.
	for i, g := range got {
		var m map[string]any
		_ = json.Unmarshal([]byte(g), &m)
		got[i] = fmt.Sprintf(`{"campaign_id":%q,"window_start":%q,"window_end":%q,"count":%v,"last_update":%q}`,
			m["campaign_id"], m["window_start"], m["window_end"], m["count"], m["last_update"])
	}
	return d, verdict(got, want), nil
}

func ms(v int64) string { return time.UnixMilli(v).UTC().Format("2006-01-02T15:04:05.000Z07:00") }

func filepathBase(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[i+1:]
	}
	return p
}

// microbenchmarks runs the invocation microbenchmarks of benchmarks/chain
// and benchmarks/exchange at a few sizes, against the same broker.
func microbenchmarks(brokers []string, md *strings.Builder) error {
	hop, err := bench.KafkaHop(brokers, 50)
	if err != nil {
		return err
	}
	md.WriteString("\nInvocation microbenchmarks (details: `go run ./benchmarks/chain`, `go run ./benchmarks/exchange`):\n\n")
	md.WriteString("| benchmark | p50 | p99 | baseline: plain Go | baseline: through Kafka (p50) |\n|---|---|---|---|---|\n")
	for i, length := range []int{1, 10, 100} {
		bench.Progress("chain latency", int64(i), 3)
		lat, err := bench.InvokeChain(brokers, length, 50, false)
		if err != nil {
			return err
		}
		fmt.Fprintf(md, "| chain of %d, per hop | %v | %v | %v | %v |\n", length,
			(bench.Pct(lat, 50) / time.Duration(length)).Round(100*time.Nanosecond), (bench.Pct(lat, 99) / time.Duration(length)).Round(100*time.Nanosecond),
			bench.PlainChain(length)/time.Duration(length), bench.Pct(hop, 50).Round(time.Microsecond))
	}
	bench.Progress("chain latency", 3, 3)
	for i, w := range []int{100, 1000} {
		bench.Progress("fan-out", int64(i), 2)
		lat, err := bench.FanOut(brokers, w, 20)
		if err != nil {
			return err
		}
		kl, err := bench.KafkaRoundTrip(brokers, w, 100, 5)
		if err != nil {
			return err
		}
		fmt.Fprintf(md, "| fan-out/fan-in of %d | %v | %v | %v | %v |\n", w, bench.Pct(lat, 50).Round(time.Microsecond),
			bench.Pct(lat, 99).Round(time.Microsecond), bench.GoFanOut(w).Round(100*time.Nanosecond), bench.Pct(kl, 50).Round(time.Microsecond))
	}
	bench.Progress("fan-out", 2, 2)
	for i, size := range []int{1 << 10, 1 << 20} {
		bench.Progress("data exchange", int64(i), 2)
		lat, err := bench.Exchange(brokers, size, 20)
		if err != nil {
			return err
		}
		kl, err := bench.KafkaRoundTrip(brokers, 1, size, 5)
		if err != nil {
			return err
		}
		fmt.Fprintf(md, "| exchange of %s, hop | %v | %v | %v (copy) | %v |\n", bench.Human(size), bench.Pct(lat, 50).Round(time.Microsecond),
			bench.Pct(lat, 99).Round(time.Microsecond), bench.CopyTime(size).Round(100*time.Nanosecond), bench.Pct(kl, 50).Round(time.Microsecond))
	}
	bench.Progress("data exchange", 2, 2)
	return nil
}
