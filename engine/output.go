package engine

import (
	"fmt"
	"slices"

	"github.com/apache/arrow/go/v15/arrow"

	"github.com/pheromone-go/pheromone/engine/app"
	"github.com/pheromone-go/pheromone/engine/codec"
)

// routeOutputs turns what a successful invocation of j emitted into the
// result the task applies: each record goes to the outputs it was emitted
// to (all of the function's outputs for Emit) — the invocation's reply,
// table rows, objects put into buckets, and encoded sink records. Dead
// letters are built by deadLetter (deadletter.go); the task then applies
// the result in firing order (task.apply), and a bucket with partition_by
// sends its rows on through the repartition topic (repartition.go).
func routeOutputs(j *job, out *collector, r *result) error {
	routeReply(j, out, r)
	routeTables(j, out, r)
	routeBuckets(j, out, r)
	return routeSinks(j, out, r)
}

// emittedTo says whether the i-th record out holds goes to output name.
func (c *collector) emittedTo(i int, name string) bool { return c.to[i] == "" || c.to[i] == name }

// routeReply encodes the rows emitted to the invocation's result sink, in
// a session, as the JSON array that answers it.
func routeReply(j *job, out *collector, r *result) {
	if j.fn.result == "" || j.firing.Session == "" {
		return
	}
	var enc codec.JSONEncoder
	body := []byte{'['}
	rows := 0
	for i, rec := range out.recs {
		if !out.emittedTo(i, j.fn.result) {
			continue
		}
		for k := 0; k < int(rec.NumRows()); k++ {
			if rows > 0 {
				body = append(body, ',')
			}
			body = enc.AppendRow(body, rec, k)
			rows++
		}
	}
	if rows > 0 {
		r.replies = append(r.replies, reply{session: j.firing.Session, fn: j.fn.cfg.Name, body: append(body, ']'), rows: rows})
	}
}

// routeTables encodes the rows emitted to table sinks, keyed by each
// table's key column.
func routeTables(j *job, out *collector, r *result) {
	var enc codec.JSONEncoder
	for _, tb := range j.fn.tables {
		var rows []SinkRow
		for i, rec := range out.recs {
			if !out.emittedTo(i, tb.Name) {
				continue
			}
			keyCol := rec.Column(rec.Schema().FieldIndices(tb.Key)[0])
			for k := 0; k < int(rec.NumRows()); k++ {
				rows = append(rows, SinkRow{Key: codec.AppendKey(nil, keyCol, k), Value: enc.AppendRow(nil, rec, k)})
			}
		}
		if len(rows) > 0 {
			r.rows = append(r.rows, sinkRows{sink: tb.Name, rows: rows})
		}
	}
}

// routeBuckets hands the records emitted to buckets to the task (it puts
// them, or repartitions them).
func routeBuckets(j *job, out *collector, r *result) {
	for _, b := range j.fn.buckets {
		for i, rec := range out.recs {
			if !out.emittedTo(i, b) {
				continue
			}
			rec.Retain()
			r.puts = append(r.puts, put{bucket: b, rec: rec})
		}
	}
}

// routeSinks encodes the rows emitted to Kafka sinks and to sinks of a
// connector's kind, one allocation per batch for the values and keys. A
// sink of a connector's format encodes with its RecordEncoder (prepared by
// prepareSinks).
func routeSinks(j *job, out *collector, r *result) error {
	var js codec.JSONEncoder
	for _, sinks := range [2][]*app.Sink{j.fn.sinks, j.fn.connected} {
		for _, s := range sinks {
			enc := j.fn.encoders[s.Name]
			if enc == nil {
				enc = jsonRows{&js}
			}
			var rows []SinkRow
			var buf, kbuf []byte
			for i, rec := range out.recs {
				if !out.emittedTo(i, s.Name) || rec.NumRows() == 0 {
					continue
				}
				// Size the batch's buffers from the first row.
				probe, err := enc.AppendRow(nil, rec, 0)
				if err != nil {
					return fmt.Errorf("sink %s: %w", s.Name, err)
				}
				buf = slices.Grow(buf, (len(probe)+len(probe)/4)*int(rec.NumRows()))
				rows = slices.Grow(rows, int(rec.NumRows()))
				var keyCol arrow.Array
				if s.Key != "" {
					keyCol = rec.Column(rec.Schema().FieldIndices(s.Key)[0])
				}
				for k := 0; k < int(rec.NumRows()); k++ {
					start := len(buf)
					if buf, err = enc.AppendRow(buf, rec, k); err != nil {
						return fmt.Errorf("sink %s: %w", s.Name, err)
					}
					row := SinkRow{Value: buf[start:len(buf):len(buf)]}
					if keyCol != nil {
						ks := len(kbuf)
						kbuf = codec.AppendKey(kbuf, keyCol, k)
						row.Key = kbuf[ks:len(kbuf):len(kbuf)]
					}
					rows = append(rows, row)
				}
			}
			if len(rows) > 0 {
				r.rows = append(r.rows, sinkRows{sink: s.Name, rows: rows})
			}
		}
	}
	return nil
}

// jsonRows is the JSON encoder as a RecordEncoder.
type jsonRows struct{ e *codec.JSONEncoder }

func (jsonRows) Prepare(*arrow.Schema) error { return nil }

func (j jsonRows) AppendRow(dst []byte, rec arrow.Record, i int) ([]byte, error) {
	return j.e.AppendRow(dst, rec, i), nil
}
