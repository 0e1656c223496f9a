// Command throughput measures Pheromone against the ceiling of this machine:
// a raw franz-go consume->produce loop on the same embedded broker, in the
// same run. It pre-produces N clickstream records, then times
//
//	raw       franz-go consumer -> producer, no decoding (the ceiling)
//	stateless pheromone: JSON -> Arrow -> filter -> JSON sink (every record passes)
//	selective pheromone: the quickstart filter (about 1 in 6 records passes)
//	by_time   pheromone: 1 s processing-time tumbling window, count per page
//
// and prints records/s and the ratio to the raw loop.
//
//	go run ./benchmarks/throughput -n 1000000 -runs 3
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/pheromone-go/pheromone/benchmarks/internal/bench"
	"github.com/pheromone-go/pheromone/connectors/kafka"
	"github.com/pheromone-go/pheromone/engine/app"
	"github.com/pheromone-go/pheromone/server"
)

func main() {
	bench.ServeBrokerIfChild()
	n := flag.Int("n", 500_000, "records to process per run")
	parts := flag.Int("partitions", 4, "partitions of the input topic")
	flag.IntVar(&runs, "runs", 3, "repetitions; the table reports medians")
	verb := flag.Bool("v", false, "print when each app first committed")
	inProcess := flag.Bool("in-process-broker", false, "run kfake in this process (its heap then slows the engine's GC)")
	only := flag.String("only", "", "run only the raw loop and the app whose name contains this")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	flag.StringVar(&appProfile, "app-cpuprofile", "", "write a CPU profile of each app run (not the raw loops) to this file name with .1, .2, ... appended (go tool pprof takes them all)")
	flag.BoolVar(&consoleRuns, "console", false, "instead of the apps: the selective filter with its HTTP server, with and without a console polling every second")
	flag.Parse()
	onlyApp = *only
	verbose = *verb
	brokerInProcess = *inProcess
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		_ = pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	if err := run(*n, *parts); err != nil {
		fmt.Fprintln(os.Stderr, "throughput:", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

// appProfile, when set, is where the CPU profile of only the apps' runs goes.
var (
	appProfile string
	profiled   int
)

var (
	runs    int
	appRuns int

	brokerInProcess bool
	onlyApp         string
	verbose         bool
	consoleRuns     bool
)

// consolePoll marks an app run with a console open on its node.
const consolePoll = "\n# console polling"

func run(n, parts int) error {
	var brokers []string
	var stop func()
	var err error
	if brokerInProcess {
		c, cerr := kfake.NewCluster(kfake.NumBrokers(1))
		if cerr != nil {
			return cerr
		}
		brokers, stop = c.ListenAddrs(), c.Close
	} else if brokers, stop, err = bench.StartBroker(); err != nil {
		return err
	}
	defer stop()
	ctx := context.Background()
	if err := kafka.EnsureTopics(ctx, kafka.Plain(brokers...), map[string]int{"clicks": parts}); err != nil {
		return err
	}
	fmt.Printf("producing %d clickstream records into %d partitions...\n", n, parts)
	if err := bench.PreloadClicks(ctx, brokers, "clicks", n); err != nil {
		return err
	}
	type row struct {
		name   string
		d, raw []time.Duration
		ratios []float64
	}
	apps := []struct{ name, fn string }{
		{"pheromone stateless filter (all pass)", statelessApp},
		{"pheromone selective filter (quickstart)", selectiveApp},
		{"pheromone by_time 1s count per page", windowApp},
		{"pheromone by_time 1s count per page, no changelog", strings.Replace(windowApp, "app: bench-window", "app: bench-window-nocl\nkafka: {changelog: false}", 1)},
	}
	if consoleRuns {
		apps = []struct{ name, fn string }{
			{"pheromone selective filter, HTTP on, no console open", selectiveApp},
			{"pheromone selective filter, a console polling every second", selectiveApp + consolePoll},
		}
	}
	rows := make([]*row, len(apps))
	// Warm up the broker and the client paths once, unmeasured.
	if _, err := bench.RawLoop(ctx, brokers, "clicks", n); err != nil {
		return err
	}
	// Each app runs right after its own raw loop: the in-process broker's
	// heap grows with every run, so a baseline measured once at the start
	// would flatter it. The ratio compares neighbours; with -runs > 1 the
	// table shows medians.
	for r := 0; r < runs; r++ {
		for i, b := range apps {
			if onlyApp != "" && !strings.Contains(b.name, onlyApp) {
				continue
			}
			raw, err := bench.RawLoop(ctx, brokers, "clicks", n)
			if err != nil {
				return err
			}
			stop, err := profileApp()
			if err != nil {
				return err
			}
			d, err := pheromone(ctx, brokers, n, b.fn)
			stop()
			if err != nil {
				return fmt.Errorf("%s: %w", b.name, err)
			}
			if rows[i] == nil {
				rows[i] = &row{name: b.name}
			}
			rows[i].d = append(rows[i].d, d)
			rows[i].raw = append(rows[i].raw, raw)
			rows[i].ratios = append(rows[i].ratios, raw.Seconds()/d.Seconds())
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			fmt.Printf("  run %d: %-42s %.2fx  (raw %.2fs, app %.2fs; goroutines %d, heap %d MiB)\n", r+1, b.name,
				raw.Seconds()/d.Seconds(), raw.Seconds(), d.Seconds(), runtime.NumGoroutine(), ms.HeapAlloc>>20)
		}
	}
	where := "kfake in a child process"
	if brokerInProcess {
		where = "kfake in this process"
	}
	fmt.Printf("\n%d records, %d partitions, %d run(s), %s, GOMAXPROCS=%d, %s\n\n", n, parts, runs, where, runtime.GOMAXPROCS(0), runtime.Version())
	fmt.Println("| run | records/s (median) | raw loop records/s (median, same runs) | ratio to raw (median) | ratios of all runs |")
	fmt.Println("|---|---|---|---|---|")
	for _, r := range rows {
		if r == nil {
			continue
		}
		var all []string
		for _, x := range r.ratios {
			all = append(all, fmt.Sprintf("%.2f", x))
		}
		fmt.Printf("| %s | %.0f | %.0f | %.2fx | %s |\n", r.name, float64(n)/median(r.d).Seconds(),
			float64(n)/median(r.raw).Seconds(), medianF(r.ratios), strings.Join(all, ", "))
	}
	return nil
}

// profileApp starts the CPU profile of the next app run (-app-cpuprofile);
// stop ends it.
func profileApp() (stop func(), err error) {
	if appProfile == "" {
		return func() {}, nil
	}
	profiled++
	f, err := os.Create(fmt.Sprintf("%s.%d", appProfile, profiled))
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func medianF(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

const source = `
sources:
  - name: clicks
    topic: clicks
    schema:
      - {name: event_id, type: int64}
      - {name: user_id, type: string}
      - {name: page, type: string}
      - {name: action, type: string}
      - {name: duration_ms, type: int64}
      - {name: country, type: string}
      - {name: ts, type: timestamp}
    key: page
    bucket: clicks
buckets:
  - name: clicks
`

const statelessApp = `app: bench-stateless` + source + `
triggers:
  - {name: each, bucket: clicks, primitive: immediate, function: keep}
functions:
  - {name: keep, kind: filter, expr: "duration_ms >= 0", outputs: [out]}
sinks:
  - {name: out, topic: stateless-out, key: page}
`

const selectiveApp = `app: bench-selective` + source + `
triggers:
  - {name: each, bucket: clicks, primitive: immediate, function: keep}
functions:
  - {name: keep, kind: filter, expr: 'action == "view" and duration_ms >= 1000', outputs: [out]}
sinks:
  - {name: out, topic: selective-out, key: page}
`

const windowApp = `app: bench-window` + source + `
triggers:
  - {name: every_second, bucket: clicks, primitive: by_time, window: 1s, function: count}
functions:
  - name: count
    kind: aggregate
    group_by: [page]
    aggregates: [{name: views, op: count}]
    outputs: [out]
sinks:
  - {name: out, topic: window-out, key: page}
`

// pheromone runs an app until its committed source offsets cover n records.
func pheromone(ctx context.Context, brokers []string, n int, yaml string) (time.Duration, error) {
	a, err := app.Parse([]byte(yaml))
	if err != nil {
		return 0, err
	}
	if err := a.Validate(); err != nil {
		return 0, err
	}
	// A fresh group per run: the previous run's group committed the end of
	// the input, and this run starts with empty state.
	appRuns++
	a.Kafka.Group = fmt.Sprintf("%s-%d", a.Kafka.Group, appRuns)
	// A fresh output topic per run too, so every run writes to an empty
	// topic, as the raw loop does.
	for i := range a.Sinks {
		a.Sinks[i].Topic = fmt.Sprintf("%s-%d", a.Sinks[i].Topic, appRuns)
	}
	// And a fresh changelog: a node with an empty data dir restores the
	// previous run's state (offsets at the end of the input) from it.
	a.Kafka.ChangelogTopic = fmt.Sprintf("%s-%d", a.Kafka.ChangelogTopic, appRuns)
	var opts []server.Opt
	if consoleRuns {
		opts = append(opts, server.HTTPAddr("127.0.0.1:0"))
	}
	start := time.Now()
	node, err := bench.StartNode(ctx, a, brokers, opts...)
	if err != nil {
		return 0, err
	}
	info := node.Info
	if strings.HasSuffix(yaml, consolePoll) {
		stop := make(chan struct{})
		defer close(stop)
		go pollConsole("http://"+info.HTTPAddr, stop)
	}
	var first time.Duration
	for {
		var sum int64
		for _, off := range info.Node.Committed() {
			sum += off
		}
		if sum > 0 && first == 0 {
			first = time.Since(start)
		}
		if sum >= int64(n) {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	d := time.Since(start)
	if verbose {
		fmt.Printf("  %s: first commit after %v, all after %v\n", a.Name, first.Round(time.Millisecond), d.Round(time.Millisecond))
	}
	return d, node.Stop()
}

// pollConsole does what an open console does: every second it asks for the
// stats (with their series), and every two seconds for the partitions and
// the dead letters.
func pollConsole(base string, stop <-chan struct{}) {
	cl := &http.Client{Timeout: 5 * time.Second}
	get := func(path string) {
		if resp, err := cl.Get(base + path); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	get("/")
	get("/v1/console/topology")
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for i := 0; ; i++ {
		get("/v1/console/stats")
		if i%2 == 0 {
			get("/v1/console/partitions")
			get("/v1/console/deadletters?limit=50")
		}
		select {
		case <-stop:
			return
		case <-t.C:
		}
	}
}
