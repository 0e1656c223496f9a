// Package cli is the pheromone command line: run, validate and broker. It
// wires the engine to its adapters (Kafka, Pebble, Prometheus). A user who
// builds their own binary calls Main from it.
package cli

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pheromone-go/pheromone/connectors/generator"
	"github.com/pheromone-go/pheromone/connectors/kafka"
	"github.com/pheromone-go/pheromone/connectors/prom"
	"github.com/pheromone-go/pheromone/engine"
	"github.com/pheromone-go/pheromone/engine/app"
	"github.com/pheromone-go/pheromone/engine/fn"
	"github.com/pheromone-go/pheromone/state/pebblestore"
)

const usage = `pheromone: data-centric stream processing on Kafka

Usage:
  pheromone run -f app.yaml [--data-dir DIR] [--http ADDR] [--advertise URL] [--brokers LIST] [--embedded-broker ADDR] [--executors N]
  pheromone validate -f app.yaml
  pheromone broker [--data-dir DIR] [--addr ADDR] [--count N]
  pheromone invoke APP [--data FILE] [--addr URL] [--async]
  pheromone query APP BUCKET [--key K] [--session S] [--limit N] [--addr URL]
  pheromone gen ysb [--rate N] [--duration D | --count N] [--seed S] [--brokers LIST] [--expected FILE]
  pheromone version

Every command takes -h for its flags.
`

// Main runs the command line with args (without the program name) and
// returns the exit code.
func Main(args []string, stdout, stderr io.Writer) int { return MainWith(nil, args, stdout, stderr) }

