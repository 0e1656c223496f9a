// Package cli is the pheromone command line: flags and client commands.
// Running a node is the server package's job; a user who builds their own
// binary with Go functions calls MainWith from here (or server.Run).
package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"syscall"

	"github.com/pheromone-go/pheromone/engine"
	"github.com/pheromone-go/pheromone/engine/app"
	"github.com/pheromone-go/pheromone/engine/fn"
	"github.com/pheromone-go/pheromone/server"
)

const usage = `pheromone: data-centric stream processing on Kafka

Usage:
  pheromone run -f app.yaml [--data-dir DIR] [--http ADDR] [--advertise URL] [--brokers LIST] [--embedded-broker ADDR]
                [--embedded-registry ADDR] [--executors N] [--memory-budget MiB] [--reset NAME]... [--reset-all]
  pheromone validate -f app.yaml
  pheromone test [FILES|DIRS] [-run REGEX] [--junit FILE] [-v]
  pheromone plan -f new.yaml [--data-dir DIR | --addr URL] [--reset NAME]... [--reset-all]
  pheromone broker [--data-dir DIR] [--addr ADDR] [--count N] [--registry ADDR] [--tls-self-signed DIR | --tls-cert F --tls-key F]
                   [--superuser M:NAME:PW]... [--user M:NAME:PW]... [--acl USER:OP:RESOURCE:NAME]...
  pheromone invoke APP [--data FILE] [--addr URL] [--async]
  pheromone query APP BUCKET [--key K] [--session S] [--limit N] [--addr URL]
  pheromone produce -t TOPIC [--format json|avro|protobuf|json_schema] [--schema-file F] [--registry URL] [--brokers LIST] < lines.jsonl
  pheromone consume -t TOPIC [--format json|avro|protobuf|json_schema] [--registry URL] [--brokers LIST]
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
	case "plan":
		return cmdPlan(reg, args[1:], stdout, stderr)
	case "test":
		return cmdTest(ctx, reg, args[1:], stdout, stderr)
	case "produce":
		return cmdProduce(ctx, args[1:], os.Stdin, stdout, stderr)
	case "consume":
		return cmdConsume(ctx, args[1:], stdout, stderr)
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
	a, err := app.LoadWith(file, server.Connectors())
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

func cmdRun(ctx context.Context, reg *fn.Registry, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("f", "", "app file")
	dataDir := fs.String("data-dir", "pheromone-data", "directory for state (and the embedded broker's data)")
	httpAddr := fs.String("http", "127.0.0.1:8080", "HTTP address for /healthz, /readyz and /metrics")
	brokers := fs.String("brokers", "", "comma-separated Kafka brokers (default: the app file's kafka.brokers, else the embedded broker)")
	embedded := fs.String("embedded-broker", "127.0.0.1:9092", "address of the embedded broker")
	embeddedReg := fs.String("embedded-registry", "", "address of the schema registry served with the embedded broker (default 127.0.0.1:8081 when the app has a registry format, else any free port)")
	executors := fs.Int("executors", 0, "function executor pool size (default: number of CPUs)")
	advertise := fs.String("advertise", "", "base URL other nodes forward queries to (default http://<http address>)")
	var resets list
	fs.Var(&resets, "reset", "drop the state of this trigger, bucket or table sink when the app changed in a way it cannot follow (docs/upgrades.md); repeatable")
	resetAll := fs.Bool("reset-all", false, "drop all of the app's state when it changed in a way the state cannot follow (the input is read again)")
	memBudget := fs.Int64("memory-budget", 0, "MiB of durable bucket chunks a partition keeps decoded in memory; beyond, a firing reads them back from disk (default 32)")
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
	opts := []server.Opt{server.DataDir(*dataDir), server.HTTPAddr(*httpAddr), server.Advertise(*advertise),
		server.EmbeddedBroker(*embedded), server.Executors(*executors), server.MinFreeBytes(*minFree << 20), server.MemoryBudget(*memBudget << 20),
		server.Functions(reg.Functions()), server.Banner(stdout), server.Progress(stdout),
		server.Logger(slog.New(slog.NewTextHandler(stderr, nil)))}
	if *brokers != "" {
		opts = append(opts, server.Brokers(strings.Split(*brokers, ",")...))
	}
	opts = append(opts, server.Reset(resets...))
	if *resetAll {
		opts = append(opts, server.ResetAll())
	}
	switch {
	case *embeddedReg != "":
		opts = append(opts, server.EmbeddedRegistry(*embeddedReg))
	case a.UsesRegistry():
		opts = append(opts, server.EmbeddedRegistry("127.0.0.1:8081"))
	}
	if f := os.Getenv("PHEROMONE_CPUPROFILE"); f != "" {
		// A CPU profile of the whole run, for performance work on a node
		// process (benchmarks start nodes as processes).
		if pf, err := os.Create(f); err == nil && pprof.StartCPUProfile(pf) == nil {
			defer func() { pprof.StopCPUProfile(); pf.Close() }()
		}
	}
	if err := server.Run(ctx, a, opts...); err != nil {
		fmt.Fprintln(stderr, "pheromone:", err)
		return 1
	}
	return 0
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
