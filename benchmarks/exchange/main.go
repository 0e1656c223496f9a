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
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/memory"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pheromone-go/pheromone/benchmarks/internal/bench"
	"github.com/pheromone-go/pheromone/cmd/pheromone/cli"
	"github.com/pheromone-go/pheromone/connectors/kafka"
	"github.com/pheromone-go/pheromone/engine/app"
	"github.com/pheromone-go/pheromone/engine/fn"
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

func pct(ds []time.Duration, p int) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)]
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
		lat, err := fanOut(brokers, w, n)
		if err != nil {
			return fmt.Errorf("fan-out %d: %w", w, err)
		}
		kl, err := kafkaRoundTrip(brokers, w, 100, max(5, n/5))
		if err != nil {
			return err
		}
		fmt.Printf("| %d | %v | %v | %v | %v |\n", w, pct(lat, 50).Round(time.Microsecond), pct(lat, 99).Round(time.Microsecond),
			goFanOut(w).Round(100*time.Nanosecond), pct(kl, 50).Round(time.Microsecond))
	}

	fmt.Println()
	fmt.Println("## Data exchange between two functions (in-node hop, stamped inside the functions)")
	fmt.Println()
	fmt.Println("| payload | hop p50 | hop p99 | memory copy (mean) | Kafka record round trip p50 |")
	fmt.Println("|---|---|---|---|---|")
	for _, size := range sizes {
		lat, err := exchange(brokers, size, n)
		if err != nil {
			return fmt.Errorf("exchange %d: %w", size, err)
		}
		kl, err := kafkaRoundTrip(brokers, 1, size, max(5, n/5))
		if err != nil {
			return err
		}
		fmt.Printf("| %s | %v | %v | %v | %v |\n", human(size), pct(lat, 50).Round(time.Microsecond), pct(lat, 99).Round(time.Microsecond),
			copyTime(size).Round(100*time.Nanosecond), pct(kl, 50).Round(time.Microsecond))
	}
	return nil
}

func human(n int) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%d MB", n>>20)
	case n >= 1<<10:
		return fmt.Sprintf("%d KB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}

// node runs an app and returns its invoke URL and a stop function.
func node(brokers []string, yaml string, fns map[string]fn.Function) (string, func(), error) {
	a, err := app.Parse([]byte(yaml))
	if err != nil {
		return "", nil, err
	}
	if err := a.Validate(); err != nil {
		return "", nil, err
	}
	nd, err := bench.StartNode(context.Background(), a, brokers, cli.RunConfig{HTTPAddr: "127.0.0.1:0", Functions: fns})
	if err != nil {
		return "", nil, err
	}
	for !nd.Node.Ready() {
		time.Sleep(time.Millisecond)
	}
	return "http://" + nd.HTTPAddr + "/v1/apps/" + a.Name + "/invoke", func() { _ = nd.Stop() }, nil
}

func invoke(url string, body []byte) ([]byte, time.Duration, error) {
	start := time.Now()
	resp, err := http.Post(url, "application/json", strings.NewReader(string(body)))
	if err != nil {
		return nil, 0, err
	}
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, 0, fmt.Errorf("invoke: %d %s", resp.StatusCode, out)
	}
	return out, time.Since(start), nil
}

func fanOut(brokers []string, width, n int) ([]time.Duration, error) {
	yaml := fmt.Sprintf(`app: fan%d
sources:
  - {name: requests, topic: fan%d-requests, partitions: 1, schema: [{name: session, type: string}, {name: words, type: string}], bucket: requests}
buckets: [{name: requests, session: session}, {name: parts, max_objects: 10000000}]
invoke: {entry: requests, result: reply}
triggers:
  - {name: fan, bucket: requests, primitive: immediate, function: fan_out}
  - {name: join, bucket: parts, primitive: by_batch_size, count: %d, function: joined}
functions:
  - {name: fan_out, kind: split, column: words, as: part, outputs: [parts]}
  - {name: joined, kind: aggregate, aggregates: [{name: parts, op: count}], outputs: [reply]}
sinks: [{name: reply, kind: result}]
`, width, width, width)
	url, stop, err := node(brokers, yaml, nil)
	if err != nil {
		return nil, err
	}
	defer stop()
	body, _ := json.Marshal(map[string]string{"words": strings.TrimSpace(strings.Repeat("w ", width))})
	want := fmt.Sprintf(`"result":[{"parts":%d}]`, width)
	var lat []time.Duration
	for i := 0; i < n+5; i++ {
		out, d, err := invoke(url, body)
		if err != nil {
			return nil, err
		}
		if !strings.Contains(string(out), want) {
			return nil, fmt.Errorf("result %s, want %s", out, want)
		}
		if i >= 5 {
			lat = append(lat, d)
		}
	}
	return lat, nil
}

func goFanOut(width int) time.Duration {
	const reps = 20
	start := time.Now()
	for r := 0; r < reps; r++ {
		var wg sync.WaitGroup
		results := make([]int, width)
		for i := 0; i < width; i++ {
			wg.Add(1)
			go func(i int) { defer wg.Done(); results[i] = i }(i)
		}
		wg.Wait()
	}
	return time.Since(start) / reps
}

