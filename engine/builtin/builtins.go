package builtin

import (
	"context"
	"fmt"
	"math"
	"sort"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/memory"

	"github.com/pheromone-go/pheromone/engine/app"
	"github.com/pheromone-go/pheromone/engine/codec"
	"github.com/pheromone-go/pheromone/engine/expr"
	"github.com/pheromone-go/pheromone/engine/fn"
	"github.com/pheromone-go/pheromone/internal/arrowx"
	"github.com/pheromone-go/pheromone/triggers"
)

// filter keeps the rows for which its expression is true (NULL drops).
type filter struct{ e *expr.Expr }

func newFilter(f *app.Function) (fn.Function, error) {
	e, err := expr.Compile(f.Expr, f.InputSchema())
	if err != nil {
		return nil, fmt.Errorf("builtin: %s: %w", f.Name, err)
	}
	return &filter{e: e}, nil
}

func (f *filter) Invoke(ctx context.Context, in fn.Input, out fn.Output) error {
	sel, err := f.Select(ctx, in)
	if err != nil {
		return err
	}
	for i, r := range in.Records {
		switch idx := sel[i]; len(idx) {
		case 0:
		case int(r.NumRows()):
			r.Retain()
			if err := out.Emit(r); err != nil {
				return err
			}
		default:
			if err := out.Emit(arrowx.Take(r, idx)); err != nil {
				return err
			}
		}
	}
	return nil
}

var _ fn.Selector = (*filter)(nil)

// Select implements fn.Selector: the rows whose expression is true.
func (f *filter) Select(_ context.Context, in fn.Input) ([][]int, error) {
	sel := make([][]int, len(in.Records))
	for ri, r := range in.Records {
		v, err := f.e.Eval(r)
		if err != nil {
			return nil, err
		}
		var idx []int
		for i, b := range v.B {
			if b && v.IsValid(i) {
				idx = append(idx, i)
			}
		}
		sel[ri] = idx
	}
	return sel, nil
}

// project selects, renames and computes columns.
type project struct {
	schema *arrow.Schema
	cols   []projCol
}

type projCol struct {
	from string     // column copied as is
	e    *expr.Expr // or computed
}

func newProject(f *app.Function) (fn.Function, error) {
	p := &project{schema: f.OutputSchema()}
	for _, c := range f.Columns {
		switch {
		case c.Expr != "":
			e, err := expr.Compile(c.Expr, f.InputSchema())
			if err != nil {
				return nil, fmt.Errorf("builtin: %s: %w", f.Name, err)
			}
			p.cols = append(p.cols, projCol{e: e})
		case c.From != "":
			p.cols = append(p.cols, projCol{from: c.From})
		default:
			p.cols = append(p.cols, projCol{from: c.Name})
		}
	}
	return p, nil
}

func (p *project) Invoke(_ context.Context, in fn.Input, out fn.Output) error {
	for _, r := range in.Records {
		cols := make([]arrow.Array, len(p.cols))
		for i, c := range p.cols {
			if c.e == nil {
				idx := r.Schema().FieldIndices(c.from)
				if len(idx) == 0 {
					releaseAll(cols)
					return fmt.Errorf("builtin: project: input has no column %q", c.from)
				}
				cols[i] = r.Column(idx[0])
				cols[i].Retain()
				continue
			}
			v, err := c.e.Eval(r)
			if err != nil {
				releaseAll(cols)
				return err
			}
			cols[i] = vectorArray(v)
		}
		rec := array.NewRecord(p.schema, cols, r.NumRows())
		releaseAll(cols)
		if err := out.Emit(rec); err != nil {
			return err
		}
	}
	return nil
}

func releaseAll(cols []arrow.Array) {
	for _, c := range cols {
		if c != nil {
			c.Release()
		}
	}
}

// vectorArray converts an expression result to an Arrow array.
func vectorArray(v expr.Vector) arrow.Array {
	mem := memory.DefaultAllocator
	switch v.Kind {
	case expr.Bool:
		b := array.NewBooleanBuilder(mem)
		defer b.Release()
		b.AppendValues(v.B, v.Valid)
		return b.NewArray()
	case expr.Int:
		b := array.NewInt64Builder(mem)
		defer b.Release()
		b.AppendValues(v.I, v.Valid)
		return b.NewArray()
	case expr.Float:
		b := array.NewFloat64Builder(mem)
		defer b.Release()
		b.AppendValues(v.F, v.Valid)
		return b.NewArray()
	default:
		b := array.NewStringBuilder(mem)
		defer b.Release()
		b.AppendValues(v.S, v.Valid)
		return b.NewArray()
	}
}

