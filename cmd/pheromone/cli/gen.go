package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/pheromone-go/pheromone/connectors/generator"
	"github.com/pheromone-go/pheromone/connectors/kafka"
	"github.com/pheromone-go/pheromone/engine"
)

// cmdGen runs a data generator against a broker: `pheromone gen ysb`.
func cmdGen(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "ysb" {
		fmt.Fprintln(stderr, "pheromone gen: usage: pheromone gen ysb [--rate N] [--duration D | --count N] [--seed S] [--brokers LIST] [--expected FILE]")
		return 2
	}
	fs := flag.NewFlagSet("gen ysb", flag.ContinueOnError)
	fs.SetOutput(stderr)
	rate := fs.Int("rate", 10000, "events per second (0: as fast as possible, event times 0.1 ms apart)")
	duration := fs.Duration("duration", 10*time.Second, "how long to generate (ignored with --count)")
	count := fs.Int64("count", 0, "how many events (overrides --duration)")
	seed := fs.Int64("seed", 1, "random seed")
	brokers := fs.String("brokers", "127.0.0.1:9092", "comma-separated brokers")
	topic := fs.String("topic", "ad-events", "events topic")
	campaigns := fs.String("campaigns-topic", "ysb-campaigns", "compacted campaigns topic")
	expected := fs.String("expected", "", "write the expected per-campaign window counts here (JSON lines)")
	if err := fs.Parse(args[1:]); err != nil {
		return flagExit(err)
	}
	total := *count
	eventRate := *rate
	if eventRate <= 0 {
		eventRate = 10000
	}
	if total == 0 {
		total = int64(duration.Seconds() * float64(eventRate))
	}
	bl := strings.Split(*brokers, ",")
	if err := kafka.EnsureCompactedTopics(ctx, kafka.Plain(bl...), map[string]int{*campaigns: 1}); err != nil {
		fmt.Fprintln(stderr, "pheromone gen:", err)
		return 1
	}
	if err := kafka.EnsureTopics(ctx, kafka.Plain(bl...), map[string]int{*topic: 4}); err != nil {
		fmt.Fprintln(stderr, "pheromone gen:", err)
		return 1
	}
	prod, err := kafka.NewProducer(kafka.Plain(bl...))
	if err != nil {
		fmt.Fprintln(stderr, "pheromone gen:", err)
		return 1
	}
	defer prod.Close()
	var failed atomic.Value
	done := func(err error) {
		if err != nil {
			failed.Store(err)
		}
	}
	start := time.Now()
	gen := generator.NewYSB(*seed, start, eventRate)
	gen.Campaigns(func(k, v []byte) { prod.Produce(&engine.OutRecord{Topic: *campaigns, Key: k, Value: v}, done) })
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for gen.Generated() < total && ctx.Err() == nil {
		due := total
		if *rate > 0 {
			due = min(total, int64(time.Since(start).Seconds()*float64(*rate)))
		}
		for gen.Generated() < due {
			v, k := gen.Next(nil)
			prod.Produce(&engine.OutRecord{Topic: *topic, Key: k, Value: v}, done)
		}
		if *rate > 0 {
			<-tick.C
		}
	}
	if err := prod.Flush(ctx); err != nil {
		fmt.Fprintln(stderr, "pheromone gen:", err)
		return 1
	}
	if err, ok := failed.Load().(error); ok {
		fmt.Fprintln(stderr, "pheromone gen:", err)
		return 1
	}
	took := time.Since(start)
	fmt.Fprintf(stdout, "wrote %d YSB events to %s in %v (%.0f/s), 1000 ads of 100 campaigns to %s\n",
		gen.Generated(), *topic, took.Round(time.Millisecond), float64(gen.Generated())/took.Seconds(), *campaigns)
	if *expected != "" {
		lines := gen.ExpectedLines()
		sort.Strings(lines)
		if err := os.WriteFile(*expected, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
			fmt.Fprintln(stderr, "pheromone gen:", err)
			return 1
		}
		fmt.Fprintf(stdout, "expected %d campaign windows written to %s\n", len(lines), *expected)
	}
	return 0
}
