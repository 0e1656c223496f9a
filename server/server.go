// Package server runs a pheromone node: it wires the engine to its adapters
// (Kafka, Pebble, Prometheus), serves the HTTP API (health, metrics,
// invocations, live queries routed across nodes) and keeps standby
// replicas. It is the composition root: the pheromone command line, the
// benchmarks and a user binary with Go functions all start nodes with Run.
//
//	err := server.Run(ctx, a,
//		server.DataDir("data"),
//		server.HTTPAddr("127.0.0.1:8080"),
//		server.Functions(reg.Functions()),
//	)
package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/pheromone-go/pheromone/connectors/file"
	"github.com/pheromone-go/pheromone/connectors/generator"
	"github.com/pheromone-go/pheromone/connectors/kafka"
	"github.com/pheromone-go/pheromone/connectors/prom"
	"github.com/pheromone-go/pheromone/engine"
	"github.com/pheromone-go/pheromone/engine/app"
	"github.com/pheromone-go/pheromone/engine/fn"
	"github.com/pheromone-go/pheromone/state/pebblestore"
)

// Opt configures Run. The zero set of options runs the app on the
// embedded broker with its state in ./pheromone-data and no HTTP server.
type Opt func(*config)

type config struct {
	dataDir        string
	httpAddr       string
	advertise      string
	brokers        []string
	embeddedBroker string
	clock          engine.Clock
	progress       io.Writer
	banner         io.Writer
	logger         *slog.Logger
	functions      map[string]fn.Function
	executors      int
	minFreeBytes   int64
	memoryBudget   int64
	started        func(Info)
	sources        []sourceKind
	sinks          []sinkKind
	// embeddedRegistry is where the embedded registry listens; registryURL
	// is the registry the node uses once connected (see registry.go).
	embeddedRegistry string
	registryURL      string
	probeInterval    time.Duration
	// joinedMeanwhile (tests) skips the group check at start, as when
	// another member joins while this node starts: only the check at the
	// first assignment sees it.
	joinedMeanwhile bool
	reset           []string
	resetAll        bool
}

// DataDir is the directory of the node's state (and of the embedded
// broker's data); default "pheromone-data".
func DataDir(dir string) Opt { return func(c *config) { c.dataDir = dir } }

// HTTPAddr is the address the HTTP API listens on (port 0 picks one; Info
// tells which); default none: no HTTP server.
func HTTPAddr(addr string) Opt { return func(c *config) { c.httpAddr = addr } }

// Advertise is the base URL other nodes forward queries to; default
// http://<the HTTP address>.
func Advertise(url string) Opt { return func(c *config) { c.advertise = url } }

// Brokers overrides the app file's kafka.brokers; with neither, Run starts
// the embedded broker (EmbeddedBroker).
func Brokers(addrs ...string) Opt { return func(c *config) { c.brokers = addrs } }

// EmbeddedBroker is the address of the embedded broker Run starts when no
// brokers are configured; default 127.0.0.1:9092.
func EmbeddedBroker(addr string) Opt { return func(c *config) { c.embeddedBroker = addr } }

// Clock replaces the system clock of the engine's timers (tests).
func Clock(c engine.Clock) Opt { return func(cf *config) { cf.clock = c } }

// Progress receives a summary of the node's counters every second: one
// live line on a terminal, a line every 10 s otherwise. Default none.
func Progress(w io.Writer) Opt { return func(c *config) { c.progress = w } }

// Banner receives the startup banner (the addresses). Default none.
func Banner(w io.Writer) Opt { return func(c *config) { c.banner = w } }

// Logger is where the node logs; default slog.Default().
func Logger(l *slog.Logger) Opt { return func(c *config) { c.logger = l } }

// Functions replace or provide the implementations of functions by name:
// every `kind: go` function of the app must be here (fn.Registry.Functions
// gives them).
func Functions(fns map[string]fn.Function) Opt { return func(c *config) { c.functions = fns } }

// Executors sizes the function executor pool; default GOMAXPROCS.
func Executors(n int) Opt { return func(c *config) { c.executors = n } }

// MinFreeBytes is the disk space kept free under the data dir: below it
// state commits pause until space returns. Default
// engine.DefaultMinFreeBytes; negative never pauses.
func MinFreeBytes(n int64) Opt { return func(c *config) { c.minFreeBytes = n } }

