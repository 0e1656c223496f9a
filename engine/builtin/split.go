package builtin

import (
	"context"
	"strings"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/memory"

	"github.com/pheromone-go/pheromone/engine/app"
	"github.com/pheromone-go/pheromone/engine/fn"
	"github.com/pheromone-go/pheromone/internal/arrowx"
)

// split turns each row into one row per part of a string column (a
// flatMap): the other columns are repeated, the parts go to the output
// column. A null or empty value gives one row with a null part, so rows
// that carry no text (control records) pass through.
type split struct {
	column, as, sep string
	schema          *arrow.Schema
}

func newSplit(f *app.Function) *split {
	as := f.As
	if as == "" {
		as = f.Column
	}
	return &split{column: f.Column, as: as, sep: f.Separator, schema: f.OutputSchema()}
}

func (s *split) parts(v string) []string {
	if s.sep == "" {
		return strings.Fields(v)
	}
	var out []string
	for _, p := range strings.Split(v, s.sep) {
		if p != "" {
			out = append(out, p)
		}
	}
	return out
}

func (s *split) Invoke(_ context.Context, in fn.Input, out fn.Output) error {
	for _, r := range in.Records {
		src := r.Column(r.Schema().FieldIndices(s.column)[0]).(*array.String)
		b := array.NewRecordBuilder(memory.DefaultAllocator, s.schema)
		b.Reserve(int(r.NumRows()))
		// Input column of each output column but the last (the parts).
		from := make([]arrow.Array, s.schema.NumFields()-1)
		for i := range from {
			from[i] = r.Column(r.Schema().FieldIndices(s.schema.Field(i).Name)[0])
		}
		partCol := b.Field(len(from)).(*array.StringBuilder)
		for row := 0; row < int(r.NumRows()); row++ {
			var parts []string
			if src.IsValid(row) {
				parts = s.parts(src.Value(row))
			}
			n := max(len(parts), 1)
			for k := 0; k < n; k++ {
				for i, col := range from {
					arrowx.AppendFrom(b.Field(i), col, row)
				}
				if k < len(parts) {
					partCol.Append(parts[k])
				} else {
					partCol.AppendNull()
				}
			}
		}
		rec := b.NewRecord()
		b.Release()
		if err := out.Emit(rec); err != nil {
			return err
		}
	}
	return nil
}
