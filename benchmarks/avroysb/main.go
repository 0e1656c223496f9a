// Command avroysb runs the Yahoo Streaming Benchmark (examples/ysb) on the
// same events twice in one run: as JSON (the example as it is) and as Avro
// in the Confluent wire format through a schema registry (the same app with
// format: avro). It prints events/s, the ratio of Avro to JSON, whether both
// outputs equal the generator's counts, and, on one core, the decoding cost
// of each format per event with its allocations.
//
//	go run ./benchmarks/avroysb -n 1000000 -runs 2
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pheromone-go/pheromone/benchmarks/internal/bench"
	"github.com/pheromone-go/pheromone/connectors/generator"
	"github.com/pheromone-go/pheromone/connectors/kafka"
	"github.com/pheromone-go/pheromone/connectors/registry"
	"github.com/pheromone-go/pheromone/engine"
	"github.com/pheromone-go/pheromone/engine/app"
	"github.com/pheromone-go/pheromone/engine/codec"
	"github.com/pheromone-go/pheromone/server"
)

// eventSchema is the YSB event in Avro.
const eventSchema = `{"type":"record","name":"AdEvent","namespace":"ysb","fields":[
 {"name":"user_id","type":"string"},{"name":"page_id","type":"string"},{"name":"ad_id","type":"string"},
 {"name":"ad_type","type":"string"},{"name":"event_type","type":"string"},
 {"name":"event_time","type":{"type":"long","logicalType":"timestamp-millis"}},{"name":"ip_address","type":"string"}]}`

func main() {
	bench.ServeBrokerIfChild()
	n := flag.Int("n", 1_000_000, "events")
	runs := flag.Int("runs", 2, "runs of each format, alternating; the best counts")
	seed := flag.Int64("seed", 7, "generator seed")
	flag.Parse()
	if err := run(*n, *runs, *seed); err != nil {
		fmt.Fprintln(os.Stderr, "avroysb:", err)
		os.Exit(1)
	}
}