// MemoryBudget bounds the decoded bucket chunks a partition task keeps in
// memory once they are durable (beyond, they are read back from Pebble when
// a trigger fires); default engine's (32 MiB).
func MemoryBudget(n int64) Opt { return func(c *config) { c.memoryBudget = n } }

// ProbeInterval is how often the node looks at its partitions' log ends
// (default 250 ms); `pheromone test` looks every few milliseconds.
func ProbeInterval(d time.Duration) Opt { return func(c *config) { c.probeInterval = d } }

// OnStarted is called once the node serves, with its addresses.
func OnStarted(f func(Info)) Opt { return func(c *config) { c.started = f } }

// SourceKind adds a connector's source kind to the node (beside the file
// source this package wires itself): spec declares it to validation, impl
// runs its sources. Pass the same options to Connectors.
func SourceKind(spec app.SourceKind, impl engine.SourceKind) Opt {
	return func(c *config) { c.sources = append(c.sources, sourceKind{spec, impl}) }
}

// SinkKind adds a connector's sink kind to the node (beside the file sink
// this package wires itself). Pass the same options to Connectors.
func SinkKind(spec app.SinkKind, impl engine.SinkKind) Opt {
	return func(c *config) { c.sinks = append(c.sinks, sinkKind{spec, impl}) }
}

type sourceKind struct {
	spec app.SourceKind
	impl engine.SourceKind
}

type sinkKind struct {
	spec app.SinkKind
	impl engine.SinkKind
}

// withConnectors is the file kinds this package wires, then those the
// options add.
func (c *config) withConnectors() {
	c.sources = append([]sourceKind{{file.SourceSpec, file.Source{}}}, c.sources...)
	c.sinks = append([]sinkKind{{file.Spec, file.NewKind()}}, c.sinks...)
}

// Connectors declares the source and sink kinds a node run with opts
// wires — the file source and sink, and those SourceKind and SinkKind add —
// for the app file's validation: load the apps Run runs with
// app.LoadWith(path, server.Connectors(opts...)).
func Connectors(opts ...Opt) app.Connectors {
	var c config
	for _, o := range opts {
		o(&c)
	}
	c.withConnectors()
	out := app.Connectors{Formats: registryKinds()}
	for _, k := range c.sources {
		out.Sources = append(out.Sources, k.spec)
	}
	for _, k := range c.sinks {
		out.Sinks = append(out.Sinks, k.spec)
	}
	return out
}

// Info tells where a running node can be reached.
type Info struct {
	Brokers  []string
	HTTPAddr string
	Node     *engine.Node
	// RegistryURL is the schema registry the node uses, if any.
	RegistryURL string
}

// Run runs app a until ctx ends or the node fails. It returns after every
// goroutine it started has exited: the source left its group (its
// partitions committed), the node stopped, the HTTP server shut down.
func Run(ctx context.Context, a *app.App, opts ...Opt) error {
	cfg := config{dataDir: "pheromone-data", embeddedBroker: "127.0.0.1:9092", embeddedRegistry: "127.0.0.1:0", logger: slog.Default(), banner: io.Discard}
	for _, o := range opts {
		o(&cfg)
	}
	cfg.withConnectors()
	for _, c := range a.Caveats() {
		cfg.logger.Warn("results may not be exact", "path", c.Path, "reason", c.Msg)
	}
	if err := os.MkdirAll(cfg.dataDir, 0o755); err != nil {
		return err
	}
	conn, closeBroker, err := connect(ctx, a, &cfg)
	if err != nil {
		return err
	}
	defer closeBroker()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := build(ctx, a, &cfg, conn)
	if err != nil {
		return err
	}
	defer w.close()
	return w.run(ctx, cancel)
}