// aggregate computes count, sum, min, max and avg per group over all the
// objects of one firing, in first-seen group order.
type aggregate struct {
	groupBy  []string
	aggs     []app.Aggregate
	schema   *arrow.Schema
	windowed bool
}

func newAggregate(f *app.Function) (fn.Function, error) {
	s := f.OutputSchema()
	return &aggregate{
		groupBy:  f.GroupBy,
		aggs:     f.Aggregates,
		schema:   s,
		windowed: len(s.FieldIndices(app.WindowStartColumn)) > 0 && len(f.GroupBy) < s.NumFields(),
	}, nil
}

type acc struct {
	seen   map[string]int64 // count_distinct, top_k: occurrences per value
	n      int64            // non-null values seen (count of rows for count without column)
	i      int64
	f      float64
	s      string
	isSet  bool
	isInt  bool
	isStr  bool
	isTime bool
}

type group struct {
	rec  int // where the group's first row is, for its key values
	row  int
	accs []acc
}

func (a *aggregate) Invoke(_ context.Context, in fn.Input, out fn.Output) error {
	var (
		groups []*group
		index  = map[string]*group{}
		key    []byte
		vbuf   []byte
	)
	for ri, r := range in.Records {
		gcols := make([]arrow.Array, len(a.groupBy))
		for j, g := range a.groupBy {
			idx := r.Schema().FieldIndices(g)
			if len(idx) == 0 {
				return fmt.Errorf("builtin: aggregate: input has no column %q", g)
			}
			gcols[j] = r.Column(idx[0])
		}
		acols := make([]arrow.Array, len(a.aggs))
		for j, ag := range a.aggs {
			if ag.Column == "" {
				continue
			}
			idx := r.Schema().FieldIndices(ag.Column)
			if len(idx) == 0 {
				return fmt.Errorf("builtin: aggregate: input has no column %q", ag.Column)
			}
			acols[j] = r.Column(idx[0])
		}
		for row := 0; row < int(r.NumRows()); row++ {
			key = key[:0]
			for _, c := range gcols {
				key = appendGroupKey(key, c, row)
			}
			g, ok := index[string(key)]
			if !ok {
				g = &group{rec: ri, row: row, accs: make([]acc, len(a.aggs))}
				index[string(key)] = g
				groups = append(groups, g)
			}
			for j, ag := range a.aggs {
				vbuf = accumulate(&g.accs[j], ag.Op, acols[j], row, vbuf)
			}
		}
	}
	if len(groups) == 0 {
		return nil
	}
	b := array.NewRecordBuilder(memory.DefaultAllocator, a.schema)
	defer b.Release()
	b.Reserve(len(groups))
	col := 0
	for j, g := range a.groupBy {
		fb := b.Field(col)
		for _, gr := range groups {
			r := in.Records[gr.rec]
			arrowx.AppendFrom(fb, r.Column(r.Schema().FieldIndices(g)[0]), gr.row)
		}
		_ = j
		col++
	}
	col = a.appendWindows(b, col, len(groups), in.Window)
	for j, ag := range a.aggs {
		fb := b.Field(col + j)
		for _, gr := range groups {
			appendResult(fb, ag.Op, ag.K, &gr.accs[j])
		}
	}
	return out.Emit(b.NewRecord())
}

// appendWindows fills the window columns (at col) of n result rows, if
// the output has them, and returns the column after them.
func (a *aggregate) appendWindows(b *array.RecordBuilder, col, n int, w triggers.Window) int {
	if !a.windowed {
		return col
	}
	ws, we := b.Field(col).(*array.TimestampBuilder), b.Field(col+1).(*array.TimestampBuilder)
	for range n {
		if w.IsZero() {
			ws.AppendNull()
			we.AppendNull()
			continue
		}
		ws.Append(arrow.Timestamp(w.Start.UnixMilli()))
		we.Append(arrow.Timestamp(w.End.UnixMilli()))
	}
	return col + 2
}

