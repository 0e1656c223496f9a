package kafka

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pheromone-go/pheromone/engine"
)

// TransactionalID is the transactional id of partition part of app: one
// per partition task, so the node that takes a partition over fences the
// one that had it (and aborts its open transaction) when it opens its
// writer.
func TransactionalID(app string, part int32) string { return fmt.Sprintf("pheromone-%s-%d", app, part) }

// NewTxnWriter opens the exactly-once writer of one partition task. It
// initializes the producer id before returning, which fences any earlier
// writer with the same id and aborts its unfinished transaction.
func NewTxnWriter(ctx context.Context, conn Conn, txnID string) (engine.PartitionWriter, error) {
	cl, err := kgo.NewClient(append(producerOpts(conn),
		kgo.TransactionalID(txnID),
		kgo.TransactionTimeout(time.Minute),
	)...)
	if err != nil {
		return nil, fmt.Errorf("kafka: transactional writer %s: %w", txnID, err)
	}
	if _, _, err := cl.ProducerID(ctx); err != nil {
		cl.Close()
		return nil, fmt.Errorf("kafka: transactional writer %s: init: %w", txnID, err)
	}
	w := &txnWriter{cl: cl, id: txnID}
	w.pool.New = func() any { return new(kgo.Record) }
	return w, nil
}

type txnWriter struct {
	cl    *kgo.Client
	id    string
	pool  sync.Pool
	inTxn bool
}

func (w *txnWriter) Transactional() bool { return true }

func (w *txnWriter) Produce(r *engine.OutRecord, done func(int64, error)) {
	if !w.inTxn {
		if err := w.cl.BeginTransaction(); err != nil {
			done(-1, err)
			return
		}
		w.inTxn = true
	}
	produce(w.cl, &w.pool, r, done)
}

func (w *txnWriter) Commit(ctx context.Context) error {
	if !w.inTxn {
		return nil
	}
	w.inTxn = false
	err := w.cl.Flush(ctx)
	if err == nil {
		err = w.cl.EndTransaction(ctx, kgo.TryCommit)
		if err == nil {
			return nil
		}
	}
	w.abort()
	if isFenced(err) {
		return fmt.Errorf("%w (%s): %v", engine.ErrFenced, w.id, err)
	}
	return err
}

func (w *txnWriter) abort() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = w.cl.AbortBufferedRecords(ctx)
	_ = w.cl.EndTransaction(ctx, kgo.TryAbort)
}

func (w *txnWriter) Close() {
	if w.inTxn {
		w.inTxn = false
		w.abort()
	}
	w.cl.Close()
}

func isFenced(err error) bool {
	return errors.Is(err, kerr.ProducerFenced) || errors.Is(err, kerr.InvalidProducerEpoch) ||
		errors.Is(err, kerr.TransactionalIDAuthorizationFailed) || errors.Is(err, kerr.InvalidProducerIDMapping)
}

// ChangelogReader reads partitions of a changelog topic for restores.
type ChangelogReader struct {
	Conn  Conn
	Topic string
	// ReadCommitted reads only committed transactions (exactly-once).
	ReadCommitted bool
}

var _ engine.ChangelogReader = (*ChangelogReader)(nil)

// Read implements engine.ChangelogReader. The key and value slices it
// passes stay valid: the client has no record or decompression pools
// (kgo.WithPools), so franz-go never reuses a fetched record's bytes.
func (c *ChangelogReader) Read(ctx context.Context, part int32, from int64, endFn func(int64), fn func(off int64, key, value []byte) error) error {
	acl, err := c.Conn.client()
	if err != nil {
		return err
	}
	adm := kadm.NewClient(acl)
	var listed kadm.ListedOffsets
	if c.ReadCommitted {
		listed, err = adm.ListCommittedOffsets(ctx, c.Topic)
	} else {
		listed, err = adm.ListEndOffsets(ctx, c.Topic)
	}
	acl.Close()
	if err != nil {
		return fmt.Errorf("kafka: changelog %s: end offsets: %w", c.Topic, err)
	}
	lo, ok := listed.Lookup(c.Topic, part)
	if !ok || lo.Err != nil {
		return fmt.Errorf("kafka: changelog %s partition %d: no end offset (%v)", c.Topic, part, lo.Err)
	}
	end := lo.Offset
	endFn(end)
	if from >= end {
		return nil
	}
	cl, err := c.consumer(part, from, 50*time.Millisecond)
	if err != nil {
		return err
	}
	defer cl.Close()
	next := from
	idle := 0
	for next < end {
		pctx, cancel := context.WithTimeout(ctx, 250*time.Millisecond)
		fs := cl.PollFetches(pctx)
		cancel()
		if err := ctx.Err(); err != nil {
			return err
		}
		n := 0
		var bad error
		fs.EachError(func(_ string, _ int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				bad = err
			}
		})
		if bad != nil {
			return fmt.Errorf("kafka: changelog %s partition %d: %w", c.Topic, part, bad)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if bad != nil || r.Offset >= end {
				return
			}
			n++
			next = r.Offset + 1
			bad = fn(r.Offset, r.Key, r.Value)
		})
		if errors.Is(bad, engine.ErrRestoreDone) {
			return nil
		}
		if bad != nil {
			return bad
		}
		if n == 0 {
			// read_committed hides the commit markers and aborted records
			// at the end of the range: once fetches come back empty, the
			// committed data before end has been read.
			if idle++; c.ReadCommitted && idle >= 2 {
				return nil
			}
		} else {
			idle = 0
		}
	}
	return nil
}