func step(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func run(n, runs int, seed int64) error {
	ctx := context.Background()
	brokers, stop, err := bench.StartBroker()
	if err != nil {
		return err
	}
	defer stop()
	reg, err := registry.StartEmbedded("127.0.0.1:0", "")
	if err != nil {
		return err
	}
	defer reg.Close()
	cl, err := registry.NewClient(reg.URL(), nil, nil)
	if err != nil {
		return err
	}
	conv, err := registry.NewConverter(ctx, cl, registry.Avro, "ad-events-avro-value", writeTemp(eventSchema), "")
	if err != nil {
		return err
	}
	defer conv.Close()

	const rate = 10_000
	start := time.Now().Add(-time.Duration(n/rate+1) * time.Second)
	gen := generator.NewYSB(seed, start, rate)
	if err := kafka.EnsureCompactedTopics(ctx, kafka.Plain(brokers...), map[string]int{"ysb-campaigns": 1}); err != nil {
		return err
	}
	if err := kafka.EnsureTopics(ctx, kafka.Plain(brokers...), map[string]int{"ad-events": 4, "ad-events-avro": 4}); err != nil {
		return err
	}
	step("producing the campaigns table and %d events, as JSON and as Avro", n)
	kc, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ProducerLinger(5*time.Millisecond), kgo.MaxBufferedRecords(200_000))
	if err != nil {
		return err
	}
	var failed atomic.Value
	cb := func(_ *kgo.Record, err error) {
		if err != nil {
			failed.Store(err)
		}
	}
	gen.Campaigns(func(k, v []byte) { kc.Produce(ctx, &kgo.Record{Topic: "ysb-campaigns", Key: k, Value: v}, cb) })
	var jsonSample, avroSample [][]byte
	const batch = 1000
	js, keys := make([][]byte, 0, batch), make([][]byte, 0, batch)
	flush := func() error {
		avs, err := conv.Convert(js)
		if err != nil {
			return err
		}
		for i := range js {
			kc.Produce(ctx, &kgo.Record{Topic: "ad-events", Key: keys[i], Value: js[i]}, cb)
			kc.Produce(ctx, &kgo.Record{Topic: "ad-events-avro", Key: keys[i], Value: avs[i]}, cb)
			if len(jsonSample) < 100_000 {
				jsonSample, avroSample = append(jsonSample, js[i]), append(avroSample, avs[i])
			}
		}
		js, keys = js[:0], keys[:0]
		return nil
	}
	for i := 0; i < n; i++ {
		v, k := gen.Next(nil)
		js, keys = append(js, v), append(keys, k)
		if len(js) == batch || i == n-1 {
			if err := flush(); err != nil {
				return err
			}
		}
		if i%(n/100+1) == 0 {
			bench.Progress("producing events", int64(i), int64(n))
		}
	}
	if err := kc.Flush(ctx); err != nil {
		return err
	}
	kc.Close()
	bench.Progress("producing events", int64(n), int64(n))
	if err, ok := failed.Load().(error); ok {
		return err
	}
	want := gen.ExpectedLines()
	sort.Strings(want)

	best := map[string]time.Duration{}
	verdicts := map[string]string{}
	for r := 0; r < runs; r++ {
		for _, format := range []string{"json", "avro"} {
			step("examples/ysb as %s, run %d", format, r+1)
			d, ok, err := ysb(ctx, brokers, reg.URL(), format, n, want, fmt.Sprintf("%s-%d", format, r))
			if err != nil {
				return err
			}
			if b, seen := best[format]; !seen || d < b {
				best[format] = d
			}
			if verdicts[format] == "" || !strings.HasPrefix(ok, "yes") {
				verdicts[format] = ok
			}
		}
	}
	step("decoding cost on one core")
	jNs, jAllocs, err := decodeCost(jsonSample, func() (func([]byte) error, func(), error) {
		d, err := codec.NewJSONDecoder(ysbSource().ArrowSchema(), "event_time")
		if err != nil {
			return nil, nil, err
		}
		return d.Append, func() { d.NewRecord().Release() }, nil
	})
	if err != nil {
		return err
	}
	aNs, aAllocs, err := decodeCost(avroSample, func() (func([]byte) error, func(), error) {
		src := ysbSource()
		src.Format, src.Registry = registry.Avro, &app.Subject{}
		d, err := registry.New(cl).Wire()[registry.Avro].NewDecoder(src)
		if err != nil {
			return nil, nil, err
		}
		var r engine.Record
		return func(b []byte) error { r.Value = b; return d.Append(&r) }, func() { d.NewRecord().Release() }, nil
	})
	if err != nil {
		return err
	}
	cores := float64(runtime.GOMAXPROCS(0))
	var md strings.Builder
	fmt.Fprintf(&md, "%d YSB events (%d campaign windows), 4 partitions, GOMAXPROCS=%d, %s, best of %d alternating runs, kfake in a child process\n\n",
		n, len(want), runtime.GOMAXPROCS(0), runtime.Version(), runs)
	md.WriteString("| examples/ysb input | seconds | events/s | events/s per core | ratio to JSON | output exact |\n|---|---|---|---|---|---|\n")
	for _, f := range []string{"json", "avro"} {
		d := best[f]
		fmt.Fprintf(&md, "| %s | %.2f | %.0f | %.0f | %.2fx | %s |\n", f, d.Seconds(), float64(n)/d.Seconds(), float64(n)/d.Seconds()/cores,
			best["json"].Seconds()/d.Seconds(), verdicts[f])
	}
	md.WriteString("\nDecoding alone, one goroutine, batches of 1000 events into reserved Arrow builders:\n\n")
	md.WriteString("| format | ns/event | events/s on one core | allocs/event | ratio to JSON |\n|---|---|---|---|---|\n")
	fmt.Fprintf(&md, "| json | %.0f | %.0f | %.2f | 1.00x |\n", jNs, 1e9/jNs, jAllocs)
	fmt.Fprintf(&md, "| avro | %.0f | %.0f | %.2f | %.2fx |\n", aNs, 1e9/aNs, aAllocs, jNs/aNs)
	fmt.Print(md.String())
	return nil
}