// appendGroupKey appends an unambiguous encoding of col[i] to key.
func appendGroupKey(key []byte, col arrow.Array, i int) []byte {
	if col.IsNull(i) {
		return append(key, 0)
	}
	key = append(key, 1)
	switch a := col.(type) {
	case *array.String:
		v := a.Value(i)
		key = appendUvarint(key, uint64(len(v)))
		return append(key, v...)
	case *array.Binary:
		v := a.Value(i)
		key = appendUvarint(key, uint64(len(v)))
		return append(key, v...)
	case *array.Int64:
		return appendUvarint(key, uint64(a.Value(i)))
	case *array.Timestamp:
		return appendUvarint(key, uint64(a.Value(i)))
	case *array.Float64:
		return appendUvarint(key, math.Float64bits(a.Value(i)))
	case *array.Boolean:
		if a.Value(i) {
			return append(key, 1)
		}
		return append(key, 0)
	}
	return key
}

func appendUvarint(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

// accumulate adds col[i] to ac; buf is scratch space it returns for the
// next call (a value counted by count_distinct and top_k is copied only
// the first time it is seen).
func accumulate(ac *acc, op string, col arrow.Array, i int, buf []byte) []byte {
	if col == nil { // count of rows
		ac.n++
		return buf
	}
	if col.IsNull(i) {
		return buf
	}
	ac.n++
	if op == "count_distinct" || op == "top_k" {
		if ac.seen == nil {
			ac.seen = map[string]int64{}
		}
		buf = codec.AppendKey(buf[:0], col, i)
		if n, ok := ac.seen[string(buf)]; ok {
			ac.seen[string(buf)] = n + 1
		} else {
			ac.seen[string(buf)] = 1
		}
		return buf
	}
	switch a := col.(type) {
	case *array.Int64:
		v := a.Value(i)
		ac.isInt = true
		ac.f += float64(v)
		switch op {
		case "sum":
			ac.i += v
		case "min":
			if !ac.isSet || v < ac.i {
				ac.i = v
			}
		case "max":
			if !ac.isSet || v > ac.i {
				ac.i = v
			}
		}
	case *array.Timestamp:
		v := int64(a.Value(i))
		ac.isInt, ac.isTime = true, true
		switch op {
		case "min":
			if !ac.isSet || v < ac.i {
				ac.i = v
			}
		case "max":
			if !ac.isSet || v > ac.i {
				ac.i = v
			}
		}
	case *array.Float64:
		v := a.Value(i)
		switch op {
		case "sum", "avg":
			ac.f += v
		case "min":
			if !ac.isSet || v < ac.f {
				ac.f = v
			}
		case "max":
			if !ac.isSet || v > ac.f {
				ac.f = v
			}
		}
	case *array.String:
		v := a.Value(i)
		ac.isStr = true
		switch op {
		case "min":
			if !ac.isSet || v < ac.s {
				ac.s = string([]byte(v)) // copy: the input batch is released after the firing
			}
		case "max":
			if !ac.isSet || v > ac.s {
				ac.s = string([]byte(v))
			}
		}
	}
	ac.isSet = true
	return buf
}

func appendResult(b array.Builder, op string, k int, ac *acc) {
	if op == "count" {
		b.(*array.Int64Builder).Append(ac.n)
		return
	}
	if op == "count_distinct" {
		b.(*array.Int64Builder).Append(int64(len(ac.seen)))
		return
	}
	if op == "top_k" {
		vals := make([]string, 0, len(ac.seen))
		for v := range ac.seen {
			vals = append(vals, v)
		}
		sort.Slice(vals, func(i, j int) bool {
			if ac.seen[vals[i]] != ac.seen[vals[j]] {
				return ac.seen[vals[i]] > ac.seen[vals[j]]
			}
			return vals[i] < vals[j]
		})
		lb := b.(*array.ListBuilder)
		lb.Append(true)
		vb := lb.ValueBuilder().(*array.StringBuilder)
		for _, v := range vals[:min(k, len(vals))] {
			vb.Append(v)
		}
		return
	}
	if ac.n == 0 {
		b.AppendNull()
		return
	}
	switch op {
	case "avg":
		b.(*array.Float64Builder).Append(ac.f / float64(ac.n))
		return
	case "sum":
		if ac.isInt {
			b.(*array.Int64Builder).Append(ac.i)
		} else {
			b.(*array.Float64Builder).Append(ac.f)
		}
		return
	}
	switch {
	case ac.isStr:
		b.(*array.StringBuilder).Append(ac.s)
	case ac.isTime:
		b.(*array.TimestampBuilder).Append(arrow.Timestamp(ac.i))
	case ac.isInt:
		b.(*array.Int64Builder).Append(ac.i)
	default:
		b.(*array.Float64Builder).Append(ac.f)
	}
}