// connect finds the cluster (starting the embedded broker if none is
// configured) and makes sure the app's topics exist and are co-partitioned.
func connect(ctx context.Context, a *app.App, cfg *config) (conn kafka.Conn, closeBroker func(), err error) {
	closeBroker = func() {}
	brokers := cfg.brokers
	if len(brokers) == 0 {
		brokers = a.Kafka.Brokers
	}
	if len(brokers) == 0 {
		if a.Kafka.TLS != nil || a.Kafka.SASL != nil {
			return kafka.Conn{}, nil, errors.New("kafka.tls and kafka.sasl are for a cluster of your own: set kafka.brokers (or --brokers); the embedded broker takes neither")
		}
		b, err := kafka.StartBroker(cfg.embeddedBroker, filepath.Join(cfg.dataDir, "broker"))
		if err != nil {
			return kafka.Conn{}, nil, err
		}
		brokers, closeBroker = b.Addrs(), b.Close
		if closeBroker, err = startEmbeddedRegistry(cfg, closeBroker); err != nil {
			return kafka.Conn{}, nil, err
		}
	}
	if conn, err = kafka.ConnFor(brokers, a.Kafka, os.Getenv); err != nil {
		closeBroker()
		return kafka.Conn{}, nil, err
	}
	if conn.SASL != nil || conn.TLS != nil {
		cfg.logger.Info("connecting to a secured cluster", "brokers", strings.Join(brokers, ","), "tls", conn.TLS != nil, "sasl", conn.SASL.String())
	}
	if t := a.Kafka.TLS; t != nil && t.InsecureSkipVerify {
		cfg.logger.Warn("kafka.tls.insecure_skip_verify: the brokers' certificates are not checked; anyone between the node and the cluster can read and change its traffic")
	}
	setupCtx, cancelSetup := context.WithTimeout(ctx, 30*time.Second)
	defer cancelSetup()
	need := access(a)
	err = kafka.CheckAccess(setupCtx, conn, need)
	if err == nil {
		err = kafka.EnsureTopics(setupCtx, conn, a.Topics())
	}
	if err == nil {
		err = kafka.CheckAccess(setupCtx, conn, need) // the topics just created
	}
	if err == nil {
		err = kafka.EnsureCompactedTopics(setupCtx, conn, a.CompactedTopics())
	}
	if err == nil {
		err = checkCopartitioned(setupCtx, a, conn)
	}
	if err != nil {
		closeBroker()
		return kafka.Conn{}, nil, err
	}
	return conn, closeBroker, nil
}

// access is what the node needs of the cluster: it reads its sources,
// tables, repartition topics and changelog, and writes its sinks,
// dead-letter topic, repartition topics, changelog and generated topics.
func access(a *app.App) kafka.Access {
	need := kafka.Access{Group: a.Kafka.Group, Write: []string{a.Kafka.DLQTopic}}
	for _, s := range a.Sources {
		if !s.Connector() {
			need.Read = append(need.Read, s.Topic)
		}
		if s.Kind == "generator" {
			need.Write = append(need.Write, s.Topic)
		}
	}
	for _, s := range a.Sinks {
		if s.Kind == "kafka" || s.Kind == "" {
			need.Write = append(need.Write, s.Topic)
		}
	}
	for t := range a.CompactedTopics() {
		need.Read = append(need.Read, t)
		if t == a.Kafka.ChangelogTopic {
			need.Write = append(need.Write, t)
		}
	}
	for _, b := range a.Buckets {
		if b.PartitionBy != "" {
			need.Read = append(need.Read, a.RepartitionTopic(b.Name))
			need.Write = append(need.Write, a.RepartitionTopic(b.Name))
		}
	}
	if a.DurableInvoke() {
		need.Read = append(need.Read, a.InvocationsTopic())
		need.Write = append(need.Write, a.InvocationsTopic())
	}
	return need
}

// wiring is one node with its adapters, built and not yet running.
type wiring struct {
	a        *app.App
	cfg      *config
	conn     kafka.Conn
	store    *pebblestore.Store
	producer *kafka.Producer
	metrics  *prom.Metrics
	node     *engine.Node
	closers  []func()
}

func (w *wiring) close() {
	for i := len(w.closers) - 1; i >= 0; i-- {
		w.closers[i]()
	}
}

