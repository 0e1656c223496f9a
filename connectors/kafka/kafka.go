// Package kafka connects the engine to Kafka with franz-go: a consumer-group
// source that feeds partition tasks, a producer for sinks and the
// dead-letter topic, topic creation, and the embedded kfake broker. It is
// the only production package that imports franz-go.
package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/pheromone-go/pheromone/engine"
	"github.com/pheromone-go/pheromone/engine/app"
)

// Producer implements engine.Producer with a franz-go client.
type Producer struct {
	cl   *kgo.Client
	pool sync.Pool
}

// NewProducer connects a producer to brokers. Records are acknowledged by
// all in-sync replicas and retried until they are (idempotent producer).
func NewProducer(conn Conn) (*Producer, error) {
	cl, err := kgo.NewClient(producerOpts(conn)...)
	if err != nil {
		return nil, fmt.Errorf("kafka: producer: %w", err)
	}
	p := &Producer{cl: cl}
	p.pool.New = func() any { return new(kgo.Record) }
	return p, nil
}

func producerOpts(conn Conn) []kgo.Opt {
	return conn.opts(
		// No linger: a partition task waits for its cycle's acks before it
		// commits, so records should leave at once; franz-go still batches
		// whatever accumulates while a request is in flight.
		kgo.ProducerLinger(0),
		kgo.MaxBufferedRecords(100_000),
		kgo.ProducerBatchMaxBytes(producerBatchMax),
		kgo.RecordDeliveryTimeout(2*time.Minute),
		// Kafka's default partitioning for keyed records (murmur2), which
		// engine.PartitionOf mirrors.
		kgo.RecordPartitioner(pinnedPartitioner{kgo.UniformBytesPartitioner(64<<10, true, true, nil)}),
	)
}

// Produce implements engine.Producer.
func (p *Producer) Produce(r *engine.OutRecord, done func(error)) {
	produce(p.cl, &p.pool, r, func(_ int64, err error) { done(err) })
}

// Writer returns an at-least-once engine.PartitionWriter over the shared
// producer that reports offsets (the changelog checkpoint needs them).
func (p *Producer) Writer() engine.PartitionWriter { return sharedWriter{p} }

type sharedWriter struct{ p *Producer }

func (w sharedWriter) Produce(r *engine.OutRecord, done func(int64, error)) {
	produce(w.p.cl, &w.p.pool, r, done)
}
func (sharedWriter) Commit(context.Context) error { return nil }
func (sharedWriter) Close()                       {}

func produce(cl *kgo.Client, pool *sync.Pool, r *engine.OutRecord, done func(int64, error)) {
	kr := pool.Get().(*kgo.Record)
	*kr = kgo.Record{Topic: r.Topic, Key: r.Key, Value: r.Value, Partition: -1}
	if r.ToPartition {
		kr.Partition = r.Partition
	}
	for _, h := range r.Headers {
		kr.Headers = append(kr.Headers, kgo.RecordHeader{Key: h.Key, Value: h.Value})
	}
	cl.Produce(context.Background(), kr, func(kr *kgo.Record, err error) {
		off := kr.Offset
		*kr = kgo.Record{}
		pool.Put(kr)
		done(off, err)
	})
}

// pinnedPartitioner sends records with a partition set (changelog and
// repartition records) there, and others by key like a Kafka producer.
type pinnedPartitioner struct{ byKey kgo.Partitioner }

func (p pinnedPartitioner) ForTopic(topic string) kgo.TopicPartitioner {
	return &pinnedTopic{byKey: p.byKey.ForTopic(topic).(kgo.TopicBackupPartitioner)}
}

type pinnedTopic struct{ byKey kgo.TopicBackupPartitioner }

func (p *pinnedTopic) PartitionByBackup(r *kgo.Record, n int, it kgo.TopicBackupIter) int {
	if r.Partition >= 0 {
		return int(r.Partition)
	}
	return p.byKey.PartitionByBackup(r, n, it)
}

func (p *pinnedTopic) RequiresConsistency(r *kgo.Record) bool {
	return r.Partition >= 0 || p.byKey.RequiresConsistency(r)
}

func (p *pinnedTopic) Partition(r *kgo.Record, n int) int {
	if r.Partition >= 0 {
		return int(r.Partition)
	}
	return p.byKey.Partition(r, n)
}

func (p *pinnedTopic) OnNewBatch() {
	if nb, ok := p.byKey.(kgo.TopicPartitionerOnNewBatch); ok {
		nb.OnNewBatch()
	}
}

// Flush waits for buffered records.
func (p *Producer) Flush(ctx context.Context) error { return p.cl.Flush(ctx) }