var payloadSchema = arrow.NewSchema([]arrow.Field{
	{Name: "data", Type: arrow.BinaryTypes.Binary},
	{Name: "sent_ns", Type: arrow.PrimitiveTypes.Int64},
}, nil)

// exchange: produce makes a payload of size bytes and stamps the time it
// emits it; consume (the next function, in-node) replies with the delay.
func exchange(brokers []string, size, n int) ([]time.Duration, error) {
	yaml := fmt.Sprintf(`app: ex%d
sources:
  - {name: requests, topic: ex%d-requests, partitions: 1, schema: [{name: session, type: string}, {name: x, type: int64}], bucket: requests}
buckets: [{name: requests, session: session}, {name: payloads}]
invoke: {entry: requests, result: reply}
triggers:
  - {name: make, bucket: requests, primitive: immediate, function: produce}
  - {name: take, bucket: payloads, primitive: immediate, function: consume}
functions:
  - {name: produce, kind: go, schema: [{name: data, type: bytes}, {name: sent_ns, type: int64}], outputs: [payloads]}
  - {name: consume, kind: go, schema: [{name: hop_ns, type: int64}, {name: bytes, type: int64}], outputs: [reply]}
sinks: [{name: reply, kind: result}]
`, size, size)
	payload := make([]byte, size)
	fns := map[string]fn.Function{
		"produce": fn.Func(func(_ context.Context, in fn.Input, out fn.Output) error {
			b := array.NewRecordBuilder(memory.DefaultAllocator, payloadSchema)
			defer b.Release()
			b.Field(0).(*array.BinaryBuilder).Append(payload)
			b.Field(1).(*array.Int64Builder).Append(time.Now().UnixNano())
			return out.Emit(b.NewRecord())
		}),
		"consume": fn.Func(func(_ context.Context, in fn.Input, out fn.Output) error {
			now := time.Now().UnixNano()
			rec := in.Records[0]
			sent := rec.Column(1).(*array.Int64).Value(0)
			n := len(rec.Column(0).(*array.Binary).Value(0))
			s := arrow.NewSchema([]arrow.Field{{Name: "hop_ns", Type: arrow.PrimitiveTypes.Int64}, {Name: "bytes", Type: arrow.PrimitiveTypes.Int64}}, nil)
			b := array.NewRecordBuilder(memory.DefaultAllocator, s)
			defer b.Release()
			b.Field(0).(*array.Int64Builder).Append(now - sent)
			b.Field(1).(*array.Int64Builder).Append(int64(n))
			return out.Emit(b.NewRecord())
		}),
	}
	url, stop, err := node(brokers, yaml, fns)
	if err != nil {
		return nil, err
	}
	defer stop()
	var lat []time.Duration
	for i := 0; i < n+5; i++ {
		out, _, err := invoke(url, []byte(`{"x":1}`))
		if err != nil {
			return nil, err
		}
		var resp struct {
			Result []struct {
				HopNs int64 `json:"hop_ns"`
				Bytes int64 `json:"bytes"`
			} `json:"result"`
		}
		if err := json.Unmarshal(out, &resp); err != nil || len(resp.Result) != 1 || resp.Result[0].Bytes != int64(size) {
			return nil, fmt.Errorf("bad reply %s", out)
		}
		if i >= 5 {
			lat = append(lat, time.Duration(resp.Result[0].HopNs))
		}
	}
	return lat, nil
}

func copyTime(size int) time.Duration {
	src, dst := make([]byte, size), make([]byte, size)
	const reps = 20
	start := time.Now()
	for r := 0; r < reps; r++ {
		copy(dst, src)
	}
	return time.Since(start) / reps
}

// kafkaRoundTrip produces count records of size bytes and consumes them
// back, measured reps times.
func kafkaRoundTrip(brokers []string, count, size, reps int) ([]time.Duration, error) {
	ctx := context.Background()
	topic := fmt.Sprintf("rt-%d-%d", count, size)
	if err := kafka.EnsureTopics(ctx, brokers, map[string]int{topic: 1}); err != nil {
		return nil, err
	}
	prod, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(topic), kgo.ProducerBatchMaxBytes(16<<20))
	if err != nil {
		return nil, err
	}
	defer prod.Close()
	cons, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic), kgo.FetchMaxWait(10*time.Millisecond),
		kgo.FetchMaxBytes(64<<20), kgo.FetchMaxPartitionBytes(64<<20))
	if err != nil {
		return nil, err
	}
	defer cons.Close()
	value := make([]byte, size)
	var lat []time.Duration
	for r := 0; r < reps; r++ {
		recs := make([]*kgo.Record, count)
		for i := range recs {
			recs[i] = &kgo.Record{Value: value}
		}
		start := time.Now()
		if err := prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			return nil, err
		}
		for got := 0; got < count; {
			cons.PollFetches(ctx).EachRecord(func(*kgo.Record) { got++ })
		}
		lat = append(lat, time.Since(start))
	}
	return lat, nil
}
