package builtin

import (
	"bytes"
	"cmp"
	"context"
	"slices"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/memory"

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
	slices.SortStableFunc(refs, func(a, b rowRef) int { return compareRows(cols[a.rec], a.row, cols[b.rec], b.row) })
	schema := in.Records[0].Schema()
	b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	defer b.Release()
	b.Reserve(n)
	for c := range schema.NumFields() {
		fb := b.Field(c)
		for _, r := range refs {
			arrowx.AppendFrom(fb, in.Records[r.rec].Column(c), r.row)
		}
	}
	return out.Emit(b.NewRecord())
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
