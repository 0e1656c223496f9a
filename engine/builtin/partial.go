package builtin

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/memory"

	"github.com/pheromone-go/pheromone/engine/fn"
)

// The aggregate is Incremental: a window keeps, per group, the same
// accumulators Invoke builds (count, sums, min, max, the values seen by
// count_distinct and top_k), the group's key and the sequence number of its
// first object, so the result — rows in first-seen group order — is the
// one Invoke gives over the window's objects.

var _ fn.Incremental = (*aggregate)(nil)

// Foldable implements fn.Incremental. Every op folds; in windows that merge
// (orderFree), float sums — and averages, summed as floats — are left out:
// adding the same values in another order may change the last bit.
func (a *aggregate) Foldable(orderFree bool) bool {
	if !orderFree {
		return true
	}
	for _, ag := range a.aggs {
		if ag.Op == "avg" {
			return false
		}
		if ag.Op == "sum" {
			if i := a.schema.FieldIndices(ag.Name); len(i) == 0 || a.schema.Field(i[0]).Type.ID() != arrow.INT64 {
				return false
			}
		}
	}
	return true
}

// NewPartial implements fn.Incremental.
func (a *aggregate) NewPartial() fn.Partial {
	return &partial{a: a, index: map[string]*pgroup{}}
}

type partial struct {
	a      *aggregate
	groups []*pgroup
	index  map[string]*pgroup
	merged bool // groups may be out of first-seen order
	key    []byte
	vbuf   []byte
	gcols  []arrow.Array
	acols  []arrow.Array
}

type pgroup struct {
	key   string // appendGroupKey of the group's columns
	first uint64 // sequence number of its first object
	accs  []acc
}

func (p *partial) Groups() int { return len(p.groups) }

// Fold implements fn.Partial.
func (p *partial) Fold(r arrow.Record, first uint64, rows []int) error {
	a := p.a
	p.gcols, p.acols = p.gcols[:0], p.acols[:0]
	for _, g := range a.groupBy {
		idx := r.Schema().FieldIndices(g)
		if len(idx) == 0 {
			return fmt.Errorf("builtin: aggregate: input has no column %q", g)
		}
		p.gcols = append(p.gcols, r.Column(idx[0]))
	}
	for _, ag := range a.aggs {
		var col arrow.Array
		if ag.Column != "" {
			idx := r.Schema().FieldIndices(ag.Column)
			if len(idx) == 0 {
				return fmt.Errorf("builtin: aggregate: input has no column %q", ag.Column)
			}
			col = r.Column(idx[0])
		}
		p.acols = append(p.acols, col)
	}
	for _, row := range rows {
		p.key = p.key[:0]
		for _, c := range p.gcols {
			p.key = appendGroupKey(p.key, c, row)
		}
		g, ok := p.index[string(p.key)]
		if !ok {
			g = &pgroup{key: string(p.key), first: first + uint64(row), accs: make([]acc, len(a.aggs))}
			p.index[g.key] = g
			p.groups = append(p.groups, g)
		}
		for j, ag := range a.aggs {
			p.vbuf = accumulate(&g.accs[j], ag.Op, p.acols[j], row, p.vbuf)
		}
	}
	return nil
}

// Merge implements fn.Partial.
func (p *partial) Merge(other fn.Partial) {
	o := other.(*partial)
	for _, og := range o.groups {
		g, ok := p.index[og.key]
		if !ok {
			p.index[og.key] = og
			p.groups = append(p.groups, og)
			continue
		}
		g.first = min(g.first, og.first)
		for j, ag := range p.a.aggs {
			mergeAcc(&g.accs[j], &og.accs[j], ag.Op)
		}
	}
	p.merged = true
}

// mergeAcc adds o's values to ac, as if accumulate had seen them after ac's.
func mergeAcc(ac, o *acc, op string) {
	if !o.isSet && o.n == 0 {
		return
	}
	if !ac.isSet && ac.n == 0 {
		*ac = *o
		return
	}
	ac.n += o.n
	for v, c := range o.seen {
		if ac.seen == nil {
			ac.seen = map[string]int64{}
		}
		ac.seen[v] += c
	}
	// A float column's min and max live in f; otherwise f is a sum.
	floatExtreme := (op == "min" || op == "max") && !o.isInt && !o.isStr
	if !floatExtreme {
		ac.f += o.f
	}
	ac.isInt, ac.isTime, ac.isStr = ac.isInt || o.isInt, ac.isTime || o.isTime, ac.isStr || o.isStr
	if !o.isSet {
		return
	}
	if !ac.isSet {
		ac.i, ac.s, ac.isSet = o.i, o.s, true
		if floatExtreme {
			ac.f = o.f
		}
		return
	}
	switch op {
	case "sum":
		ac.i += o.i
	case "min":
		ac.i, ac.s = min(ac.i, o.i), min(ac.s, o.s)
		if floatExtreme {
			ac.f = min(ac.f, o.f)
		}
	case "max":
		ac.i, ac.s = max(ac.i, o.i), max(ac.s, o.s)
		if floatExtreme {
			ac.f = max(ac.f, o.f)
		}
	}
}

