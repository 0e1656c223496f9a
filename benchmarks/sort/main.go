// Command sort runs examples/sort — MapReduce sort with a dynamic_group
// shuffle over range partitions — on gensort-style records (10-byte
// printable key, 90-byte payload, from a seeded generator), checks that
// the output is sorted and complete (every range ordered, the ranges in
// key order, the same multiset of records: count and a checksum), and
// compares the time with a plain Go sort of the same records in memory,
// measured in the same run.
//
//	go run ./benchmarks/sort -mb 1000
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pheromone-go/pheromone/benchmarks/internal/bench"
	"github.com/pheromone-go/pheromone/server"
)

const (
	keyLen     = 10
	payloadLen = 90
	partitions = 4
)

func main() {
	bench.ServeBrokerIfChild()
	mb := flag.Int("mb", 100, "MB of 100-byte records to sort")
	flag.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the sort (node start to the last output record) to this file")
	flag.Int64Var(&budgetMB, "memory-budget", 0, "MiB of held chunks a partition keeps decoded (0: the engine's default, 32)")
	flag.StringVar(&httpAddr, "http", "", "serve the node's HTTP API here (to watch it: /v1/apps/sort/buckets/ranged)")
	flag.Parse()
	if err := run(*mb); err != nil {
		fmt.Fprintln(os.Stderr, "sort:", err)
		os.Exit(1)
	}
}

var (
	httpAddr, cpuProfile string
	budgetMB             int64
)

type record struct{ key, payload string }

// generate makes n records: keys uniform over printable ASCII (as gensort
// -a), payloads printable too.
func generate(n int) []record {
	rnd := rand.New(rand.NewPCG(17, 42))
	const printable = " !#$%&()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[]^_`abcdefghijklmnopqrstuvwxyz{|}~"
	out := make([]record, n)
	var kb [keyLen]byte
	var pb [payloadLen]byte
	for i := range out {
		for j := range kb {
			kb[j] = printable[rnd.IntN(len(printable))]
		}
		for j := range pb {
			pb[j] = 'a' + byte(rnd.IntN(26))
		}
		out[i] = record{string(kb[:]), string(pb[:])}
	}
	return out
}

// checksum is order-independent: the sum of the records' CRC-32s.
func checksum(key, payload string) uint64 {
	return uint64(crc32.ChecksumIEEE([]byte(key + payload)))
}