// MainWith is Main for a binary that brings its own Go functions: the app
// file refers to them with `kind: go` and the function's name.
func MainWith(reg *fn.Registry, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch args[0] {
	case "run":
		return cmdRun(ctx, reg, args[1:], stdout, stderr)
	case "validate":
		return cmdValidate(reg, args[1:], stdout, stderr)
	case "broker":
		return cmdBroker(ctx, args[1:], stdout, stderr)
	case "invoke":
		return cmdInvoke(args[1:], stdout, stderr)
	case "query":
		return cmdQuery(args[1:], stdout, stderr)
	case "gen":
		return cmdGen(ctx, args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	case "version", "--version":
		fmt.Fprintln(stdout, "pheromone", version())
		return 0
	}
	fmt.Fprintf(stderr, "pheromone: unknown command %q\n\n%s", args[0], usage)
	return 2
}

// load reads and validates the app file, including that every `kind: go`
// function is registered in reg.
func load(file string, reg *fn.Registry) (*app.App, error) {
	a, err := app.Load(file)
	if err != nil {
		return nil, err
	}
	var ps app.Problems
	for i, f := range a.Functions {
		if _, ok := reg.Lookup(f.Name); f.Kind == "go" && !ok {
			ps = append(ps, app.Problem{Path: fmt.Sprintf("functions[%d].name", i),
				Msg: fmt.Sprintf("no Go function %q is registered in this binary (build one with cli.MainWith and a fn.Registry)", f.Name)})
		}
	}
	if len(ps) > 0 {
		return nil, ps
	}
	return a, nil
}

func cmdValidate(reg *fn.Registry, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("validate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("f", "", "app file")
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	if *file == "" {
		fmt.Fprintln(stderr, "pheromone validate: -f app.yaml is required")
		return 2
	}
	a, err := load(*file, reg)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", *file, err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: app %q is valid: %d source(s), %d bucket(s), %d trigger(s), %d function(s), %d sink(s)\n",
		*file, a.Name, len(a.Sources), len(a.Buckets), len(a.Triggers), len(a.Functions), len(a.Sinks))
	for _, c := range a.Caveats() {
		fmt.Fprintf(stdout, "%s: warning: %s\n", *file, c)
	}
	return 0
}

func cmdBroker(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("broker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", "pheromone-data", "directory for the broker's data")
	addr := fs.String("addr", "127.0.0.1:9092", "listen address (of the first broker; the others take the next ports)")
	count := fs.Int("count", 1, "number of brokers in the cluster")
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	b, err := kafka.StartBrokers(*addr, *count, filepath.Join(*dataDir, "broker"))
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	fmt.Fprintf(stdout, "broker listening on %s (data in %s)\n", strings.Join(b.Addrs(), ","), filepath.Join(*dataDir, "broker"))
	<-ctx.Done()
	b.Close()
	return 0
}

// RunConfig is everything `pheromone run` needs.
type RunConfig struct {
	App     *app.App
	DataDir string
	// HTTPAddr serves /healthz, /readyz and /metrics; "" disables it.
	HTTPAddr string
	// Brokers overrides the app file's kafka.brokers; with neither, the
	// embedded broker is started on EmbeddedBroker.
	Brokers        []string
	EmbeddedBroker string
	// Clock defaults to the system clock (tests inject one).
	Clock engine.Clock
	// Progress receives the live one-line summary; nil disables it.
	Progress io.Writer
	// Out receives the startup banner.
	Out    io.Writer
	Logger *slog.Logger
	// Functions replace built-in function implementations by name.
	Functions map[string]fn.Function
	// Executors sizes the function executor pool (default GOMAXPROCS).
	Executors int
	// Started is called once the node serves, with its addresses.
	Started func(Info)
	// Advertise is the base URL other nodes forward queries to; default
	// http://<HTTPAddr>.
	Advertise string
	// MinFreeBytes is the disk space kept free under the state: below it
	// commits pause until space returns (engine.Options.MinFreeBytes:
	// 0 is the default, negative never pauses).
	MinFreeBytes int64
}

// Info tells where a running node can be reached.
type Info struct {
	Brokers  []string
	HTTPAddr string
	Node     *engine.Node
}

func cmdRun(ctx context.Context, reg *fn.Registry, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("f", "", "app file")
	dataDir := fs.String("data-dir", "pheromone-data", "directory for state (and the embedded broker's data)")
	httpAddr := fs.String("http", "127.0.0.1:8080", "HTTP address for /healthz, /readyz and /metrics")
	brokers := fs.String("brokers", "", "comma-separated Kafka brokers (default: the app file's kafka.brokers, else the embedded broker)")
	embedded := fs.String("embedded-broker", "127.0.0.1:9092", "address of the embedded broker")
	executors := fs.Int("executors", 0, "function executor pool size (default: number of CPUs)")
	advertise := fs.String("advertise", "", "base URL other nodes forward queries to (default http://<http address>)")
	minFree := fs.Int64("min-free-disk", engine.DefaultMinFreeBytes>>20, "MiB of disk kept free under the data dir: below it state commits pause until space returns (0: never pause)")
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	if *file == "" {
		fmt.Fprintln(stderr, "pheromone run: -f app.yaml is required")
		return 2
	}
	a, err := load(*file, reg)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", *file, err)
		return 1
	}
	if *minFree <= 0 {
		*minFree = -1 // never pause
	}
	cfg := RunConfig{MinFreeBytes: *minFree << 20, Advertise: *advertise, Functions: reg.Functions(), Executors: *executors, App: a, DataDir: *dataDir, HTTPAddr: *httpAddr, EmbeddedBroker: *embedded, Out: stdout,
		Logger: slog.New(slog.NewTextHandler(stderr, nil))}
	if *brokers != "" {
		cfg.Brokers = strings.Split(*brokers, ",")
	}
	if isTerminal(stdout) {
		cfg.Progress = stdout
	} else {
		cfg.Progress = &progressLines{w: stdout}
	}
	if f := os.Getenv("PHEROMONE_CPUPROFILE"); f != "" {
		// A CPU profile of the whole run, for performance work on a node
		// process (benchmarks start nodes as processes).
		if pf, err := os.Create(f); err == nil && pprof.StartCPUProfile(pf) == nil {
			defer func() { pprof.StopCPUProfile(); pf.Close() }()
		}
	}
	if err := Run(ctx, cfg); err != nil {
		fmt.Fprintln(stderr, "pheromone:", err)
		return 1
	}
	return 0
}

