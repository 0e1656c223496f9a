package kafka

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pheromone-go/pheromone/engine"
)

// Peeked is a record read by Latest or Tail, with where it is.
type Peeked struct {
	engine.Record
	Partition int32
}

func peeked(r *kgo.Record) Peeked {
	p := Peeked{Record: engine.Record{Key: r.Key, Value: r.Value, Offset: r.Offset, Timestamp: r.Timestamp}, Partition: r.Partition}
	for _, h := range r.Headers {
		p.Headers = append(p.Headers, engine.Header{Key: h.Key, Value: h.Value})
	}
	return p
}

// Latest reads the last n records of topic (at most n per partition, the
// newest n of them overall, newest first), without joining a group.
func Latest(ctx context.Context, conn Conn, topic string, n int) ([]Peeked, error) {
	out, _, err := ReadFrom(ctx, conn, topic, func(_ int32, start, end int64) int64 { return max(end-int64(n), start) })
	if err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Timestamp.Equal(out[j].Timestamp) {
			return out[i].Timestamp.After(out[j].Timestamp)
		}
		return out[i].Offset > out[j].Offset
	})
	if len(out) > n {
		out = out[:n]
	}
	return out, nil
}

// ReadFrom reads every partition of topic from the offset from gives it
// (given the partition's log start and end) to the end it had when the
// call began, without joining a group. It returns the records, in
// partition then offset order, and the ends read to.
func ReadFrom(ctx context.Context, conn Conn, topic string, from func(part int32, start, end int64) int64) ([]Peeked, map[int32]int64, error) {
	cl, err := conn.client()
	if err != nil {
		return nil, nil, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, nil, fmt.Errorf("kafka: %s: end offsets: %w", topic, err)
	}
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return nil, nil, fmt.Errorf("kafka: %s: start offsets: %w", topic, err)
	}
	at := map[string]map[int32]kgo.Offset{topic: {}}
	want, reached := map[int32]int64{}, map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			return
		}
		reached[o.Partition] = o.Offset
		start := int64(0)
		if s, ok := starts.Lookup(topic, o.Partition); ok && s.Err == nil {
			start = s.Offset
		}
		if f := max(from(o.Partition, start, o.Offset), start); f < o.Offset {
			at[topic][o.Partition] = kgo.NewOffset().At(f)
			want[o.Partition] = o.Offset
		}
	})
	if len(want) == 0 {
		return nil, reached, nil
	}
	rd, err := conn.client(kgo.ConsumePartitions(at), kgo.FetchMaxWait(50*time.Millisecond), kgo.KeepControlRecords())
	if err != nil {
		return nil, nil, err
	}
	defer rd.Close()
	var out []Peeked
	for len(want) > 0 {
		fs := rd.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		fs.EachRecord(func(r *kgo.Record) {
			if end, ok := want[r.Partition]; ok && r.Offset < end {
				if !r.Attrs.IsControl() {
					out = append(out, peeked(r))
				}
				if r.Offset+1 >= end {
					delete(want, r.Partition)
				}
			}
		})
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Partition != out[j].Partition {
			return out[i].Partition < out[j].Partition
		}
		return out[i].Offset < out[j].Offset
	})
	return out, reached, nil
}

// Tail hands every record written to topic from now on to fn until ctx
// ends or fn returns false, without joining a group.
func Tail(ctx context.Context, conn Conn, topic string, fn func(Peeked) bool) error {
	cl, err := conn.client(kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtEnd()), kgo.FetchMaxWait(250*time.Millisecond))
	if err != nil {
		return err
	}
	defer cl.Close()
	for ctx.Err() == nil {
		stop := false
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			if !stop && !fn(peeked(r)) {
				stop = true
			}
		})
		if stop {
			return nil
		}
	}
	return nil
}

// EndOffsets are the log ends of topics' partitions.
func EndOffsets(ctx context.Context, conn Conn, topics ...string) (map[engine.TopicPartition]int64, error) {
	cl, err := conn.client()
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("kafka: end offsets: %w", err)
	}
	out := map[engine.TopicPartition]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err == nil {
			out[engine.TopicPartition{Topic: o.Topic, Partition: o.Partition}] = o.Offset
		}
	})
	return out, nil
}
