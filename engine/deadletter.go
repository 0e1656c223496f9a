package engine

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"

	"github.com/apache/arrow/go/v15/arrow"

	"github.com/pheromone-go/pheromone/engine/codec"
)

// deadLetter says why records go to the dead-letter topic and where they
// came from. Every dead letter of the engine is built by its record or
// rows method, so all carry the same headers, in the same order, with only
// the origin fields that apply.
type deadLetter struct {
	reason    string
	err       error
	partition int32
	// topic and offset name an input record's place in its source (only
	// with topic set).
	topic  string
	offset int64
	// function, trigger, bucket and session name the step that failed.
	function, trigger, bucket, session string
}

func (d *deadLetter) headers() []Header {
	h := make([]Header, 0, 8)
	h = append(h, Header{HeaderReason, []byte(d.reason)}, Header{HeaderError, []byte(d.err.Error())})
	if d.topic != "" {
		h = append(h, Header{HeaderTopic, []byte(d.topic)})
	}
	h = append(h, Header{HeaderPartition, strconv.AppendInt(nil, int64(d.partition), 10)})
	if d.topic != "" {
		h = append(h, Header{HeaderOffset, strconv.AppendInt(nil, d.offset, 10)})
	}
	for _, kv := range [...]struct{ k, v string }{
		{HeaderFunction, d.function}, {HeaderTrigger, d.trigger}, {HeaderBucket, d.bucket}, {HeaderSession, d.session},
	} {
		if kv.v != "" {
			h = append(h, Header{kv.k, []byte(kv.v)})
		}
	}
	return h
}

// record is the dead letter of one record (an input record as it came, or
// a row already encoded).
func (d *deadLetter) record(key, value []byte) *OutRecord {
	return &OutRecord{Key: key, Value: value, Headers: d.headers()}
}

// rows are the dead letters of every row of rec, as JSON.
func (d *deadLetter) rows(rec arrow.Record) []*OutRecord {
	var enc codec.JSONEncoder
	var buf []byte
	out := make([]*OutRecord, 0, rec.NumRows())
	for i := 0; i < int(rec.NumRows()); i++ {
		start := len(buf)
		buf = enc.AppendRow(buf, rec, i)
		out = append(out, d.record(nil, buf[start:len(buf):len(buf)]))
	}
	return out
}

// fitDeadLetter cuts a dead letter that its topic would refuse: the value
// keeps its first bytes, the headers say it was cut and give the original
// size and SHA-256, so nothing about the record is lost silently.
func fitDeadLetter(r *OutRecord, limit int) {
	if outSize(r) <= limit {
		return
	}
	sum := sha256.Sum256(r.Value)
	r.Headers = append(r.Headers,
		Header{HeaderTruncated, []byte("true")},
		Header{HeaderOriginalSize, strconv.AppendInt(nil, int64(len(r.Value)), 10)},
		Header{HeaderOriginalSHA256, hex.AppendEncode(nil, sum[:])})
	for i, h := range r.Headers {
		if len(h.Value) > 4096 { // an error message with a huge payload in it
			r.Headers[i].Value = h.Value[:4096]
		}
	}
	if len(r.Key) > 4096 {
		r.Key = r.Key[:4096]
	}
	room := limit - (outSize(r) - len(r.Value))
	r.Value = r.Value[:max(0, min(room, len(r.Value)))]
}