// Run runs an app until ctx ends or the node fails.
func Run(ctx context.Context, cfg RunConfig) error {
	a := cfg.App
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	for _, c := range a.Caveats() {
		cfg.Logger.Warn("results may not be exact", "path", c.Path, "reason", c.Msg)
	}
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	if cfg.DataDir == "" {
		cfg.DataDir = "pheromone-data"
	}
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return err
	}
	brokers := cfg.Brokers
	if len(brokers) == 0 {
		brokers = a.Kafka.Brokers
	}
	if len(brokers) == 0 {
		if cfg.EmbeddedBroker == "" {
			cfg.EmbeddedBroker = "127.0.0.1:9092"
		}
		b, err := kafka.StartBroker(cfg.EmbeddedBroker, filepath.Join(cfg.DataDir, "broker"))
		if err != nil {
			return err
		}
		defer b.Close()
		brokers = b.Addrs()
	}
	setupCtx, cancelSetup := context.WithTimeout(ctx, 30*time.Second)
	err := kafka.EnsureTopics(setupCtx, brokers, a.Topics())
	if err == nil {
		err = kafka.EnsureCompactedTopics(setupCtx, brokers, a.CompactedTopics())
	}
	if err == nil {
		err = checkCopartitioned(setupCtx, a, brokers)
	}
	cancelSetup()
	if err != nil {
		return err
	}
	store, err := pebblestore.Open(filepath.Join(cfg.DataDir, "state"), pebblestore.Options{})
	if err != nil {
		return err
	}
	defer store.Close()
	producer, err := kafka.NewProducer(brokers)
	if err != nil {
		return err
	}
	defer producer.Close()
	metrics := prom.New(a.Name)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	eos := a.Kafka.ExactlyOnce()
	opts := engine.Options{App: a, Store: store, Producer: producer, Clock: cfg.Clock, Metrics: metrics, Logger: cfg.Logger,
		Functions: cfg.Functions, Executors: cfg.Executors, MinFreeBytes: cfg.MinFreeBytes, CommitInterval: a.Kafka.CommitIntervalDuration(), FencedWait: a.Kafka.SessionTimeoutDuration(),
		Writers: func(int32) (engine.PartitionWriter, error) { return producer.Writer(), nil }}
	if eos {
		opts.Writers = func(part int32) (engine.PartitionWriter, error) {
			wctx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			return kafka.NewTxnWriter(wctx, brokers, kafka.TransactionalID(a.Name, part))
		}
	}
	var limitTopics []string
	for t := range a.Topics() {
		limitTopics = append(limitTopics, t)
	}
	for t := range a.CompactedTopics() {
		limitTopics = append(limitTopics, t)
	}
	lctx, lcancel := context.WithTimeout(ctx, 30*time.Second)
	limits, err := kafka.RecordLimits(lctx, brokers, limitTopics)
	lcancel()
	if err != nil {
		cfg.Logger.Warn("topic record limits unknown; assuming 1 MiB", "error", err)
	}
	opts.RecordLimits = limits
	if a.Kafka.ChangelogEnabled() {
		opts.ChangelogTopic = a.Kafka.ChangelogTopic
		opts.ChangelogReader = &kafka.ChangelogReader{Brokers: brokers, Topic: a.Kafka.ChangelogTopic, ReadCommitted: eos}
	}
	node, err := engine.New(opts)
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	// Reference tables are loaded before any record is processed, then
	// followed while the node runs.
	for _, tb := range a.Tables {
		tb := tb
		if tb.File != "" {
			if err := loadTableFile(node, &tb); err != nil {
				cancel()
				wg.Wait()
				return err
			}
			continue
		}
		loadCtx, cancelLoad := context.WithTimeout(ctx, 2*time.Minute)
		tail, err := kafka.FeedTable(loadCtx, brokers, tb.Topic, func(k, v []byte) error { return node.UpsertTable(tb.Name, k, v) }, cfg.Logger)
		cancelLoad()
		if err != nil {
			cancel()
			wg.Wait()
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = tail(ctx)
		}()
	}

	describer, err := kafka.NewGroupDescriber(brokers, a.Kafka.Group, a.Sources[0].Topic)
	if err != nil {
		return err
	}
	defer describer.Close()
	httpAddr := ""
	var ln net.Listener
	if cfg.HTTPAddr != "" {
		if ln, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
			return fmt.Errorf("http: %w", err)
		}
		httpAddr = ln.Addr().String()
	}
	rt := &router{group: describer, self: memberID(cfg.Advertise, httpAddr), client: &http.Client{Timeout: 30 * time.Second}}
	if a.Kafka.StandbyReplicas > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			followStandbys(ctx, rt, node, a.Kafka.StandbyReplicas)
		}()
	}
	var srv *http.Server
	if ln != nil {
		srv = &http.Server{Handler: httpHandler(a, node, metrics, rt), ReadHeaderTimeout: 5 * time.Second}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errs <- err
			}
		}()
	}

	nodeCtx, stopNode := context.WithCancel(context.Background())
	defer stopNode()
	nodeDone := make(chan error, 1)
	go func() { nodeDone <- node.Run(nodeCtx) }()

	var topics []string
	for _, s := range a.Sources {
		topics = append(topics, s.Topic)
	}
	for _, b := range a.Buckets {
		if b.PartitionBy != "" {
			topics = append(topics, a.RepartitionTopic(b.Name))
		}
	}
	src := &kafka.Source{Brokers: brokers, Group: a.Kafka.Group, Topics: topics, Node: node, Logger: cfg.Logger,
		ReadCommitted: eos, SessionTimeout: a.Kafka.SessionTimeoutDuration(), ClientID: rt.self}
	srcDone := make(chan error, 1)
	go func() { srcDone <- src.Run(ctx) }()

	for _, s := range a.Sources {
		if s.Kind != "generator" {
			continue
		}
		s := s
		wg.Add(1)
		go func() {
			defer wg.Done()
			generator.Run(ctx, s.Generator.Seed, s.Generator.Rate, s.Generator.Limit, s.Key, func(k, v []byte) {
				producer.Produce(&engine.OutRecord{Topic: s.Topic, Key: k, Value: v}, func(err error) {
					if err != nil && ctx.Err() == nil {
						cfg.Logger.Warn("generator produce failed", "topic", s.Topic, "error", err)
					}
				})
			})
		}()
	}

	fmt.Fprintf(cfg.Out, "pheromone: app %q running\n  brokers: %s\n  http:    http://%s\n  metrics: http://%s/metrics\n  data:    %s\n",
		a.Name, strings.Join(brokers, ","), httpAddr, httpAddr, cfg.DataDir)
	if cfg.Progress != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			progress(ctx, node, cfg.Progress)
		}()
	}
	if cfg.Started != nil {
		cfg.Started(Info{Brokers: brokers, HTTPAddr: httpAddr, Node: node})
	}

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errs:
	case runErr = <-nodeDone:
		nodeDone <- runErr
	case runErr = <-srcDone:
		srcDone <- runErr
	}
	// Soft stop: leave the group (tasks flush and commit), then the node.
	cancel()
	if err := <-srcDone; err != nil && runErr == nil {
		runErr = err
	}
	stopNode()
	if err := <-nodeDone; err != nil && runErr == nil {
		runErr = err
	}
	if srv != nil {
		sctx, c := context.WithTimeout(context.Background(), 2*time.Second)
		_ = srv.Shutdown(sctx)
		c()
	}
	wg.Wait()
	return runErr
}

