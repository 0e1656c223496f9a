// Command chain measures the paper's function-chain benchmark: the latency
// of an invocation through chains of 1, 10, 100 and 500 functions, each hop
// passing its output through a bucket on the same node, against two
// baselines measured in the same run: a plain Go call chain (the floor)
// and one Kafka produce→consume round trip per hop (what an orchestrator
// that passes data through the log on every hop pays).
//
//	go run ./benchmarks/chain -lengths 1,10,100,500 -n 200
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pheromone-go/pheromone/benchmarks/internal/bench"
	"github.com/pheromone-go/pheromone/cmd/pheromone/cli"
	"github.com/pheromone-go/pheromone/connectors/kafka"
	"github.com/pheromone-go/pheromone/engine/app"
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

func chainApp(length int) string {
	var b strings.Builder
	b.WriteString(`app: chain
sources:
  - name: requests
    topic: requests
    partitions: 1
    schema: [{name: session, type: string}, {name: x, type: int64}]
    bucket: b0
invoke: {entry: b0, result: reply}
buckets:
  - {name: b0, session: session}
`)
	for i := 1; i < length; i++ {
		fmt.Fprintf(&b, "  - {name: b%d}\n", i)
	}
	b.WriteString("triggers:\n")
	for i := 0; i < length; i++ {
		fmt.Fprintf(&b, "  - {name: t%d, bucket: b%d, primitive: immediate, function: f%d}\n", i, i, i)
	}
	b.WriteString("functions:\n")
	for i := 0; i < length; i++ {
		out := fmt.Sprintf("b%d", i+1)
		if i == length-1 {
			out = "reply"
		}
		fmt.Fprintf(&b, "  - {name: f%d, kind: emit, outputs: [%s]}\n", i, out)
	}
	b.WriteString("sinks: [{name: reply, kind: result}]\n")
	return b.String()
}

func pct(ds []time.Duration, p int) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)]
}

func run(lengthList string, n int) error {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		return err
	}
	defer c.Close()
	brokers := c.ListenAddrs()
	hop, err := kafkaHop(brokers, n)
	if err != nil {
		return err
	}
	fmt.Printf("kafka produce->consume round trip per hop: p50 %v p99 %v\n\n", pct(hop, 50), pct(hop, 99))
	fmt.Println("| chain length | invoke p50 | invoke p99 | per hop p50 | per hop p99 | plain Go chain | Kafka hops p50 (length x round trip) |")
	fmt.Println("|---|---|---|---|---|---|---|")
	for _, f := range strings.Split(lengthList, ",") {
		length, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || length < 1 {
			return fmt.Errorf("bad length %q", f)
		}
		lat, err := invokeChain(brokers, length, n)
		if err != nil {
			return fmt.Errorf("length %d: %w", length, err)
		}
		goChain := plainChain(length)
		fmt.Printf("| %d | %v | %v | %v | %v | %v | %v |\n", length,
			pct(lat, 50).Round(time.Microsecond), pct(lat, 99).Round(time.Microsecond),
			(pct(lat, 50) / time.Duration(length)).Round(100*time.Nanosecond),
			(pct(lat, 99) / time.Duration(length)).Round(100*time.Nanosecond),
			goChain, (pct(hop, 50) * time.Duration(length)).Round(time.Microsecond))
	}
	return nil
}

func invokeChain(brokers []string, length, n int) ([]time.Duration, error) {
	a, err := app.Parse([]byte(chainApp(length)))
	if err != nil {
		return nil, err
	}
	if err := a.Validate(); err != nil {
		return nil, err
	}
	a.Kafka.Group = fmt.Sprintf("chain-%d", length)
	nd, err := bench.StartNode(context.Background(), a, brokers, cli.RunConfig{HTTPAddr: "127.0.0.1:0"})
	if err != nil {
		return nil, err
	}
	defer nd.Stop()
	info := nd.Info
	for !info.Node.Ready() {
		time.Sleep(time.Millisecond)
	}
	url := "http://" + info.HTTPAddr + "/v1/apps/chain/invoke"
	client := &http.Client{}
	var lat []time.Duration
	for i := 0; i < n+20; i++ {
		start := time.Now()
		resp, err := client.Post(url, "application/json", strings.NewReader(`{"x":1}`))
		if err != nil {
			return nil, err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"result":[{"session"`) {
			return nil, fmt.Errorf("invoke: %d %s", resp.StatusCode, body)
		}
		if i >= 20 { // warm-up
			lat = append(lat, time.Since(start))
		}
	}
	return lat, nil
}

// plainChain is the floor: length nested Go calls passing a value along.
func plainChain(length int) time.Duration {
	f := func(x int) int { return x + 1 }
	const reps = 1000
	start := time.Now()
	x := 0
	for r := 0; r < reps; r++ {
		for i := 0; i < length; i++ {
			x = f(x)
		}
	}
	d := time.Since(start) / reps
	if x < 0 {
		fmt.Println(x)
	}
	return d
}

// kafkaHop measures produce -> consume of one record through kfake.
func kafkaHop(brokers []string, n int) ([]time.Duration, error) {
	ctx := context.Background()
	if err := kafka.EnsureTopics(ctx, brokers, map[string]int{"hop": 1}); err != nil {
		return nil, err
	}
	prod, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic("hop"))
	if err != nil {
		return nil, err
	}
	defer prod.Close()
	cons, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics("hop"), kgo.FetchMaxWait(10*time.Millisecond),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtEnd()))
	if err != nil {
		return nil, err
	}
	defer cons.Close()
	// Make sure the consumer is positioned before measuring.
	pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	cons.PollFetches(pctx)
	cancel()
	var lat []time.Duration
	for i := 0; i < n; i++ {
		start := time.Now()
		if err := prod.ProduceSync(ctx, &kgo.Record{Value: []byte(`{"x":1}`)}).FirstErr(); err != nil {
			return nil, err
		}
		for got := false; !got; {
			fs := cons.PollFetches(ctx)
			fs.EachRecord(func(*kgo.Record) { got = true })
		}
		lat = append(lat, time.Since(start))
	}
	return lat, nil
}