func writeTemp(text string) string {
	f, err := os.CreateTemp("", "ysb-*.avsc")
	if err != nil {
		panic(err)
	}
	defer f.Close()
	if _, err := f.WriteString(text); err != nil {
		panic(err)
	}
	return f.Name()
}

// ysbSource is the events source of examples/ysb.
func ysbSource() *app.Source {
	return &app.Source{Name: "ad_events", Topic: "ad-events", EventTime: "event_time", MaxRecordBytes: 1 << 20, Schema: []app.Column{
		{Name: "user_id", Type: "string"}, {Name: "page_id", Type: "string"}, {Name: "ad_id", Type: "string"}, {Name: "ad_type", Type: "string"},
		{Name: "event_type", Type: "string"}, {Name: "event_time", Type: "timestamp"}, {Name: "ip_address", Type: "string"}}}
}

// decodeCost is the time and allocations per event of decoding the sample
// five times over, in batches of 1000.
func decodeCost(sample [][]byte, mk func() (func([]byte) error, func(), error)) (ns, allocs float64, err error) {
	appendFn, flush, err := mk()
	if err != nil {
		return 0, 0, err
	}
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	t0 := time.Now()
	total := 0
	for rep := 0; rep < 5; rep++ {
		for i, b := range sample {
			if err := appendFn(b); err != nil {
				return 0, 0, err
			}
			if i%1000 == 999 {
				flush()
			}
			total++
		}
		flush()
	}
	d := time.Since(t0)
	runtime.ReadMemStats(&after)
	return float64(d.Nanoseconds()) / float64(total), float64(after.Mallocs-before.Mallocs) / float64(total), nil
}

// ysb runs examples/ysb on the format's topic until its committed offsets
// cover n events, then checks the output.
func ysb(ctx context.Context, brokers []string, regURL, format string, n int, want []string, tag string) (time.Duration, string, error) {
	raw, err := os.ReadFile("examples/ysb/app.yaml")
	if err != nil {
		return 0, "", fmt.Errorf("run from the repository root: %w", err)
	}
	a, err := app.Parse(raw)
	if err != nil {
		return 0, "", err
	}
	topic := "ad-events"
	if format == "avro" {
		topic = "ad-events-avro"
		src := &a.Sources[0]
		src.Topic, src.Format, src.Registry = topic, registry.Avro, &app.Subject{}
		a.SchemaRegistry = &app.SchemaRegistry{URL: regURL}
	}
	out := "campaign-counts-" + tag
	for i := range a.Sinks {
		if a.Sinks[i].Topic == "campaign-counts" {
			a.Sinks[i].Topic = out
		}
	}
	a.Name = "ysb-" + tag // its own group, changelog and state
	if err := a.ValidateWith(server.Connectors()); err != nil {
		return 0, "", err
	}
	t0 := time.Now()
	node, err := bench.StartNode(ctx, a, brokers)
	if err != nil {
		return 0, "", err
	}
	node.WaitCommitted(topic, int64(n))
	d := time.Since(t0)
	got, err := bench.Collect(ctx, brokers, out, len(want), 60*time.Second)
	if err != nil {
		return 0, "", err
	}
	if err := node.Stop(); err != nil {
		return 0, "", err
	}
	sort.Strings(got)
	if strings.Join(got, "\n") == strings.Join(want, "\n") {
		return d, fmt.Sprintf("yes (%d windows)", len(want)), nil
	}
	return d, fmt.Sprintf("NO: %d windows, want %d", len(got), len(want)), nil
}