// Close flushes and closes the client.
func (p *Producer) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = p.cl.Flush(ctx)
	p.cl.Close()
}

// Source consumes an app's source topics in a consumer group and feeds the
// node's partition tasks.
type Source struct {
	Conn   Conn
	Group  string
	Topics []string
	Node   engine.Feed
	Logger *slog.Logger
	// CommitInterval is how often state-committed offsets are also committed
	// to the group (so lag tools see them); default 1s.
	CommitInterval time.Duration
	// ReadCommitted consumes only committed transactions (exactly-once).
	ReadCommitted bool
	// SessionTimeout is how long the group waits for a silent member before
	// moving its partitions; default 10s.
	SessionTimeout time.Duration
	// ClientID is the member's client id in the group; nodes advertise their
	// HTTP address in it for query routing (see Members).
	ClientID string
	// ProbeInterval overrides the package's ProbeInterval (tests that step
	// a virtual clock look often).
	ProbeInterval time.Duration
	// BeforeFirstAssign, if set, runs once, when the group first gives the
	// node partitions and before it takes them (the members are all known
	// by then); an error stops the source with it, the partitions untaken.
	BeforeFirstAssign func(ctx context.Context) error
}

// Run consumes until ctx ends. On return the group is left and every
// revoked partition's task has flushed and committed.
func (s *Source) Run(ctx context.Context) error {
	if s.Logger == nil {
		s.Logger = slog.Default()
	}
	if s.CommitInterval <= 0 {
		s.CommitInterval = time.Second
	}
	if s.SessionTimeout <= 0 {
		s.SessionTimeout = app.DefaultSessionTimeout
	}
	iso := kgo.ReadUncommitted()
	if s.ReadCommitted {
		iso = kgo.ReadCommitted()
	}
	// Control records (transaction markers) come through so a partition's
	// position includes them: a task is caught up with a transactional
	// topic only once it is past its last marker (see the log-end probe).
	extra := []kgo.Opt{kgo.FetchIsolationLevel(iso), kgo.KeepControlRecords()}
	if os.Getenv("PHEROMONE_KAFKA_DEBUG") != "" {
		// franz-go's own log of the group protocol, for diagnosing rebalances.
		extra = append(extra, kgo.WithLogger(kgo.BasicLogger(os.Stderr, kgo.LogLevelDebug, nil)))
	}
	if s.ClientID != "" {
		extra = append(extra, kgo.ClientID(s.ClientID))
	}
	node := s.Node
	toTPs := func(m map[string][]int32) []engine.TopicPartition {
		var out []engine.TopicPartition
		for t, ps := range m {
			for _, p := range ps {
				out = append(out, engine.TopicPartition{Topic: t, Partition: p})
			}
		}
		return out
	}
	var cl *kgo.Client
	assignErr := make(chan error, 1)
	first := s.BeforeFirstAssign
	pollCtx, stopPoll := context.WithCancel(ctx)
	defer stopPoll()
	commit := func(ctx context.Context, only map[string][]int32) {
		offs := map[string]map[int32]kgo.EpochOffset{}
		for tp, off := range node.Committed() {
			if only != nil && !contains(only[tp.Topic], tp.Partition) {
				continue
			}
			if offs[tp.Topic] == nil {
				offs[tp.Topic] = map[int32]kgo.EpochOffset{}
			}
			offs[tp.Topic][tp.Partition] = kgo.EpochOffset{Epoch: -1, Offset: off}
		}
		if len(offs) == 0 {
			return
		}
		cl.CommitOffsetsSync(ctx, offs, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, _ *kmsg.OffsetCommitResponse, err error) {
			if err != nil && !errors.Is(err, context.Canceled) {
				s.Logger.Warn("group offset commit failed (state offsets stay authoritative)", "error", err)
			}
		})
	}
	var err error
	cl, err = s.Conn.client(append(extra,
		kgo.ConsumerGroup(s.Group),
		kgo.ConsumeTopics(s.Topics...),
		kgo.DisableAutoCommit(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(100*time.Millisecond),
		// Partition p of every topic goes to one member (co-partitioning),
		// rebalanced cooperatively.
		kgo.Balancers(newCopartitioned(s.Topics[0])),
		// A node that died is noticed within the session timeout (10 s by
		// default; Kafka's is 45 s), so its partitions move quickly when it
		// does not come back. A survivor hears of the rebalance with its
		// next heartbeat, so a heartbeat every tenth of the session timeout
		// (at most 1 s) keeps that wait a small part of a failover.
		kgo.SessionTimeout(s.SessionTimeout),
		kgo.HeartbeatInterval(min(time.Second, s.SessionTimeout/10)),
		kgo.OnPartitionsAssigned(func(ctx context.Context, _ *kgo.Client, m map[string][]int32) {
			s.Logger.Info("partitions assigned", "partitions", fmt.Sprint(m))
			var err error
			if first != nil {
				err, first = first(ctx), nil // the callbacks run one at a time
			}
			if err == nil {
				err = node.Assign(toTPs(m))
			}
			if err != nil {
				// A partition that cannot load or restore its state must not
				// be consumed without it: stop, and let the node be restarted.
				s.Logger.Error("assigning partitions failed; stopping", "error", err)
				select {
				case assignErr <- err:
				default:
				}
				stopPoll()
			}
		}),
		kgo.AdjustFetchOffsetsFn(func(_ context.Context, m map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
			// The node's state is authoritative: resume exactly where the
			// committed state is, whatever the group says.
			for topic, ps := range m {
				for p, o := range ps {
					if off, ok := node.StartOffset(engine.TopicPartition{Topic: topic, Partition: p}); ok {
						ps[p] = kgo.NewOffset().At(off).WithEpoch(-1)
					} else if o.EpochOffset().Offset > 0 {
						// Neither local state nor the changelog has an offset
						// for it (an app without a changelog, or state from
						// before one): objects held elsewhere are not here.
						s.Logger.Warn("partition resumes at the group's offset without its bucket state",
							"topic", topic, "partition", p, "offset", o.EpochOffset().Offset)
					}
				}
			}
			return m, nil
		}),
		kgo.OnPartitionsRevoked(func(ctx context.Context, _ *kgo.Client, m map[string][]int32) {
			s.Logger.Info("partitions revoked", "partitions", fmt.Sprint(m))
			t0 := time.Now()
			node.Revoke(toTPs(m))
			s.Logger.Info("revoked partitions committed and stopped", "partitions", fmt.Sprint(m), "took", time.Since(t0).Round(time.Millisecond))
			commit(ctx, m)
		}),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			s.Logger.Warn("partitions lost (this node left the group without revoking them)", "partitions", fmt.Sprint(m))
			node.Revoke(toTPs(m))
		}),
	)...)
	if err != nil {
		return fmt.Errorf("kafka: consumer: %w", err)
	}
	var wg sync.WaitGroup
	loopCtx, stopLoop := context.WithCancel(ctx)
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(s.CommitInterval)
		defer t.Stop()
		for {
			select {
			case <-loopCtx.Done():
				return
			case <-t.C:
				commit(loopCtx, nil)
			}
		}
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.probe(loopCtx, cl)
	}()
	err = s.poll(pollCtx, cl)
	select {
	case aerr := <-assignErr:
		err = fmt.Errorf("kafka: %w", aerr)
	default:
	}
	stopLoop()
	wg.Wait()
	// Leaving the group revokes everything: the revoke callback lets the
	// tasks flush and commit, then commits their offsets to the group.
	cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = cl.LeaveGroupContext(cctx)
	cl.Close()
	return err
}

