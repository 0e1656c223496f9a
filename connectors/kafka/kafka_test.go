package kafka

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/pheromone-go/pheromone/engine"
)

// broker starts a one-broker kfake cluster over TCP.
func broker(t *testing.T, opts ...kfake.Opt) (*kfake.Cluster, []string) {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c, c.ListenAddrs()
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

// readAll reads topic from the start until it has want records.
func readAll(t *testing.T, brokers []string, topic string, want int, opts ...kgo.Opt) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(50 * time.Millisecond)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []*kgo.Record
	deadline := time.Now().Add(10 * time.Second)
	for len(out) < want && time.Now().Before(deadline) {
		c, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		cl.PollFetches(c).EachRecord(func(r *kgo.Record) { out = append(out, r) })
		cancel()
	}
	return out
}

// TestProducerPinsPartitionsAndReportsOffsets: records with ToPartition
// land on their partition, a writer's done gets each record's offset, in
// order per partition.
func TestProducerPinsPartitionsAndReportsOffsets(t *testing.T) {
	_, brokers := broker(t)
	if err := EnsureTopics(ctx(t), Plain(brokers...), map[string]int{"out": 3}); err != nil {
		t.Fatal(err)
	}
	p, err := NewProducer(Plain(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	w := p.Writer()
	var mu sync.Mutex
	offsets := map[int32][]int64{}
	var wg sync.WaitGroup
	for i := 0; i < 30; i++ {
		part := int32(i % 3)
		wg.Add(1)
		w.Produce(&engine.OutRecord{Topic: "out", Partition: part, ToPartition: true, Value: fmt.Appendf(nil, "%d", i)}, func(off int64, err error) {
			defer wg.Done()
			if err != nil {
				t.Errorf("record %d: %v", i, err)
				return
			}
			mu.Lock()
			offsets[part] = append(offsets[part], off)
			mu.Unlock()
		})
	}
	wg.Wait()
	for part, offs := range offsets {
		slices.Sort(offs)
		if want := []int64{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}; !slices.Equal(offs, want) {
			t.Errorf("partition %d: offsets %v, want %v", part, offs, want)
		}
	}
	for _, r := range readAll(t, brokers, "out", 30) {
		var i int
		fmt.Sscanf(string(r.Value), "%d", &i)
		if int32(i%3) != r.Partition {
			t.Errorf("record %d on partition %d, want %d", i, r.Partition, i%3)
		}
	}
}

// TestProducerReportsRefusals: a record the broker refuses (injected with
// kfake's ControlKey: MESSAGE_TOO_LARGE, not retriable) reaches done as an
// error; it is not reported as written.
func TestProducerReportsRefusals(t *testing.T) {
	c, brokers := broker(t)
	if err := EnsureTopics(ctx(t), Plain(brokers...), map[string]int{"out": 1}); err != nil {
		t.Fatal(err)
	}
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl() // refuse every attempt, not only the first
		pr := req.(*kmsg.ProduceRequest)
		resp := pr.ResponseKind().(*kmsg.ProduceResponse)
		resp.Version = pr.Version
		for _, tp := range pr.Topics {
			rt := kmsg.NewProduceResponseTopic()
			rt.Topic, rt.TopicID = tp.Topic, tp.TopicID
			for _, p := range tp.Partitions {
				rp := kmsg.NewProduceResponseTopicPartition()
				rp.Partition = p.Partition
				rp.ErrorCode = kerr.MessageTooLarge.Code
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
		return resp, nil, true
	})
	p, err := NewProducer(Plain(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	done := make(chan error, 1)
	p.Writer().Produce(&engine.OutRecord{Topic: "out", Value: []byte("x")}, func(_ int64, err error) { done <- err })
	select {
	case err := <-done:
		if !errors.Is(err, kerr.MessageTooLarge) {
			t.Fatalf("done(%v), want MESSAGE_TOO_LARGE", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("done was never called for a refused record")
	}
}

// TestRecordLimits: a topic's max.message.bytes, capped by the producer's
// batch, less 1 KiB for the batch header.
func TestRecordLimits(t *testing.T) {
	_, brokers := broker(t)
	if err := EnsureTopics(ctx(t), Plain(brokers...), map[string]int{"big": 1}); err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	small := "100000"
	req := kmsg.NewCreateTopicsRequest()
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = "small", 1, 1
	rc := kmsg.NewCreateTopicsRequestTopicConfig()
	rc.Name, rc.Value = "max.message.bytes", &small
	rt.Configs = append(rt.Configs, rc)
	req.Topics = append(req.Topics, rt)
	if _, err := req.RequestWith(ctx(t), cl); err != nil {
		t.Fatal(err)
	}
	limits, err := RecordLimits(ctx(t), Plain(brokers...), []string{"big", "small"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := limits["small"], 100000-1024; got != want {
		t.Errorf("small: %d, want %d", got, want)
	}
	if got := limits["big"]; got <= 0 || got > producerBatchMax-1024 {
		t.Errorf("big: %d, want at most the producer's batch less 1 KiB (%d)", got, producerBatchMax-1024)
	}
}

// TestChangelogReaderReadsToTheEnd: Read reports the end first, then
// every record from `from` in order (tombstones with a nil value), and
// stops early on ErrRestoreDone.
func TestChangelogReaderReadsToTheEnd(t *testing.T) {
	_, brokers := broker(t)
	if err := EnsureCompactedTopics(ctx(t), Plain(brokers...), map[string]int{"log": 2}); err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for i := 0; i < 10; i++ {
		v := fmt.Appendf(nil, "v%d", i)
		if i == 4 {
			v = nil
		}
		if err := cl.ProduceSync(ctx(t), &kgo.Record{Topic: "log", Partition: 1, Key: fmt.Appendf(nil, "k%d", i), Value: v}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	r := &ChangelogReader{Conn: Plain(brokers...), Topic: "log"}
	var end int64 = -1
	var got []string
	err = r.Read(ctx(t), 1, 3, func(e int64) { end = e }, func(off int64, k, v []byte) error {
		if end != 10 {
			t.Errorf("record %d before the end was reported (%d)", off, end)
		}
		s := fmt.Sprintf("%d:%s=%s", off, k, v)
		if v == nil {
			s = fmt.Sprintf("%d:%s deleted", off, k)
		}
		got = append(got, s)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"3:k3=v3", "4:k4 deleted", "5:k5=v5", "6:k6=v6", "7:k7=v7", "8:k8=v8", "9:k9=v9"}
	if !slices.Equal(got, want) {
		t.Fatalf("read %q, want %q", got, want)
	}
	got = nil
	err = r.Read(ctx(t), 1, 0, func(int64) {}, func(off int64, _, _ []byte) error {
		got = append(got, fmt.Sprint(off))
		if off == 2 {
			return engine.ErrRestoreDone
		}
		return nil
	})
	if err != nil || !slices.Equal(got, []string{"0", "1", "2"}) {
		t.Fatalf("early stop: %q, %v", got, err)
	}
	// Partition 0 is empty: the end is 0 and nothing is read.
	err = r.Read(ctx(t), 0, 0, func(e int64) { end = e }, func(int64, []byte, []byte) error {
		t.Error("a record of an empty partition")
		return nil
	})
	if err != nil || end != 0 {
		t.Fatalf("empty partition: end %d, %v", end, err)
	}
}

// TestTxnWriterAbortsWhenTheCommitFails: the broker refuses the
// transaction's commit (EndTxn answered with INVALID_TXN_STATE, injected
// with ControlKey); Commit returns the error and a read_committed reader
// never sees the transaction's records. The writer is then spent (its
// producer id is fatal): the engine restarts the task with a new writer
// of the same transactional id, which commits normally.
func TestTxnWriterAbortsWhenTheCommitFails(t *testing.T) {
	c, brokers := broker(t)
	if err := EnsureTopics(ctx(t), Plain(brokers...), map[string]int{"out": 1}); err != nil {
		t.Fatal(err)
	}
	w, err := NewTxnWriter(ctx(t), Plain(brokers...), TransactionalID("test", 0))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	produce := func(w engine.PartitionWriter, v string) {
		done := make(chan error, 1)
		w.Produce(&engine.OutRecord{Topic: "out", Partition: 0, ToPartition: true, Value: []byte(v)}, func(_ int64, err error) { done <- err })
		if err := <-done; err != nil {
			t.Fatalf("produce %s: %v", v, err)
		}
	}
	refused := false
	c.ControlKey(int16(kmsg.EndTxn), func(req kmsg.Request) (kmsg.Response, error, bool) {
		if r := req.(*kmsg.EndTxnRequest); !r.Commit || refused {
			return nil, nil, false
		}
		refused = true
		resp := req.ResponseKind().(*kmsg.EndTxnResponse)
		resp.Version = req.GetVersion()
		resp.ErrorCode = kerr.InvalidTxnState.Code
		return resp, nil, true
	})
	produce(w, "lost")
	if err := w.Commit(ctx(t)); err == nil {
		t.Fatal("Commit succeeded although the broker refused it")
	}
	w.Close()
	w2, err := NewTxnWriter(ctx(t), Plain(brokers...), TransactionalID("test", 0))
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Close()
	produce(w2, "kept")
	if err := w2.Commit(ctx(t)); err != nil {
		t.Fatalf("the next writer's transaction: %v", err)
	}
	recs := readAll(t, brokers, "out", 1, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	var vals []string
	for _, r := range recs {
		vals = append(vals, string(r.Value))
	}
	if !slices.Equal(vals, []string{"kept"}) {
		t.Fatalf("read_committed sees %q, want only the committed transaction", vals)
	}
}

// TestTopicsAreCreatedOnceAndCounted: EnsureTopics is idempotent and
// TopicPartitions reports the counts.
func TestTopicsAreCreatedOnceAndCounted(t *testing.T) {
	_, brokers := broker(t)
	for i := 0; i < 2; i++ {
		if err := EnsureTopics(ctx(t), Plain(brokers...), map[string]int{"a": 2, "b": 4}); err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
	}
	parts, err := TopicPartitions(ctx(t), Plain(brokers...), "a", "b", "missing")
	if err != nil {
		t.Fatal(err)
	}
	if parts["a"] != 2 || parts["b"] != 4 {
		t.Fatalf("partitions %v", parts)
	}
	if _, ok := parts["missing"]; ok {
		t.Fatalf("a missing topic has a count: %v", parts)
	}
}
