package engine

import (
	"bytes"
	"fmt"
	"math"
	"strconv"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"

	"github.com/pheromone-go/pheromone/engine/app"
	"github.com/pheromone-go/pheromone/engine/codec"
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
	topic := t.n.plan.app.RepartitionTopic(b.name)
	var enc codec.JSONEncoder
	// key is the current row's key; kbuf and buf hold the keys and values
	// of the records produced, sliced with full capacity so a later append
	// never overwrites a record still in flight.
	var key, kbuf, buf []byte
	var hdr []Header
	if session != "" {
		hdr = []Header{{HeaderSession, []byte(session)}}
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
				for q := int32(0); q < int32(parts); q++ {
					if q != t.part {
						t.produce(&OutRecord{Topic: topic, Key: kbuf[ks:len(kbuf):len(kbuf)], Value: buf[start:len(buf):len(buf)],
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
			t.put(b, rec.NewSlice(int64(local), int64(i)), session)
			local = -1
		}
		if i == rows {
			break
		}
		start, ks := len(buf), len(kbuf)
		buf = enc.AppendRow(buf, rec, i)
		kbuf = append(kbuf, key...)
		t.produce(&OutRecord{Topic: topic, Key: kbuf[ks:len(kbuf):len(kbuf)], Value: buf[start:len(buf):len(buf)],
			Headers: hdr, Partition: p, ToPartition: true})
	}
}

// decodeRepartitioned puts records of a repartition topic into their
// bucket, one put per run of records of the same session.
func (t *task) decodeRepartitioned(src *app.Source, topic string, recs []Record) {
	d := t.decoders[topic]
	b := t.buckets[src.Bucket]
	for i := 0; i < len(recs); {
		session := recs[i].Header(HeaderSession)
		j := i
		d.Reserve(len(recs) - i)
		for ; j < len(recs) && bytes.Equal(recs[j].Header(HeaderSession), session); j++ {
			if err := d.Append(recs[j].Value); err != nil {
				t.deadRecord(src, topic, &recs[j], ReasonDecode, err)
			}
		}
		rec := d.NewRecord()
		if rec.NumRows() == 0 {
			rec.Release()
		} else {
			t.put(b, rec, string(session))
		}
		i = j
	}
}