func (s *Source) poll(ctx context.Context, cl *kgo.Client) error {
	for {
		// A partition task restarted after an aborted transaction resumes
		// at its last commit: seek there before delivering anything else.
		if rw := s.Node.TakeRewinds(); len(rw) > 0 {
			set := map[string]map[int32]kgo.EpochOffset{}
			for tp, off := range rw {
				if set[tp.Topic] == nil {
					set[tp.Topic] = map[int32]kgo.EpochOffset{}
				}
				set[tp.Topic][tp.Partition] = kgo.EpochOffset{Epoch: -1, Offset: off}
			}
			cl.SetOffsets(set)
			s.Logger.Info("rewound restarted partitions to their last commit", "offsets", fmt.Sprint(rw))
		}
		pctx, cancel := context.WithCancel(ctx)
		woke := make(chan struct{})
		go func() {
			defer close(woke)
			select {
			case <-s.Node.RewindRequested():
				cancel()
			case <-pctx.Done():
			}
		}()
		fs := cl.PollRecords(pctx, 10_000)
		cancel()
		<-woke
		if ctx.Err() != nil {
			return nil
		}
		if fs.IsClientClosed() {
			return nil
		}
		var fatal error
		fs.EachError(func(topic string, p int32, err error) {
			if errors.Is(err, context.Canceled) {
				return
			}
			if IsAuthorization(err) && fatal == nil {
				// Only an operator can change this: stop, saying what.
				fatal = fmt.Errorf("kafka: the cluster refused the node on topic %q (group %q): %w", topic, s.Group, err)
				return
			}
			var ke *kerr.Error
			if errors.As(err, &ke) && !ke.Retriable {
				s.Logger.Error("fetch error", "topic", topic, "partition", p, "error", err)
				return
			}
			s.Logger.Warn("fetch error", "topic", topic, "partition", p, "error", err)
		})
		fs.EachPartition(func(ftp kgo.FetchTopicPartition) {
			if fatal != nil || len(ftp.Records) == 0 {
				return
			}
			recs := make([]engine.Record, 0, len(ftp.Records))
			for _, r := range ftp.Records {
				if r.Attrs.IsControl() {
					continue // a transaction marker: it only moves the position
				}
				rec := engine.Record{Key: r.Key, Value: r.Value, Offset: r.Offset, Timestamp: r.Timestamp}
				if len(r.Headers) > 0 {
					hs := make([]engine.Header, len(r.Headers))
					for j, h := range r.Headers {
						hs[j] = engine.Header{Key: h.Key, Value: h.Value}
					}
					rec.Headers = hs
				}
				recs = append(recs, rec)
			}
			end := ftp.HighWatermark
			if s.ReadCommitted {
				end = ftp.LastStableOffset
			}
			next := ftp.Records[len(ftp.Records)-1].Offset + 1
			if err := s.Node.DeliverFetch(ctx, ftp.Topic, ftp.Partition, recs, next, end); err != nil && ctx.Err() == nil {
				fatal = err
			}
		})
		if fatal != nil {
			return fatal
		}
	}
}

