package bench

// Invocation microbenchmarks shared by benchmarks/chain, benchmarks/exchange
// and the one-command runner benchmarks/ysb.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/memory"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pheromone-go/pheromone/connectors/kafka"
	"github.com/pheromone-go/pheromone/engine/app"
	"github.com/pheromone-go/pheromone/engine/fn"
	"github.com/pheromone-go/pheromone/server"
)

// ChainApp is a chain of length emit functions, invoked durably or in
// memory (invoke.durable).
func ChainApp(length int, durable bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, `app: chain%d%s
kafka: {commit_interval: 1ms}
sources:
  - name: requests
    topic: requests
    partitions: 1
    schema: [{name: session, type: string}, {name: x, type: int64}]
    bucket: b0
invoke: {entry: b0, result: reply, durable: %v}
buckets:
  - {name: b0, session: session}
`, length, map[bool]string{true: "d", false: "m"}[durable], durable)
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

// InvokeChain measures n synchronous invocations of ChainApp(length,
// durable) after 20 of warm-up.
func InvokeChain(brokers []string, length, n int, durable bool) ([]time.Duration, error) {
	a, err := app.Parse([]byte(ChainApp(length, durable)))
	if err != nil {
		return nil, err
	}
	if err := a.Validate(); err != nil {
		return nil, err
	}
	nd, err := StartNode(context.Background(), a, brokers, server.HTTPAddr("127.0.0.1:0"))
	if err != nil {
		return nil, err
	}
	defer nd.Stop()
	info := nd.Info
	for !info.Node.Ready() {
		time.Sleep(time.Millisecond)
	}
	url := "http://" + info.HTTPAddr + "/v1/apps/" + a.Name + "/invoke"
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

// plainChain is the floor: length nested Go calls passing a value along.
func PlainChain(length int) time.Duration {
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

// kafkaHop measures produce -> consume of one record through kfake.
func KafkaHop(brokers []string, n int) ([]time.Duration, error) {
	ctx := context.Background()
	if err := kafka.EnsureTopics(ctx, kafka.Plain(brokers...), map[string]int{"hop": 1}); err != nil {
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

// node runs an app and returns its invoke URL and a stop function.
func invokeNode(brokers []string, yaml string, fns map[string]fn.Function) (string, func(), error) {
	a, err := app.Parse([]byte(yaml))
	if err != nil {
		return "", nil, err
	}
	if err := a.Validate(); err != nil {
		return "", nil, err
	}
	nd, err := StartNode(context.Background(), a, brokers, server.HTTPAddr("127.0.0.1:0"), server.Functions(fns))
	if err != nil {
		return "", nil, err
	}
	for !nd.Node.Ready() {
		time.Sleep(time.Millisecond)
	}
	return "http://" + nd.HTTPAddr + "/v1/apps/" + a.Name + "/invoke", func() { _ = nd.Stop() }, nil
}

func invokeOnce(url string, body []byte) ([]byte, time.Duration, error) {
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

func FanOut(brokers []string, width, n int) ([]time.Duration, error) {
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
	url, stop, err := invokeNode(brokers, yaml, nil)
	if err != nil {
		return nil, err
	}
	defer stop()
	body, _ := json.Marshal(map[string]string{"words": strings.TrimSpace(strings.Repeat("w ", width))})
	want := fmt.Sprintf(`"result":[{"parts":%d}]`, width)
	var lat []time.Duration
	for i := 0; i < n+5; i++ {
		out, d, err := invokeOnce(url, body)
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

func GoFanOut(width int) time.Duration {
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

// exchange: produce makes a payload of size bytes and stamps the time it
// emits it; consume (the next function, in-node) replies with the delay.
func Exchange(brokers []string, size, n int) ([]time.Duration, error) {
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
	url, stop, err := invokeNode(brokers, yaml, fns)
	if err != nil {
		return nil, err
	}
	defer stop()
	var lat []time.Duration
	for i := 0; i < n+5; i++ {
		out, _, err := invokeOnce(url, []byte(`{"x":1}`))
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

func CopyTime(size int) time.Duration {
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

// kafkaRoundTrip produces count records of size bytes and consumes them
// back, measured reps times.
func KafkaRoundTrip(brokers []string, count, size, reps int) ([]time.Duration, error) {
	ctx := context.Background()
	topic := fmt.Sprintf("rt-%d-%d", count, size)
	if err := kafka.EnsureTopics(ctx, kafka.Plain(brokers...), map[string]int{topic: 1}); err != nil {
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

func Human(n int) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%d MB", n>>20)
	case n >= 1<<10:
		return fmt.Sprintf("%d KB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}

// node runs an app and returns its invoke URL and a stop function.