// checkCopartitioned refuses to start when a topic a partition task joins
// (the changelog, a repartition topic) exists with fewer partitions than
// the app's sources: some partitions would have no state to restore.
func checkCopartitioned(ctx context.Context, a *app.App, brokers []string) error {
	var topics []string
	if a.Kafka.ChangelogEnabled() {
		topics = append(topics, a.Kafka.ChangelogTopic)
	}
	for _, b := range a.Buckets {
		if b.PartitionBy != "" {
			topics = append(topics, a.RepartitionTopic(b.Name))
		}
	}
	if len(topics) == 0 {
		return nil
	}
	parts, err := kafka.TopicPartitions(ctx, brokers, topics...)
	if err != nil {
		return err
	}
	var bad []string
	for _, t := range topics {
		if n, ok := parts[t]; ok && n != a.Partitions() {
			bad = append(bad, fmt.Sprintf("topic %s has %d partitions, the app's sources have %d", t, n, a.Partitions()))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("topics are not co-partitioned with the sources (delete them or match the partition counts): %s", strings.Join(bad, "; "))
	}
	return nil
}

func httpHandler(a *app.App, node *engine.Node, m *prom.Metrics, rt *router) http.Handler {
	mux := http.NewServeMux()
	(&apiHandler{app: a, node: node, router: rt}).register(mux)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if rs := node.Restoring(); len(rs) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			for _, r := range rs {
				fmt.Fprintf(w, "not ready: partition %d restoring from the changelog: %d records left, %.1f MB applied in %s\n",
					r.Partition, r.Remaining, float64(r.Bytes)/1e6, r.Elapsed.Round(time.Millisecond))
			}
			return
		}
		if why := node.DiskPaused(); why != "" {
			http.Error(w, "not ready: "+why, http.StatusServiceUnavailable)
			return
		}
		if st := node.Stopped(); len(st) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			for p, why := range st {
				fmt.Fprintf(w, "not ready: partition %d stopped: %s\n", p, why)
			}
			return
		}
		if !node.Ready() {
			http.Error(w, "not ready: waiting for partition assignment", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, "ready: partitions %v\n", node.Partitions())
		if sb := node.Standbys(); len(sb) > 0 {
			fmt.Fprintf(w, "standby replicas of partitions %v\n", sb)
		}
	})
	mux.Handle("/metrics", m.Handler())
	return mux
}