func run(mb int) error {
	n := mb << 20 / (keyLen + payloadLen)
	recs := generate(n)
	var sum uint64
	for _, r := range recs {
		sum += checksum(r.key, r.payload)
	}
	// The baseline: the same records sorted by a plain Go program.
	goRecs := slices.Clone(recs)
	start := time.Now()
	slices.SortFunc(goRecs, func(a, b record) int { return strings.Compare(a.key, b.key) })
	goSort := time.Since(start)
	goRecs = nil
	runtime.GC()

	brokers, stop, err := bench.StartBroker()
	if err != nil {
		return err
	}
	defer stop()
	fmt.Printf("producing %d records (%d MB) into %d partitions...\n", n, mb, partitions)
	if err := preload(brokers, recs); err != nil {
		return err
	}
	recs = nil
	runtime.GC()
	a, err := bench.LoadExample("examples/sort/app.yaml")
	if err != nil {
		return err
	}
	out, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics("sorted"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(50*time.Millisecond))
	if err != nil {
		return err
	}
	defer out.Close()
	if cpuProfile != "" {
		f, err := os.Create(cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	start = time.Now()
	opts := []server.Opt{server.MemoryBudget(budgetMB << 20)}
	if httpAddr != "" {
		opts = append(opts, server.HTTPAddr(httpAddr))
	}
	nd, err := bench.StartNode(context.Background(), a, brokers, opts...)
	if err != nil {
		return err
	}
	defer nd.Stop()
	v := newVerifier()
	for v.n < n {
		// The first output comes once every mapper is done: wait long.
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
		fs := out.PollFetches(ctx)
		cancel()
		if err := fs.Err0(); err != nil {
			ranges := map[string]int{}
			for name, s := range v.ranges {
				ranges[name] = s.n
			}
			return fmt.Errorf("reading the output after %d of %d records (per range: %v): %w", v.n, n, ranges, err)
		}
		var verr error
		fs.EachRecord(func(r *kgo.Record) {
			if verr == nil {
				verr = v.add(r)
			}
		})
		if verr != nil {
			return verr
		}
	}
	took := time.Since(start)
	if err := v.check(n, sum); err != nil {
		return err
	}
	rss := bench.PeakRSS()
	fmt.Printf("\n%d records (%d MB), %d partitions, GOMAXPROCS=%d, %s\n\n", n, mb, partitions, runtime.GOMAXPROCS(0), runtime.Version())
	fmt.Println("| run | seconds | MB/s | ratio to the Go sort | output sorted and complete |")
	fmt.Println("|---|---|---|---|---|")
	fmt.Printf("| plain Go sort in memory (slices.SortFunc) | %.2f | %.0f | 1.00x | n/a |\n", goSort.Seconds(), float64(mb)/goSort.Seconds())
	fmt.Printf("| pheromone examples/sort (Kafka in, shuffle, Kafka out) | %.2f | %.1f | %.1fx slower | yes (%d ranges, checksum equal) |\n",
		took.Seconds(), float64(mb)/took.Seconds(), took.Seconds()/goSort.Seconds(), len(v.ranges))
	fmt.Printf("\npeak RSS of the runner (the broker runs in a child process): %d MiB\n", rss>>20)
	return nil
}

// preload writes the records round robin over the partitions, then one
// end-of-input marker per partition (each partition is a mapper).
func preload(brokers []string, recs []record) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.DefaultProduceTopic("sort-input"), kgo.ProducerBatchMaxBytes(1<<20), kgo.MaxBufferedRecords(100_000))
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx := context.Background()
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, partitions, 1, nil, "sort-input"); err != nil {
		return err
	}
	errs := make(chan error, 1)
	for i, r := range recs {
		v := fmt.Appendf(nil, `{"job":"j1","key":%q,"payload":%q}`, r.key, r.payload)
		cl.Produce(ctx, &kgo.Record{Partition: int32(i % partitions), Value: v}, func(_ *kgo.Record, err error) {
			if err != nil {
				select {
				case errs <- err:
				default:
				}
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		return err
	}
	select {
	case err := <-errs:
		return err
	default:
	}
	var markers []*kgo.Record
	for p := int32(0); p < partitions; p++ {
		markers = append(markers, &kgo.Record{Partition: p, Value: []byte(`{"job":"j1","key":"_done"}`)})
	}
	return cl.ProduceSync(ctx, markers...).FirstErr()
}

// verifier checks the output as it is read: each range's records come in
// key order (one reduce batch, on one partition), and at the end the
// ranges' key intervals are in order and the records are the input's.
type verifier struct {
	ranges   map[string]*span
	n        int
	sum      uint64
	disorder string
}

type span struct {
	first, last string
	n           int
}

func newVerifier() *verifier { return &verifier{ranges: map[string]*span{}} }

func (v *verifier) add(r *kgo.Record) error {
	var row struct{ Key, Payload, Range string }
	if err := json.Unmarshal(r.Value, &row); err != nil {
		return fmt.Errorf("output record %s: %w", r.Value, err)
	}
	s := v.ranges[row.Range]
	if s == nil {
		s = &span{first: row.Key}
		v.ranges[row.Range] = s
	} else if row.Key < s.last && v.disorder == "" {
		v.disorder = fmt.Sprintf("range %s: key %q after %q", row.Range, row.Key, s.last)
	}
	s.last = row.Key
	s.n++
	v.n++
	v.sum += checksum(row.Key, row.Payload)
	return nil
}

func (v *verifier) check(n int, sum uint64) error {
	if v.disorder != "" {
		return fmt.Errorf("output not sorted: %s", v.disorder)
	}
	if v.n != n || v.sum != sum {
		return fmt.Errorf("output not complete: %d records (want %d), checksum %d (want %d)", v.n, n, v.sum, sum)
	}
	names := make([]string, 0, len(v.ranges))
	for name := range v.ranges {
		names = append(names, name)
	}
	slices.Sort(names)
	for i := 1; i < len(names); i++ {
		if prev, cur := v.ranges[names[i-1]], v.ranges[names[i]]; prev.last > cur.first {
			return fmt.Errorf("ranges out of order: %s ends at %q, %s starts at %q", names[i-1], prev.last, names[i], cur.first)
		}
	}
	return nil
}
