// Command exchange measures two of the paper's microbenchmarks through
// invoke on one node, each beside baselines measured in the same run:
//
//	fan-out/fan-in: one invocation fans out into W objects (split) that a
//	by_batch_size trigger of W joins; time from invoke to joined result,
//	against goroutines + WaitGroup (the floor) and W records produced and
//	consumed through Kafka (one log round trip);
//
//	data exchange: a Go function emits a payload of P bytes into a bucket
//	and the next function starts; the in-node hop time (stamped inside the
//	functions), against a copy of P bytes (the floor) and a Kafka
//	produce→consume round trip of a P-byte record.
//
//	go run ./benchmarks/exchange -widths 10,100,1000,4000 -sizes 1024,102400,1048576,10485760
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
	widths := flag.String("widths", "10,100,1000,4000", "fan-out widths")
	sizes := flag.String("sizes", "1024,102400,1048576,10485760", "payload sizes in bytes")
	n := flag.Int("n", 50, "measurements per point")
	flag.Parse()
	if err := run(ints(*widths), ints(*sizes), *n); err != nil {
		fmt.Fprintln(os.Stderr, "exchange:", err)
		os.Exit(1)
	}
}

func ints(s string) []int {
	var out []int
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(f))
		if err == nil && v > 0 {
			out = append(out, v)
		}
	}
	return out
}

func run(widths, sizes []int, n int) error {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		return err
	}
	defer c.Close()
	brokers := c.ListenAddrs()

	fmt.Println("## Fan-out / fan-in (split into W, joined by by_batch_size W)")
	fmt.Println()
	fmt.Println("| width | invoke→joined p50 | p99 | goroutines+WaitGroup (mean) | Kafka W records round trip p50 |")
	fmt.Println("|---|---|---|---|---|")
	for _, w := range widths {
		lat, err := bench.FanOut(brokers, w, n)
		if err != nil {
			return fmt.Errorf("fan-out %d: %w", w, err)
		}
		kl, err := bench.KafkaRoundTrip(brokers, w, 100, max(5, n/5))
		if err != nil {
			return err
		}
		fmt.Printf("| %d | %v | %v | %v | %v |\n", w, bench.Pct(lat, 50).Round(time.Microsecond), bench.Pct(lat, 99).Round(time.Microsecond),
			bench.GoFanOut(w).Round(100*time.Nanosecond), bench.Pct(kl, 50).Round(time.Microsecond))
	}

	fmt.Println()
	fmt.Println("## Data exchange between two functions (in-node hop, stamped inside the functions)")
	fmt.Println()
	fmt.Println("| payload | hop p50 | hop p99 | memory copy (mean) | Kafka record round trip p50 |")
	fmt.Println("|---|---|---|---|---|")
	for _, size := range sizes {
		lat, err := bench.Exchange(brokers, size, n)
		if err != nil {
			return fmt.Errorf("exchange %d: %w", size, err)
		}
		kl, err := bench.KafkaRoundTrip(brokers, 1, size, max(5, n/5))
		if err != nil {
			return err
		}
		fmt.Printf("| %s | %v | %v | %v | %v |\n", bench.Human(size), bench.Pct(lat, 50).Round(time.Microsecond), bench.Pct(lat, 99).Round(time.Microsecond),
			bench.CopyTime(size).Round(100*time.Nanosecond), bench.Pct(kl, 50).Round(time.Microsecond))
	}
	return nil
}