// Member is one member of a consumer group and the partitions of topic it
// owns.
type Member struct {
	ClientID   string
	Partitions []int32
}

// GroupDescriber describes a consumer group over one long-lived client
// (nodes ask every second, for query routing and standby placement).
type GroupDescriber struct {
	adm          *kadm.Client
	cl           *kgo.Client
	group, topic string
}

// NewGroupDescriber describes group, reporting the partitions of topic.
func NewGroupDescriber(conn Conn, group, topic string) (*GroupDescriber, error) {
	cl, err := conn.client()
	if err != nil {
		return nil, err
	}
	return &GroupDescriber{adm: kadm.NewClient(cl), cl: cl, group: group, topic: topic}, nil
}

// Close releases the client.
func (d *GroupDescriber) Close() { d.cl.Close() }

// Members returns every member of the group with the partitions of the
// topic assigned to it. Nodes advertise their HTTP address in their client id.
func (d *GroupDescriber) Members(ctx context.Context) ([]Member, error) {
	gs, err := d.adm.DescribeGroups(ctx, d.group)
	if err != nil {
		return nil, fmt.Errorf("kafka: describe group %s: %w", d.group, err)
	}
	g, ok := gs[d.group]
	if !ok || g.Err != nil {
		return nil, fmt.Errorf("kafka: describe group %s: %v", d.group, g.Err)
	}
	var out []Member
	for _, m := range g.Members {
		mb := Member{ClientID: m.ClientID}
		if a, ok := m.Assigned.AsConsumer(); ok {
			for _, t := range a.Topics {
				if t.Topic == d.topic {
					mb.Partitions = append(mb.Partitions, t.Partitions...)
				}
			}
		}
		out = append(out, mb)
	}
	return out, nil
}

// consumer reads partition part of the changelog from offset from (or its
// start, if compaction removed from) with large fetches.
func (c *ChangelogReader) consumer(part int32, from int64, wait time.Duration) (*kgo.Client, error) {
	iso := kgo.ReadUncommitted()
	if c.ReadCommitted {
		iso = kgo.ReadCommitted()
	}
	return c.Conn.client(
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{c.Topic: {part: kgo.NewOffset().At(from)}}),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(iso),
		kgo.FetchMaxPartitionBytes(32<<20),
		kgo.FetchMaxBytes(64<<20),
		kgo.FetchMaxWait(wait),
	)
}

// Follow implements engine.ChangelogReader.
func (c *ChangelogReader) Follow(ctx context.Context, part int32, from int64, fn func(off int64, key, value []byte) error) error {
	cl, err := c.consumer(part, from, 100*time.Millisecond)
	if err != nil {
		return err
	}
	defer cl.Close()
	for {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return err
		}
		var bad error
		fs.EachError(func(_ string, _ int32, err error) {
			if !errors.Is(err, context.Canceled) {
				bad = err
			}
		})
		fs.EachRecord(func(r *kgo.Record) {
			if bad == nil {
				bad = fn(r.Offset, r.Key, r.Value)
			}
		})
		if bad != nil {
			return fmt.Errorf("kafka: changelog %s partition %d: %w", c.Topic, part, bad)
		}
	}
}

// TopicPartitions returns the partition count of each of topics that exists.
func TopicPartitions(ctx context.Context, conn Conn, topics ...string) (map[string]int, error) {
	cl, err := conn.client()
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	td, err := kadm.NewClient(cl).ListTopics(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("kafka: list topics: %w", err)
	}
	out := map[string]int{}
	for _, t := range td {
		if t.Err == nil {
			out[t.Topic] = len(t.Partitions)
		}
	}
	return out, nil
}