// build opens the store and the producer, reads the topics' record limits
// and creates the engine node.
func build(ctx context.Context, a *app.App, cfg *config, conn kafka.Conn) (_ *wiring, err error) {
	w := &wiring{a: a, cfg: cfg, conn: conn}
	defer func() {
		if err != nil {
			w.close() // what was opened before the failure
		}
	}()
	if w.store, err = pebblestore.Open(filepath.Join(cfg.dataDir, "state"), pebblestore.Options{}); err != nil {
		return nil, err
	}
	w.closers = append(w.closers, func() { w.store.Close() })
	if w.producer, err = kafka.NewProducer(conn); err != nil {
		return nil, err
	}
	w.closers = append(w.closers, w.producer.Close)
	w.metrics = prom.New(a.Name)
	eos := a.Kafka.ExactlyOnce()
	opts := engine.Options{App: a, Store: w.store, Producer: w.producer, Clock: cfg.clock, Metrics: w.metrics, Logger: cfg.logger,
		Reset: cfg.reset, ResetAll: cfg.resetAll,
		Functions: cfg.functions, Executors: cfg.executors, MinFreeBytes: cfg.minFreeBytes, MemoryBudget: cfg.memoryBudget, SinkKinds: map[string]engine.SinkKind{},
		CommitInterval: a.Kafka.CommitIntervalDuration(), FencedWait: a.Kafka.SessionTimeoutDuration(),
		Writers: func(int32) (engine.PartitionWriter, error) { return w.producer.Writer(), nil }}
	for _, k := range cfg.sinks {
		opts.SinkKinds[k.spec.Name] = k.impl
	}
	if opts.Formats, err = registryFormats(ctx, a, cfg); err != nil {
		return nil, err
	}
	if eos {
		opts.Writers = func(part int32) (engine.PartitionWriter, error) {
			wctx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			return kafka.NewTxnWriter(wctx, conn, kafka.TransactionalID(a.Name, part))
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
	limits, lerr := kafka.RecordLimits(lctx, conn, limitTopics)
	lcancel()
	if lerr != nil {
		cfg.logger.Warn("topic record limits unknown; assuming 1 MiB", "error", lerr)
	}
	opts.RecordLimits = limits
	if a.Kafka.ChangelogEnabled() {
		opts.ChangelogTopic = a.Kafka.ChangelogTopic
		opts.ChangelogReader = &kafka.ChangelogReader{Conn: conn, Topic: a.Kafka.ChangelogTopic, ReadCommitted: eos}
	}
	if w.node, err = engine.New(opts); err != nil {
		return nil, err
	}
	return w, nil
}

// run starts everything around the node — reference tables, the HTTP
// server, standbys, the source, generators, progress — and waits until
// ctx ends or a part fails; then it stops softly: the source leaves its
// group (tasks flush and commit), then the node, then the HTTP server.
func (w *wiring) run(ctx context.Context, cancel context.CancelFunc) error {
	a, cfg, node := w.a, w.cfg, w.node
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	errs := make(chan error, 4)
	if err := w.startTables(ctx, &wg); err != nil {
		return err
	}
	describer, err := kafka.NewGroupDescriber(w.conn, a.Kafka.Group, a.Sources[0].Topic)
	if err != nil {
		return err
	}
	defer func() {
		// The standby follower uses the describer until it exits.
		cancel()
		wg.Wait()
		describer.Close()
	}()
	httpAddr := ""
	var ln net.Listener
	if cfg.httpAddr != "" {
		if ln, err = net.Listen("tcp", cfg.httpAddr); err != nil {
			return fmt.Errorf("http: %w", err)
		}
		httpAddr = ln.Addr().String()
	}
	rt := &router{group: describer, self: memberID(cfg.advertise, httpAddr, engine.AppHash(a)), client: &http.Client{Timeout: 30 * time.Second}}
	if !cfg.joinedMeanwhile {
		if err := checkGroupApps(ctx, rt, a); err != nil {
			return err
		}
	}
	if a.Kafka.StandbyReplicas > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			followStandbys(ctx, rt, node, a.Kafka.StandbyReplicas)
		}()
	}
	var srv *http.Server
	if ln != nil {
		srv = &http.Server{Handler: handler(a, node, w.producer, w.metrics, rt, newConsole(ctx, a, node, w.metrics, rt, w.conn)), ReadHeaderTimeout: 5 * time.Second}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errs <- err
			}
		}()
		defer func() {
			sctx, c := context.WithTimeout(context.Background(), 2*time.Second)
			_ = srv.Shutdown(sctx)
			c()
		}()
	}

	nodeCtx, stopNode := context.WithCancel(context.Background())
	defer stopNode()
	nodeDone := make(chan error, 1)
	go func() { nodeDone <- node.Run(nodeCtx) }()
	srcDone := make(chan error, 1)
	if topics := sourceTopics(a); len(topics) > 0 {
		src := &kafka.Source{Conn: w.conn, Group: a.Kafka.Group, Topics: topics, Node: node, Logger: cfg.logger,
			ReadCommitted: a.Kafka.ExactlyOnce(), SessionTimeout: a.Kafka.SessionTimeoutDuration(), ClientID: rt.self, ProbeInterval: cfg.probeInterval,
			// Checked again once the group is formed: a member that joined
			// while this node started is known only now.
			BeforeFirstAssign: func(ctx context.Context) error { return checkGroupApps(ctx, rt, a) }}
		go func() { srcDone <- src.Run(ctx) }()
	} else {
		go func() { <-ctx.Done(); srcDone <- nil }()
	}
	w.startConnectorSources(ctx, &wg, errs)
	w.startGenerators(ctx, &wg)

	fmt.Fprintf(cfg.banner, "pheromone: app %q running\n  brokers: %s\n", a.Name, strings.Join(w.conn.Brokers, ","))
	if cfg.registryURL != "" {
		fmt.Fprintf(cfg.banner, "  registry: %s\n", cfg.registryURL)
	}
	fmt.Fprintf(cfg.banner, "  console: http://%s/\n  metrics: http://%s/metrics\n  data:    %s\n", httpAddr, httpAddr, cfg.dataDir)
	if cfg.progress != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			progress(ctx, node, cfg.progress)
		}()
	}
	if cfg.started != nil {
		cfg.started(Info{Brokers: w.conn.Brokers, HTTPAddr: httpAddr, Node: node, RegistryURL: cfg.registryURL})
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
	cancel()
	if err := <-srcDone; err != nil && runErr == nil {
		runErr = err
	}
	stopNode()
	if err := <-nodeDone; err != nil && runErr == nil {
		runErr = err
	}
	return runErr
}