// ProbeInterval is how often the source looks at the log ends of its
// assigned partitions (for idleness and for the offset-loss check) unless
// Source.ProbeInterval says otherwise.
const ProbeInterval = 250 * time.Millisecond

// probe looks at the start and end offsets of the assigned partitions
// every ProbeInterval and reports them to the node (Feed.ObserveLogEnds):
// a fetch reports the log end only when it brings records, so a caught-up
// partition learns that it still is from here, and a partition whose log
// lost its offset (data loss, retention) finds out. Each look is stamped
// (Node.StartLook) before it starts.
func (s *Source) probe(ctx context.Context, cl *kgo.Client) {
	adm := kadm.NewClient(cl)
	every := s.ProbeInterval
	if every <= 0 {
		every = ProbeInterval
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		tps := s.Node.Assigned()
		if len(tps) == 0 {
			continue
		}
		seen := map[string]bool{}
		var topics []string
		for _, tp := range tps {
			if !seen[tp.Topic] {
				seen[tp.Topic] = true
				topics = append(topics, tp.Topic)
			}
		}
		look := s.Node.StartLook()
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		var ends kadm.ListedOffsets
		var err error
		if s.ReadCommitted {
			ends, err = adm.ListCommittedOffsets(lctx, topics...)
		} else {
			ends, err = adm.ListEndOffsets(lctx, topics...)
		}
		var starts kadm.ListedOffsets
		if err == nil {
			starts, err = adm.ListStartOffsets(lctx, topics...)
		}
		cancel()
		if err != nil {
			continue // the next look will do; meanwhile the task's looks go stale
		}
		ranges := make(map[engine.TopicPartition]engine.LogRange, len(tps))
		for _, tp := range tps {
			e, ok := ends.Lookup(tp.Topic, tp.Partition)
			st, ok2 := starts.Lookup(tp.Topic, tp.Partition)
			if !ok || !ok2 || e.Err != nil || st.Err != nil {
				continue
			}
			ranges[tp] = engine.LogRange{Start: st.Offset, End: e.Offset}
		}
		s.Node.ObserveLogEnds(ranges, look)
	}
}

func contains(ps []int32, p int32) bool {
	for _, q := range ps {
		if q == p {
			return true
		}
	}
	return false
}

// EnsureTopics creates the topics that do not exist yet with the given
// partition counts (replication factor 1 on a single broker, else the
// broker default).
func EnsureTopics(ctx context.Context, conn Conn, topics map[string]int) error {
	return ensureTopics(ctx, conn, topics, nil)
}

// EnsureCompactedTopics is EnsureTopics for topics with cleanup.policy=compact.
func EnsureCompactedTopics(ctx context.Context, conn Conn, topics map[string]int) error {
	compact := "compact"
	return ensureTopics(ctx, conn, topics, map[string]*string{"cleanup.policy": &compact})
}

