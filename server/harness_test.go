package server

import (
	"context"

	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pheromone-go/pheromone/engine"
	"github.com/pheromone-go/pheromone/engine/app"
	"github.com/pheromone-go/pheromone/engine/fn"
)

// cluster starts a one-broker kfake cluster on a free 127.0.0.1 port.
func cluster(t *testing.T) []string {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

type runningNode struct {
	info Info
	stop func() error
}

// startNode runs the app in-process against brokers with clock.
func startNode(t *testing.T, yaml string, brokers []string, clock engine.Clock, dataDir string, fns ...map[string]fn.Function) *runningNode {
	t.Helper()
	a, err := app.Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.ValidateWith(Connectors()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan Info, 1)
	done := make(chan error, 1)
	go func() {
		var overrides map[string]fn.Function
		if len(fns) > 0 {
			overrides = fns[0]
		}
		done <- Run(ctx, a, DataDir(dataDir), HTTPAddr("127.0.0.1:0"), Brokers(brokers...), Clock(clock), Functions(overrides),
			OnStarted(func(i Info) { started <- i }))
	}()
	var info Info
	select {
	case info = <-started:
	case err := <-done:
		cancel()
		t.Fatalf("node did not start: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("node did not start within 30s")
	}
	n := &runningNode{info: info}
	stopped := false
	n.stop = func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(30 * time.Second):
			panic("node did not stop within 30s")
		}
	}
	t.Cleanup(func() {
		if err := n.stop(); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	waitFor(t, 30*time.Second, "node ready", func() bool { return info.Node.Ready() })
	return n
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// advanceUntil moves clock forward by step until cond holds: retry backoffs
// run on the injected clock. After each step it polls cond for a moment
// (the goroutine that waits may not have set its timer yet).
func advanceUntil(t *testing.T, clock *engine.ManualClock, step time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		clock.Advance(step)
		for settle := time.Now().Add(100 * time.Millisecond); !cond() && time.Now().Before(settle); {
			time.Sleep(2 * time.Millisecond)
		}
	}
}

// produce writes values to explicit partitions of topic and waits for acks.
func produce(t *testing.T, brokers []string, topic string, part int32, values ...string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var recs []*kgo.Record
	for _, v := range values {
		recs = append(recs, &kgo.Record{Topic: topic, Partition: part, Value: []byte(v)})
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// consume reads topic from the start until want records arrived or the
// deadline passed, then keeps reading for settle to catch extra records.
func consume(t *testing.T, brokers []string, topic string, want int, settle time.Duration) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []*kgo.Record
	deadline := time.Now().Add(30 * time.Second)
	var settleEnd time.Time
	for {
		now := time.Now()
		if len(out) >= want && settleEnd.IsZero() {
			settleEnd = now.Add(settle)
		}
		if (!settleEnd.IsZero() && now.After(settleEnd)) || now.After(deadline) {
			return out
		}
		end := deadline
		if !settleEnd.IsZero() {
			end = settleEnd
		}
		ctx, cancel := context.WithDeadline(context.Background(), end)
		fs := cl.PollFetches(ctx)
		cancel()
		fs.EachRecord(func(r *kgo.Record) { out = append(out, r) })
	}
}

func values(recs []*kgo.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = string(r.Value)
	}
	return out
}

func sorted(s []string) []string {
	s = append([]string(nil), s...)
	sort.Strings(s)
	return s
}

func header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// scrape reads the node's /metrics over HTTP and returns the value of the
// sample whose line starts with prefix.
func scrape(t *testing.T, addr, prefix string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, prefix) {
			f := strings.Fields(line)
			return f[len(f)-1]
		}
	}
	return "absent"
}

func equalLines(t *testing.T, what string, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("%s:\n got (%d):\n  %s\nwant (%d):\n  %s", what, len(got), strings.Join(got, "\n  "), len(want), strings.Join(want, "\n  "))
	}
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