// sourceTopics are the topics the node's consumer group reads: the
// sources' and the repartition topics.
func sourceTopics(a *app.App) []string {
	var topics []string
	for _, s := range a.Sources {
		if !s.Connector() {
			topics = append(topics, s.Topic)
		}
	}
	for _, b := range a.Buckets {
		if b.PartitionBy != "" {
			topics = append(topics, a.RepartitionTopic(b.Name))
		}
	}
	if a.DurableInvoke() {
		topics = append(topics, a.InvocationsTopic())
	}
	return topics
}

// startTables loads every reference table before any record is processed,
// then follows the topic-fed ones while the node runs.
func (w *wiring) startTables(ctx context.Context, wg *sync.WaitGroup) error {
	for _, tb := range w.a.Tables {
		if tb.File != "" {
			if err := loadTableFile(w.node, &tb); err != nil {
				return err
			}
			continue
		}
		loadCtx, cancelLoad := context.WithTimeout(ctx, 2*time.Minute)
		tail, err := kafka.FeedTable(loadCtx, w.conn, tb.Topic, w.upsertTable(ctx, tb.Name), w.cfg.logger)
		cancelLoad()
		if err != nil {
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = tail(ctx)
		}()
	}
	return nil
}

// startGenerators runs the built-in generators of `kind: generator`
// sources, producing into their topics.
func (w *wiring) startGenerators(ctx context.Context, wg *sync.WaitGroup) {
	for _, s := range w.a.Sources {
		if s.Kind != "generator" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			encode, err := w.generatorFormat(ctx, &s)
			if err != nil {
				if ctx.Err() == nil {
					w.cfg.logger.Error("generator stopped", "source", s.Name, "error", err)
				}
				return
			}
			generator.Run(ctx, s.Generator.Seed, s.Generator.Rate, s.Generator.Limit, s.Key, func(k, v []byte) {
				if v = encode(v); v == nil {
					return
				}
				w.producer.Produce(&engine.OutRecord{Topic: s.Topic, Key: k, Value: v}, func(err error) {
					if err != nil && ctx.Err() == nil {
						w.cfg.logger.Warn("generator produce failed", "topic", s.Topic, "error", err)
					}
				})
			})
		}()
	}
}

// startConnectorSources runs the sources of connectors' kinds, each
// feeding the node; one that fails stops the node (through errs).
func (w *wiring) startConnectorSources(ctx context.Context, wg *sync.WaitGroup, errs chan<- error) {
	kinds := map[string]engine.SourceKind{}
	for _, k := range w.cfg.sources {
		kinds[k.spec.Name] = k.impl
	}
	for i := range w.a.Sources {
		s := &w.a.Sources[i]
		if !s.Connector() {
			continue
		}
		kind := kinds[s.Kind]
		if kind == nil {
			errs <- fmt.Errorf("source %s: no connector for source kind %q in this binary", s.Name, s.Kind)
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := kind.Run(ctx, s, w.node); err != nil {
				select {
				case errs <- fmt.Errorf("source %s: %w", s.Name, err):
				default:
				}
			}
		}()
	}
}
