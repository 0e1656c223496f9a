package main

import (
	"context"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/memory"

	"github.com/pheromone-go/pheromone/engine/fn"
)

// Functions is this binary's registry: the app file names `score`.
func Functions() *fn.Registry {
	return fn.NewRegistry().Register("score", fn.Func(score))
}

var scoreSchema = arrow.NewSchema([]arrow.Field{
	{Name: "id", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
	{Name: "risk", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
	{Name: "review", Type: arrow.FixedWidthTypes.Boolean, Nullable: true},
}, nil)

// score works on whole Arrow batches: one pass over the columns, one
// output batch per input batch.
func score(_ context.Context, in fn.Input, out fn.Output) error {
	for _, rec := range in.Records {
		ids := rec.Column(rec.Schema().FieldIndices("id")[0]).(*array.Int64)
		countries := rec.Column(rec.Schema().FieldIndices("country")[0]).(*array.String)
		amounts := rec.Column(rec.Schema().FieldIndices("amount")[0]).(*array.Float64)
		b := array.NewRecordBuilder(memory.DefaultAllocator, scoreSchema)
		b.Reserve(int(rec.NumRows()))
		for i := 0; i < int(rec.NumRows()); i++ {
			risk := amounts.Value(i) / 1000
			if countries.Value(i) != "DE" {
				risk += 0.3
			}
			b.Field(0).(*array.Int64Builder).Append(ids.Value(i))
			b.Field(1).(*array.Float64Builder).Append(risk)
			b.Field(2).(*array.BooleanBuilder).Append(risk > 1)
		}
		r := b.NewRecord()
		b.Release()
		if err := out.EmitTo("scores", r); err != nil {
			return err
		}
	}
	return nil
}
