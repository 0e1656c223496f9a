// Package bench holds what the benchmark programs share: a kfake broker in
// a child process, the raw franz-go consume→produce loop (the ceiling every
// throughput is compared with), percentiles, and resource readings.
package bench

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pheromone-go/pheromone/connectors/generator"
	"github.com/pheromone-go/pheromone/connectors/kafka"
)

const serveFlag = "-bench-serve-broker"

// ServeBrokerIfChild runs only a broker when this process was started by
// StartBroker; call it first thing in main.
func ServeBrokerIfChild() {
	if len(os.Args) == 3 && os.Args[1] == serveFlag {
		b, err := kafka.StartBroker(os.Args[2], "")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		defer b.Close()
		select {}
	}
}

// StartBroker runs kfake in a child process (so its heap, which holds every
// record of the run, does not tax the measured process) and returns its
// address.
func StartBroker() (brokers []string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	self, err := os.Executable()
	if err != nil {
		return nil, nil, err
	}
	cmd := exec.Command(self, serveFlag, addr)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	stop = func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() }
	for deadline := time.Now().Add(10 * time.Second); ; {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return []string{addr}, stop, nil
		}
		if time.Now().After(deadline) {
			stop()
			return nil, nil, fmt.Errorf("broker process did not listen on %s", addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var rawRuns atomic.Int64

// RawLoop consumes n records of topic from the start and produces each,
// unchanged, to a fresh topic: the ceiling of this machine and broker.
func RawLoop(ctx context.Context, brokers []string, topic string, n int) (time.Duration, error) {
	run := rawRuns.Add(1)
	out := fmt.Sprintf("raw-out-%d", run)
	if err := kafka.EnsureTopics(ctx, kafka.Plain(brokers...), map[string]int{out: 4}); err != nil {
		return 0, err
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumerGroup(fmt.Sprintf("raw-loop-%d", run)), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.ProducerLinger(2*time.Millisecond), kgo.MaxBufferedRecords(100_000),
		kgo.DisableAutoCommit())
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	start := time.Now()
	var acked atomic.Int64
	for consumed := 0; consumed < n; {
		cl.PollRecords(ctx, 10_000).EachRecord(func(r *kgo.Record) {
			consumed++
			cl.Produce(ctx, &kgo.Record{Topic: out, Key: r.Key, Value: r.Value}, func(_ *kgo.Record, err error) {
				if err == nil {
					acked.Add(1)
				}
			})
		})
	}
	if err := cl.Flush(ctx); err != nil {
		return 0, err
	}
	if acked.Load() != int64(n) {
		return 0, fmt.Errorf("raw loop: %d acked, want %d", acked.Load(), n)
	}
	return time.Since(start), nil
}

// Pct returns the p-th percentile of ds.
func Pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)]
}

// PeakRSS is this process's peak resident set size in bytes (VmHWM).
func PeakRSS() int64 {
	raw, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			f := strings.Fields(line)
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// DirBytes is the size of the files under dir.
func DirBytes(dir string) int64 {
	var total int64
	_ = filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			total += fi.Size()
		}
		return nil
	})
	return total
}

var lastPct = map[string]int64{}

// Progress draws a one-line progress bar on standard error; call it with
// done == total to finish the line.
func Progress(label string, done, total int64) {
	const width = 30
	if total <= 0 {
		return
	}
	pct := done * 100 / total
	if pct == lastPct[label] && done < total {
		return
	}
	lastPct[label] = pct
	filled := int(done * width / total)
	fmt.Fprintf(os.Stderr, "\r%-28s [%s%s] %3d%%", label, strings.Repeat("#", filled), strings.Repeat("-", width-filled), done*100/total)
	if done >= total {
		fmt.Fprintln(os.Stderr)
	}
}

// PreloadClicks produces n clickstream records (keyed by page) to topic.
func PreloadClicks(ctx context.Context, brokers []string, topic string, n int) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ProducerLinger(5*time.Millisecond), kgo.MaxBufferedRecords(200_000))
	if err != nil {
		return err
	}
	defer cl.Close()
	g := generator.NewClickstream(1)
	now := time.Now()
	var failed atomic.Value
	for i := 0; i < n; i++ {
		v, k := g.Append(nil, now, "page")
		cl.Produce(ctx, &kgo.Record{Topic: topic, Key: k, Value: v}, func(_ *kgo.Record, err error) {
			if err != nil {
				failed.Store(err)
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		return err
	}
	if err, ok := failed.Load().(error); ok {
		return err
	}
	return nil
}

// Collect reads want records of topic from its start (or what arrived
// within wait).
func Collect(ctx context.Context, brokers []string, topic string, want int, wait time.Duration) ([]string, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	var out []string
	deadline := time.Now().Add(wait)
	for len(out) < want && time.Now().Before(deadline) {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		cl.PollFetches(pctx).EachRecord(func(r *kgo.Record) { out = append(out, string(r.Value)) })
		cancel()
	}
	return out, nil
}