func ensureTopics(ctx context.Context, conn Conn, topics map[string]int, configs map[string]*string) error {
	cl, err := conn.client()
	if err != nil {
		return fmt.Errorf("kafka: admin: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	// Only the missing topics are created: a cluster whose topics exist
	// need not grant the node Create.
	names := make([]string, 0, len(topics))
	for t := range topics {
		names = append(names, t)
	}
	req := kmsg.NewPtrMetadataRequest()
	for _, t := range names {
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr(t)
		req.Topics = append(req.Topics, rt)
	}
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return fmt.Errorf("kafka: list topics: %w", err)
	}
	have := map[string]bool{}
	for _, t := range resp.Topics {
		if t.Topic != nil && t.ErrorCode == 0 {
			have[*t.Topic] = true
		}
	}
	for topic, parts := range topics {
		if have[topic] {
			continue
		}
		resp, err := adm.CreateTopic(ctx, int32(parts), -1, configs, topic)
		if err == nil {
			err = resp.Err
		}
		if errors.Is(err, kerr.TopicAuthorizationFailed) || errors.Is(err, kerr.ClusterAuthorizationFailed) {
			return &AccessError{Brokers: conn.Brokers, Who: conn.who(), Missing: []string{fmt.Sprintf("create topic %q (Create; or create it with %d partitions yourself)", topic, parts)}}
		}
		if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("kafka: create topic %s: %w", topic, err)
		}
	}
	return nil
}

// FeedTable reads a (compacted) topic from the start and hands every record
// to upsert (value nil for tombstones). It returns once it has caught up with
// the end offsets the topic had when it started, so lookups see the whole
// table from the first record processed; tail then keeps following the
// topic until its ctx ends.
func FeedTable(ctx context.Context, conn Conn, topic string, upsert func(key, value []byte) error, log *slog.Logger) (tail func(context.Context) error, err error) {
	if log == nil {
		log = slog.Default()
	}
	acl, err := conn.client()
	if err != nil {
		return nil, fmt.Errorf("kafka: table %s: %w", topic, err)
	}
	ends, err := kadm.NewClient(acl).ListEndOffsets(ctx, topic)
	acl.Close()
	if err != nil {
		return nil, fmt.Errorf("kafka: table %s: end offsets: %w", topic, err)
	}
	need := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err == nil && o.Offset > 0 {
			need[o.Partition] = o.Offset
		}
	})
	cl, err := conn.client(kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(100*time.Millisecond))
	if err != nil {
		return nil, fmt.Errorf("kafka: table %s: %w", topic, err)
	}
	poll := func(ctx context.Context) error {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return err
		}
		fs.EachError(func(_ string, p int32, err error) {
			log.Warn("table fetch error", "topic", topic, "partition", p, "error", err)
		})
		var bad error
		fs.EachRecord(func(r *kgo.Record) {
			if err := upsert(r.Key, r.Value); err != nil && bad == nil {
				bad = err
			}
			if end, ok := need[r.Partition]; ok && r.Offset+1 >= end {
				delete(need, r.Partition)
			}
		})
		if bad != nil {
			log.Warn("bad table record skipped", "topic", topic, "error", bad)
		}
		return nil
	}
	for len(need) > 0 {
		if err := poll(ctx); err != nil {
			cl.Close()
			return nil, fmt.Errorf("kafka: table %s: %w", topic, err)
		}
	}
	return func(ctx context.Context) error {
		defer cl.Close()
		for ctx.Err() == nil {
			_ = poll(ctx)
		}
		return nil
	}, nil
}

// producerBatchMax is the producer's ProducerBatchMaxBytes: no record
// larger than a batch can be sent, whatever the topic allows.
const producerBatchMax = 1 << 20

// RecordLimits returns, per topic, the largest record (key, value and
// headers) the engine may write to it: the topic's max.message.bytes
// (which defaults to the broker's message.max.bytes), capped by the
// producer's batch size, less room for the batch header. Topics whose
// configuration cannot be read are left out (the engine's default applies).
func RecordLimits(ctx context.Context, conn Conn, topics []string) (map[string]int, error) {
	cl, err := conn.client()
	if err != nil {
		return nil, fmt.Errorf("kafka: record limits: %w", err)
	}
	defer cl.Close()
	rcs, err := kadm.NewClient(cl).DescribeTopicConfigs(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("kafka: record limits: %w", err)
	}
	out := map[string]int{}
	for _, rc := range rcs {
		if rc.Err != nil {
			continue
		}
		limit := producerBatchMax
		for _, c := range rc.Configs {
			if c.Key == "max.message.bytes" && c.Value != nil {
				if v, err := strconv.Atoi(*c.Value); err == nil && v > 0 {
					limit = min(limit, v)
				}
			}
		}
		out[rc.Name] = limit - 1024
	}
	return out, nil
}
