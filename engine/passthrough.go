package engine

import (
	"context"
	"sort"

	"github.com/apache/arrow/go/v15/arrow"

	"github.com/pheromone-go/pheromone/engine/app"
	"github.com/pheromone-go/pheromone/engine/codec"
	"github.com/pheromone-go/pheromone/engine/fn"
	"github.com/pheromone-go/pheromone/triggers"
)

// Pass-through (docs/app-format.md, *Pass-through*): a function that only
// keeps some of its input rows unchanged (fn.Selector: the built-in
// filter) or sends each to one of its outputs (fn.Router: route), fired by an immediate trigger on a bucket a JSON source feeds,
// whose every output is a Kafka sink in JSON, sends the kept records as
// they came — value, headers, and key unless the sink names a key column
// (then the row's value of it, as always) — instead of encoding their rows
// again. The decoder keeps each record's bytes beside
// the chunk its rows went to (in memory, until the cycle commits); a
// firing whose objects all have theirs is passed through, any other runs
// the function as usual.

// rawRec is a source record as it came.
type rawRec struct {
	key, value []byte
	headers    []Header
}

// passesThrough reports whether function f's outputs can take its input
// records as they came.
func passesThrough(a *app.App, f *app.Function, impl fn.Function, builtin bool) bool {
	_, sel := impl.(fn.Selector)
	_, route := impl.(fn.Router)
	if !(sel || route) || !builtin || len(f.Outputs) == 0 {
		return false
	}
	for _, o := range f.Outputs {
		s := a.Sink(o)
		if s == nil || s.Kind != "kafka" || (s.Format != "" && s.Format != "json") {
			return false
		}
	}
	return true
}

// rawTopics lists the source topics whose records' bytes are kept: JSON
// sources whose bucket has an immediate trigger of a pass-through function.
func rawTopics(a *app.App, p *plan) map[string]bool {
	out := map[string]bool{}
	for _, s := range a.Sources {
		if s.Connector() || (s.Format != "" && s.Format != "json") {
			continue
		}
		bp := p.buckets[s.Bucket]
		if bp == nil {
			continue
		}
		for _, tp := range bp.triggers {
			if tp.spec.Primitive == triggers.Immediate && tp.fn.passthrough {
				out[s.Topic] = true
			}
		}
	}
	return out
}

// rawSlices appends, for each record slices(sp) returns, the records its
// rows came from; ok is false when some chunk has none.
func (b *bucket) rawSlices(sp triggers.Span, out [][]rawRec) ([][]rawRec, bool) {
	i := sort.Search(len(b.chunks), func(i int) bool { return b.chunks[i].end > sp.From })
	for ; i < len(b.chunks) && b.chunks[i].first < sp.To; i++ {
		c := b.chunks[i]
		if c.raw == nil {
			return out, false
		}
		lo, hi := max(sp.From, c.first)-c.first, min(sp.To, c.end)-c.first
		out = append(out, c.raw[lo:hi])
	}
	return out, true
}

// passThrough runs a pass-through job: the function selects (or routes)
// the rows, and the records they came from go to the sinks as they came.
// ok is false when the function failed (the job then runs as usual, with
// retries and the dead-letter topic).
func (n *Node) passThrough(ctx context.Context, j *job) (*result, bool) {
	in := fn.Input{Records: j.input, Trigger: j.firing.Trigger, Window: j.firing.Window, Session: j.firing.Session}
	var sel [][]int
	var dest [][]string
	var err error
	if rt, ok := j.fn.impl.(fn.Router); ok {
		dest, err = rt.Route(ctx, in)
	} else {
		sel, err = j.fn.impl.(fn.Selector).Select(ctx, in)
	}
	if err != nil || max(len(sel), len(dest)) != len(j.raw) {
		return nil, false
	}
	r := &result{id: j.id, session: j.firing.Session, early: j.early || j.fn.cfg.Order == "completion"}
	var kbuf []byte
	for _, s := range j.fn.sinks {
		kept := 0
		for i := range j.raw {
			if sel != nil {
				kept += len(sel[i])
				continue
			}
			for _, d := range dest[i] {
				if d == s.Name {
					kept++
				}
			}
		}
		if kept == 0 {
			continue
		}
		rows := make([]SinkRow, 0, kept)
		for i := range j.raw {
			var keyCol arrow.Array
			if s.Key != "" {
				rec := j.input[i]
				keyCol = rec.Column(rec.Schema().FieldIndices(s.Key)[0])
				if kbuf == nil {
					kbuf = make([]byte, 0, kept*16)
				}
			}
			add := func(k int) {
				raw := j.raw[i][k]
				row := SinkRow{Key: raw.key, Value: raw.value, Headers: raw.headers}
				if keyCol != nil {
					ks := len(kbuf)
					kbuf = codec.AppendKey(kbuf, keyCol, k)
					row.Key = kbuf[ks:len(kbuf):len(kbuf)]
				}
				rows = append(rows, row)
			}
			if sel != nil {
				for _, k := range sel[i] {
					add(k)
				}
				continue
			}
			for k, d := range dest[i] {
				if d == s.Name {
					add(k)
				}
			}
		}
		r.rows = append(r.rows, sinkRows{sink: s.Name, rows: rows})
	}
	return r, true
}
