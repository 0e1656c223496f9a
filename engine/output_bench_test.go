package engine

import (
	"testing"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/memory"

	"github.com/pheromone-go/pheromone/engine/app"
)

// BenchmarkRouteSinks encodes an invocation's 1,000 emitted rows for one
// keyed Kafka sink (the executor's side of a sink write).
func BenchmarkRouteSinks(b *testing.B) {
	schema := arrow.NewSchema([]arrow.Field{{Name: "id", Type: arrow.PrimitiveTypes.Int64}, {Name: "page", Type: arrow.BinaryTypes.String}}, nil)
	rb := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	for i := 0; i < 1000; i++ {
		rb.Field(0).(*array.Int64Builder).Append(int64(i))
		rb.Field(1).(*array.StringBuilder).Append("/product/12345")
	}
	rec := rb.NewRecord()
	defer rec.Release()
	j := &job{fn: &fnPlan{sinks: []*app.Sink{{Name: "out", Kind: "kafka", Topic: "out", Key: "page"}}}}
	out := &collector{recs: []arrow.Record{rec}, to: []string{""}}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r := &result{}
		routeSinks(j, out, r)
	}
}