// Emit implements fn.Partial.
func (p *partial) Emit(in fn.Input, out fn.Output) error {
	if len(p.groups) == 0 {
		return nil
	}
	if p.merged {
		sort.SliceStable(p.groups, func(i, j int) bool { return p.groups[i].first < p.groups[j].first })
	}
	a := p.a
	b := array.NewRecordBuilder(memory.DefaultAllocator, a.schema)
	defer b.Release()
	b.Reserve(len(p.groups))
	for _, g := range p.groups {
		rest := []byte(g.key)
		for col := range a.groupBy {
			var err error
			if rest, err = appendGroupValue(b.Field(col), rest); err != nil {
				return err
			}
		}
	}
	col := a.appendWindows(b, len(a.groupBy), len(p.groups), in.Window)
	for j, ag := range a.aggs {
		fb := b.Field(col + j)
		for _, g := range p.groups {
			appendResult(fb, ag.Op, ag.K, &g.accs[j])
		}
	}
	return out.Emit(b.NewRecord())
}

// appendGroupValue appends the value appendGroupKey encoded at the start
// of key to b, and returns the rest of key.
func appendGroupValue(b array.Builder, key []byte) ([]byte, error) {
	if len(key) == 0 {
		return nil, errors.New("builtin: aggregate: short group key")
	}
	if key[0] == 0 {
		b.AppendNull()
		return key[1:], nil
	}
	key = key[1:]
	if bb, ok := b.(*array.BooleanBuilder); ok {
		if len(key) == 0 {
			return nil, errors.New("builtin: aggregate: short group key")
		}
		bb.Append(key[0] == 1)
		return key[1:], nil
	}
	v, n := binary.Uvarint(key)
	if n <= 0 {
		return nil, errors.New("builtin: aggregate: corrupt group key")
	}
	key = key[n:]
	switch bb := b.(type) {
	case *array.StringBuilder:
		if uint64(len(key)) < v {
			return nil, errors.New("builtin: aggregate: short group key")
		}
		bb.Append(string(key[:v]))
		return key[v:], nil
	case *array.BinaryBuilder:
		if uint64(len(key)) < v {
			return nil, errors.New("builtin: aggregate: short group key")
		}
		bb.Append(key[:v])
		return key[v:], nil
	case *array.Int64Builder:
		bb.Append(int64(v))
	case *array.TimestampBuilder:
		bb.Append(arrow.Timestamp(int64(v)))
	case *array.Float64Builder:
		bb.Append(math.Float64frombits(v))
	default:
		return nil, fmt.Errorf("builtin: aggregate: cannot fold a group column of type %s", b.Type())
	}
	return key, nil
}

// AppendBinary implements fn.Partial.
func (p *partial) AppendBinary(b []byte) []byte {
	b = append(b, 1) // version
	if p.merged {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	b = binary.AppendUvarint(b, uint64(len(p.groups)))
	for _, g := range p.groups {
		b = appendBytes(b, g.key)
		b = binary.AppendUvarint(b, g.first)
		for j := range g.accs {
			ac := &g.accs[j]
			b = binary.AppendVarint(b, ac.n)
			b = binary.AppendVarint(b, ac.i)
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(ac.f))
			b = appendBytes(b, ac.s)
			var flags byte
			for k, f := range []bool{ac.isSet, ac.isInt, ac.isStr, ac.isTime} {
				if f {
					flags |= 1 << k
				}
			}
			b = append(b, flags)
			keys := make([]string, 0, len(ac.seen))
			for k := range ac.seen {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			b = binary.AppendUvarint(b, uint64(len(keys)))
			for _, k := range keys {
				b = appendBytes(b, k)
				b = binary.AppendVarint(b, ac.seen[k])
			}
		}
	}
	return b
}

func appendBytes(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// UnmarshalPartial implements fn.Incremental.
func (a *aggregate) UnmarshalPartial(b []byte) (fn.Partial, error) {
	r := &preader{b: b}
	if v := r.byte(); v != 1 {
		return nil, fmt.Errorf("builtin: aggregate: partial of unknown version %d", v)
	}
	p := &partial{a: a, index: map[string]*pgroup{}, merged: r.byte() == 1}
	for n := r.uvarint(); n > 0 && r.err == nil; n-- {
		g := &pgroup{key: r.bytes(), first: r.uvarint(), accs: make([]acc, len(a.aggs))}
		for j := range g.accs {
			ac := &g.accs[j]
			ac.n, ac.i = r.varint(), r.varint()
			ac.f = math.Float64frombits(r.fixed64())
			ac.s = r.bytes()
			flags := r.byte()
			ac.isSet, ac.isInt, ac.isStr, ac.isTime = flags&1 != 0, flags&2 != 0, flags&4 != 0, flags&8 != 0
			if k := r.uvarint(); k > 0 && r.err == nil {
				ac.seen = make(map[string]int64, min(k, 1<<16))
				for ; k > 0 && r.err == nil; k-- {
					v := r.bytes()
					ac.seen[v] = r.varint()
				}
			}
		}
		p.index[g.key] = g
		p.groups = append(p.groups, g)
	}
	if r.err != nil || len(r.b) > 0 {
		return nil, errors.New("builtin: aggregate: corrupt partial")
	}
	return p, nil
}

type preader struct {
	b   []byte
	err error
}

func (r *preader) fail() { r.err, r.b = errors.New("short"), nil }

func (r *preader) byte() byte {
	if len(r.b) == 0 {
		r.fail()
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *preader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *preader) varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *preader) fixed64() uint64 {
	if len(r.b) < 8 {
		r.fail()
		return 0
	}
	v := binary.LittleEndian.Uint64(r.b)
	r.b = r.b[8:]
	return v
}

func (r *preader) bytes() string {
	n := r.uvarint()
	if uint64(len(r.b)) < n {
		r.fail()
		return ""
	}
	v := string(r.b[:n])
	r.b = r.b[n:]
	return v
}
