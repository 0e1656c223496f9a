package engine

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"

	"github.com/pheromone-go/pheromone/engine/app"
	"github.com/pheromone-go/pheromone/engine/codec"
	"github.com/pheromone-go/pheromone/triggers"
)

// Repartitioning: objects a function puts into a bucket with partition_by go
// to the partition that owns the column's value; control objects of a
// dynamic_group trigger on the bucket go to every partition. Rows owned by the task's
// own partition are put directly; the others become JSON records of the
// bucket's repartition topic, written to the owning partition (with the
// session in a header) and consumed there by the partition task like a
// source, in the same transaction as everything else under exactly-once.

// PartitionOf is the partition that owns key among n partitions: Kafka's
// default partitioner (murmur2 of the key, made positive, modulo n), so a
// topic produced with the same keys is co-partitioned with the bucket.
func PartitionOf(key []byte, n int) int32 {
	return int32((murmur2(key) & 0x7fffffff) % uint32(n))
}

// murmur2 is the 32-bit MurmurHash2 with the seed Kafka's clients use.
func murmur2(b []byte) uint32 {
	const (
		seed = 0x9747b28c
		m    = 0x5bd1e995
		r    = 24
	)
	h := uint32(seed) ^ uint32(len(b))
	n4 := len(b) &^ 3
	for i := 0; i < n4; i += 4 {
		k := uint32(b[i]) | uint32(b[i+1])<<8 | uint32(b[i+2])<<16 | uint32(b[i+3])<<24
		k *= m
		k ^= k >> r
		k *= m
		h *= m
		h ^= k
	}
	switch len(b) & 3 {
	case 3:
		h ^= uint32(b[n4+2]) << 16
		fallthrough
	case 2:
		h ^= uint32(b[n4+1]) << 8
		fallthrough
	case 1:
		h ^= uint32(b[n4])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return h
}

// appendKey appends the partitioning key of row i of col: strings as they
// are, numbers and booleans in their JSON form; nil for null.
func appendKey(dst []byte, col arrow.Array, i int) []byte {
	if col.IsNull(i) {
		return dst
	}
	switch c := col.(type) {
	case *array.String:
		return append(dst, c.Value(i)...)
	case *array.Int64:
		return strconv.AppendInt(dst, c.Value(i), 10)
	case *array.Float64:
		return strconv.AppendFloat(dst, c.Value(i), 'g', -1, 64)
	case *array.Boolean:
		return strconv.AppendBool(dst, c.Value(i))
	case *array.Timestamp:
		return strconv.AppendInt(dst, int64(c.Value(i)), 10)
	case *array.Binary:
		return append(dst, c.Value(i)...)
	}
	return fmt.Append(dst, col.ValueStr(i))
}

// repartitionSources adds, for every bucket with partition_by, the
// bucket's repartition topic as a source of the bucket.
func repartitionSources(a *app.App, sources map[string]*app.Source, repart map[string]string) {
	for _, b := range a.Buckets {
		if b.PartitionBy == "" {
			continue
		}
		topic := a.RepartitionTopic(b.Name)
		sources[topic] = &app.Source{Name: "repartition:" + b.Name, Topic: topic, Format: "json", Bucket: b.Name,
			MaxRecordBytes: math.MaxInt32, Partitions: a.Partitions()}
		repart[topic] = b.Name
	}
}

// repartition puts the rows of rec owned by this partition into b and sends
// the others to their partitions. It takes over rec.
func (t *task) repartition(b *bucket, rec arrow.Record, session string) {
	defer rec.Release()
	col := rec.Column(rec.Schema().FieldIndices(b.cfg.PartitionBy)[0])
	parts := t.n.plan.app.Partitions()
	broadcast := t.n.plan.buckets[b.name].broadcast
	var keys []string // the bucket's key column, when control objects are broadcast
	if broadcast != nil {
		keys = stringColumn(rec, b.cfg.Key)
	}
	var from *sent // the senders' watermarks, when the bucket merges them
	if len(b.mergers) > 0 {
		from = t.send(b, rec, t.n.o.Clock.Now())
	}
	topic := t.n.plan.app.RepartitionTopic(b.name)
	var enc codec.JSONEncoder
	// key is the current row's key; kbuf, buf and hbuf hold the keys, values
	// and watermark headers of the records produced, sliced with full
	// capacity so a later append never overwrites a record still in flight.
	var key, kbuf, buf, hbuf []byte
	// The session header is shared by every record of the call; only a
	// merged bucket's records need headers of their own (the watermark),
	// carved from one growing slice like the keys and values.
	var base, hdrs []Header
	if session != "" {
		base = []Header{{HeaderSession, []byte(session)}}
	}
	headers := func(i int) []Header {
		if from == nil {
			return base
		}
		hs, ws := len(hbuf), len(hdrs)
		hbuf = appendWatermarkHeader(hbuf, t.part, from, i, nil)
		hdrs = append(append(hdrs, base...), Header{HeaderWatermark, hbuf[hs:len(hbuf):len(hbuf)]})
		return hdrs[ws:len(hdrs):len(hdrs)]
	}
	limit := t.n.recordLimit(topic)
	// send produces one row to its partition, or dead-letters it if the
	// topic would refuse it.
	send := func(r *OutRecord) {
		if n := outSize(r); n > limit {
			err := &TooLargeError{Topic: topic, Size: n, Limit: limit}
			d := deadLetter{reason: ReasonTooLarge, err: err, bucket: b.name, partition: t.part}
			t.dead(d.record(r.Key, r.Value), ReasonTooLarge)
			return
		}
		t.produce(r)
	}
	putLocal := func(i, j int) {
		var f *sent
		if from != nil {
			f = from.slice(i, j)
		}
		t.putFrom(b, rec.NewSlice(int64(i), int64(j)), session, f, nil)
	}
	local := -1 // start of the current run of local rows
	rows := int(rec.NumRows())
	for i := 0; i <= rows; i++ {
		mine := false
		var p int32
		if i < rows {
			key = appendKey(key[:0], col, i)
			p = PartitionOf(key, parts)
			mine = p == t.part
			if keys != nil && broadcast[keys[i]] {
				// A control object: every partition's groups count it.
				start, ks := len(buf), len(kbuf)
				buf = enc.AppendRow(buf, rec, i)
				kbuf = append(kbuf, key...)
				hdr := headers(i)
				for q := int32(0); q < int32(parts); q++ {
					if q != t.part {
						send(&OutRecord{Topic: topic, Key: kbuf[ks:len(kbuf):len(kbuf)], Value: buf[start:len(buf):len(buf)],
							Headers: hdr, Partition: q, ToPartition: true})
					}
				}
				mine = true
			}
		}
		if mine {
			if local < 0 {
				local = i
			}
			continue
		}
		if local >= 0 {
			putLocal(local, i)
			local = -1
		}
		if i == rows {
			break
		}
		start, ks := len(buf), len(kbuf)
		buf = enc.AppendRow(buf, rec, i)
		kbuf = append(kbuf, key...)
		send(&OutRecord{Topic: topic, Key: kbuf[ks:len(kbuf):len(kbuf)], Value: buf[start:len(buf):len(buf)],
			Headers: headers(i), Partition: p, ToPartition: true})
	}
}

// decodeRepartitioned puts records of a repartition topic into their
// bucket, one put per run of records of the same session, and applies the
// watermark markers between them in order.
func (t *task) decodeRepartitioned(src *app.Source, topic string, recs []Record) {
	d := t.decoders[topic]
	b := t.buckets[src.Bucket]
	merged := len(b.mergers) > 0
	wms := make([]int64, len(b.mergers))
	marker := func(r *Record) bool { return len(r.Value) == 0 && r.Header(HeaderWatermark) != nil }
	for i := 0; i < len(recs); {
		if marker(&recs[i]) {
			// A watermark marker of an upstream partition (ignored if the
			// bucket no longer has event-time triggers).
			if h := recs[i].Header(HeaderWatermark); merged {
				if up, ok := parseWatermarkHeader(h, wms); ok {
					var out []triggers.Firing
					for m, tr := range b.mergers {
						out = tr.merger.Observe(int(up), wms[m], out[:0])
						t.queueFirings(b, tr, out)
					}
				}
			}
			i++
			continue
		}
		session := recs[i].Header(HeaderSession)
		var from *sent
		if merged {
			from = &sent{wms: make([][]int64, len(b.mergers))}
		}
		j := i
		d.Reserve(len(recs) - i)
		for ; j < len(recs) && bytes.Equal(recs[j].Header(HeaderSession), session); j++ {
			if marker(&recs[j]) {
				break
			}
			if err := d.Append(recs[j].Value); err != nil {
				t.deadRecord(src, topic, &recs[j], ReasonDecode, err)
				continue
			}
			if merged {
				up, ok := parseWatermarkHeader(recs[j].Header(HeaderWatermark), wms)
				if !ok {
					up = -1
				}
				from.upstream = append(from.upstream, up)
				for m := range wms {
					from.wms[m] = append(from.wms[m], wms[m])
				}
			}
		}
		rec := d.NewRecord()
		if rec.NumRows() == 0 {
			rec.Release()
		} else {
			t.putFrom(b, rec, string(session), from, nil)
		}
		i = j
	}
}

// Watermarks through repartition topics. An event-time trigger on a bucket
// with partition_by merges the watermarks of every upstream partition (see
// triggers.Merger). Each object a partition sends into such a bucket —
// through the topic or put locally — carries the sender's watermark just
// before it, per merged trigger; at the end of a cycle whose watermark
// changed, the sender publishes it to every other partition as a marker (a
// record with the header and no value), in order with its data, and to its
// own partition directly. Markers ride in the cycle's transaction under
// exactly-once. The header is uvarint(sender partition) followed by one
// varint per merged trigger of the bucket (unix ns; NoWatermark for none).

// sent is the senders' side of objects put into a merged bucket: the
// sending partition and, per merged trigger, its watermark before each.
type sent struct {
	upstream []int32
	wms      [][]int64
}

// slice returns the part of s for rows [i, j).
func (s *sent) slice(i, j int) *sent {
	out := &sent{upstream: s.upstream[i:j], wms: make([][]int64, len(s.wms))}
	for m := range s.wms {
		out.wms[m] = s.wms[m][i:j]
	}
	return out
}

// send records rec's rows as sent by this partition into b, in order.
func (t *task) send(b *bucket, rec arrow.Record, now time.Time) *sent {
	n := int(rec.NumRows())
	ts := millisColumn(rec, b.cfg.EventTime)
	s := &sent{upstream: make([]int32, n), wms: make([][]int64, len(b.mergers))}
	for i := range s.upstream {
		s.upstream[i] = t.part
	}
	for m := range s.wms {
		s.wms[m] = make([]int64, n)
	}
	for i := 0; i < n; i++ {
		var ms int64
		if ts != nil {
			ms = ts[i]
		}
		for m, tr := range b.mergers {
			s.wms[m][i] = tr.merger.Send(ms, now)
		}
	}
	return s
}

// appendWatermarkHeader encodes the watermark header of row i of s (or of
// wms when s is nil).
func appendWatermarkHeader(dst []byte, part int32, s *sent, i int, wms []int64) []byte {
	dst = binary.AppendUvarint(dst, uint64(part))
	if s != nil {
		for m := range s.wms {
			dst = binary.AppendVarint(dst, s.wms[m][i])
		}
		return dst
	}
	for _, w := range wms {
		dst = binary.AppendVarint(dst, w)
	}
	return dst
}

// parseWatermarkHeader decodes a watermark header into wms (one per merged
// trigger; missing values are NoWatermark).
func parseWatermarkHeader(h []byte, wms []int64) (part int32, ok bool) {
	for m := range wms {
		wms[m] = triggers.NoWatermark
	}
	p, n := binary.Uvarint(h)
	if n <= 0 || p > math.MaxInt32 {
		return -1, false
	}
	h = h[n:]
	for m := range wms {
		if v, k := binary.Varint(h); k > 0 {
			wms[m] = v
			h = h[k:]
		}
	}
	return int32(p), true
}

// publishWatermarks publishes the merged triggers' changed watermarks:
// markers to every other partition of the bucket's repartition topic, and
// Observe on this partition. It reports whether anything was published.
func (t *task) publishWatermarks() bool {
	published := false
	parts := int32(t.n.plan.app.Partitions())
	for _, b := range t.order {
		if len(b.mergers) == 0 {
			continue
		}
		wms := make([]int64, len(b.mergers))
		changed := false
		for m, tr := range b.mergers {
			var ch bool
			wms[m], ch = tr.merger.Publish()
			changed = changed || ch
		}
		if !changed {
			continue
		}
		published = true
		var out []triggers.Firing
		for m, tr := range b.mergers {
			out = tr.merger.Observe(int(t.part), wms[m], out[:0])
			t.queueFirings(b, tr, out)
		}
		hdr := appendWatermarkHeader(nil, t.part, nil, 0, wms)
		topic := t.n.plan.app.RepartitionTopic(b.name)
		for q := int32(0); q < parts; q++ {
			if q != t.part {
				t.produce(&OutRecord{Topic: topic, Partition: q, ToPartition: true, Headers: []Header{{HeaderWatermark, hdr}}})
			}
		}
	}
	return published
}