// progress prints a one-line summary every second.
func progress(ctx context.Context, node *engine.Node, w io.Writer) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	prev, prevT := node.Stats(), time.Now()
	for {
		select {
		case <-ctx.Done():
			if _, ok := w.(*progressLines); !ok {
				fmt.Fprintln(w)
			}
			return
		case now := <-t.C:
			s := node.Stats()
			dt := now.Sub(prevT).Seconds()
			line := fmt.Sprintf("in %d (%.0f/s)  out %d (%.0f/s)  firings %d (%.0f/s)  dead-letters %d",
				s.RecordsIn, float64(s.RecordsIn-prev.RecordsIn)/dt,
				s.RecordsOut, float64(s.RecordsOut-prev.RecordsOut)/dt,
				s.Firings, float64(s.Firings-prev.Firings)/dt, s.DeadLetters)
			if pl, ok := w.(*progressLines); ok {
				pl.line(now, line)
			} else {
				fmt.Fprintf(w, "\r\033[K%s", line)
			}
			prev, prevT = s, now
		}
	}
}

// progressLines prints the summary as a log line every 10 s when stdout is
// not a terminal.
type progressLines struct {
	w    io.Writer
	last time.Time
}

func (p *progressLines) Write(b []byte) (int, error) { return p.w.Write(b) }

func (p *progressLines) line(now time.Time, s string) {
	if now.Sub(p.last) >= 10*time.Second {
		p.last = now
		fmt.Fprintln(p.w, s)
	}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// loadTableFile reads a table from a file of JSON lines.
func loadTableFile(node *engine.Node, tb *app.Table) error {
	raw, err := os.ReadFile(tb.File)
	if err != nil {
		return fmt.Errorf("table %s: %w", tb.Name, err)
	}
	for i, line := range bytes.Split(raw, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		if err := node.UpsertTable(tb.Name, nil, line); err != nil {
			return fmt.Errorf("%s:%d: %w", tb.File, i+1, err)
		}
	}
	return nil
}

// version is the module version and VCS revision the binary was built
// from, as far as the build recorded them.
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "(unknown)"
	}
	v := bi.Main.Version
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v += " " + s.Value
		case "vcs.modified":
			if s.Value == "true" {
				v += "+dirty"
			}
		}
	}
	return v + " " + bi.GoVersion
}
