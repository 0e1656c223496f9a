package builtin

import (
	"bytes"
	"cmp"
	"context"
	"slices"
	"strings"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"

	"github.com/pheromone-go/pheromone/engine/fn"
	"github.com/pheromone-go/pheromone/internal/arrowx"
)

// sorter emits all of its input rows as one batch ordered by one column,
// ascending, nulls first, rows of equal value in input order (a stable
// sort): the reducer of a MapReduce sort.
type sorter struct{ by string }

// rowRef is one input row: its record and row.
type rowRef struct {
	rec int
	row int
}

func (s sorter) Invoke(_ context.Context, in fn.Input, out fn.Output) error {
	if len(in.Records) == 0 {
		return nil
	}
	n := 0
	for _, r := range in.Records {
		n += int(r.NumRows())
	}
	refs := make([]rowRef, 0, n)
	cols := make([]arrow.Array, len(in.Records))
	for i, r := range in.Records {
		cols[i] = r.Column(r.Schema().FieldIndices(s.by)[0])
		for j := 0; j < int(r.NumRows()); j++ {
			refs = append(refs, rowRef{i, j})
		}
	}
	if keys, ok := stringKeys(cols, n); ok {
		// The common case, a string key: compare the keys, not the arrays.
		perm := make([]int32, n)
		for k := range perm {
			perm[k] = int32(k)
		}
		slices.SortStableFunc(perm, func(a, b int32) int { return strings.Compare(keys[a], keys[b]) })
		sorted := make([]rowRef, n)
		for k, p := range perm {
			sorted[k] = refs[p]
		}
		refs = sorted
	} else {
		slices.SortStableFunc(refs, func(a, b rowRef) int { return compareRows(cols[a.rec], a.row, cols[b.rec], b.row) })
	}
	schema := in.Records[0].Schema()
	arrs := make([]arrow.Array, schema.NumFields())
	for c := range arrs {
		arrs[c] = arrowx.TakeRefs(schema.Field(c).Type, n, func(k int) (arrow.Array, int) {
			return in.Records[refs[k].rec].Column(c), refs[k].row
		})
	}
	rec := array.NewRecord(schema, arrs, int64(n))
	for _, a := range arrs {
		a.Release()
	}
	return out.Emit(rec)
}

// stringKeys returns the sort column's values in row order when it is a
// string column without nulls (ok false otherwise).
func stringKeys(cols []arrow.Array, n int) ([]string, bool) {
	keys := make([]string, 0, n)
	for _, c := range cols {
		a, ok := c.(*array.String)
		if !ok || a.NullN() > 0 {
			return nil, false
		}
		for i := 0; i < a.Len(); i++ {
			keys = append(keys, a.Value(i))
		}
	}
	return keys, true
}

// compareRows orders two values of one column type, nulls first.
func compareRows(a arrow.Array, i int, b arrow.Array, j int) int {
	switch an, bn := a.IsNull(i), b.IsNull(j); {
	case an && bn:
		return 0
	case an:
		return -1
	case bn:
		return 1
	}
	switch x := a.(type) {
	case *array.String:
		return cmp.Compare(x.Value(i), b.(*array.String).Value(j))
	case *array.Binary:
		return bytes.Compare(x.Value(i), b.(*array.Binary).Value(j))
	case *array.Int64:
		return cmp.Compare(x.Value(i), b.(*array.Int64).Value(j))
	case *array.Float64:
		return cmp.Compare(x.Value(i), b.(*array.Float64).Value(j))
	case *array.Timestamp:
		return cmp.Compare(x.Value(i), b.(*array.Timestamp).Value(j))
	}
	return 0
}
