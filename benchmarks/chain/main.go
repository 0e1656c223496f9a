// Command chain measures the paper's function-chain benchmark: the latency
// of an invocation through chains of 1, 10, 100 and 500 functions, each hop
// passing its output through a bucket on the same node — in memory
// (invoke.durable: false) and durable (the request a Kafka record first,
// the answer after its cycle commits) — against two baselines measured in
// the same run: a plain Go call chain (the floor) and one Kafka
// produce→consume round trip per hop (what an orchestrator that passes
// data through the log on every hop pays).
//
//	go run ./benchmarks/chain -lengths 1,10,100,500 -n 200
package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/pheromone-go/pheromone/benchmarks/internal/bench"
)

func main() {
	lengths := flag.String("lengths", "1,10,100,500", "chain lengths")
	n := flag.Int("n", 200, "invocations per length")
	flag.Parse()
	if err := run(*lengths, *n); err != nil {
		fmt.Fprintln(os.Stderr, "chain:", err)
		os.Exit(1)
	}
}

func run(lengthList string, n int) error {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		return err
	}
	defer c.Close()
	brokers := c.ListenAddrs()
	hop, err := bench.KafkaHop(brokers, n)
	if err != nil {
		return err
	}
	fmt.Printf("kafka produce->consume round trip per hop: p50 %v p99 %v\n\n", bench.Pct(hop, 50), bench.Pct(hop, 99))
	fmt.Println("| chain length | in memory p50 | in memory p99 | per hop p50 | per hop p99 | durable p50 | durable p99 | plain Go chain | Kafka hops p50 (length x round trip) |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|")
	for _, f := range strings.Split(lengthList, ",") {
		length, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || length < 1 {
			return fmt.Errorf("bad length %q", f)
		}
		lat, err := bench.InvokeChain(brokers, length, n, false)
		if err != nil {
			return fmt.Errorf("length %d: %w", length, err)
		}
		dur, err := bench.InvokeChain(brokers, length, n, true)
		if err != nil {
			return fmt.Errorf("length %d, durable: %w", length, err)
		}
		goChain := bench.PlainChain(length)
		us := func(d time.Duration) time.Duration { return d.Round(time.Microsecond) }
		fmt.Printf("| %d | %v | %v | %v | %v | %v | %v | %v | %v |\n", length,
			us(bench.Pct(lat, 50)), us(bench.Pct(lat, 99)),
			(bench.Pct(lat, 50) / time.Duration(length)).Round(100*time.Nanosecond),
			(bench.Pct(lat, 99) / time.Duration(length)).Round(100*time.Nanosecond),
			us(bench.Pct(dur, 50)), us(bench.Pct(dur, 99)),
			goChain, (bench.Pct(hop, 50) * time.Duration(length)).Round(time.Microsecond))
	}
	return nil
}
