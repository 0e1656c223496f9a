package engine

import (
	"fmt"
	"testing"

	"github.com/apache/arrow/go/v15/arrow"

	"github.com/pheromone-go/pheromone/engine/codec"
)

// A slice is charged its rows' share, not the whole batch: a repartition
// puts its local rows as many small slices of one batch, and charging each
// the batch filled the bucket (bucket_full) with a fraction of its bytes
// (examples/sort at 40 MB).
func TestRecordSizeOfSlices(t *testing.T) {
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "key", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "n", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
		{Name: "ok", Type: arrow.FixedWidthTypes.Boolean, Nullable: true},
		{Name: "ts", Type: arrow.FixedWidthTypes.Timestamp_ms, Nullable: true},
	}, nil)
	d, err := codec.NewJSONDecoder(schema)
	if err != nil {
		t.Fatal(err)
	}
	const rows = 1000
	for i := 0; i < rows; i++ {
		if err := d.Append(fmt.Appendf(nil, `{"key":"key-%04d-padding-padding","n":%d,"ok":true,"ts":%d}`, i, i, i)); err != nil {
			t.Fatal(err)
		}
	}
	rec := d.NewRecord()
	defer rec.Release()
	whole := recordSize(rec)
	var sum int64
	for i := 0; i < rows; i++ {
		s := rec.NewSlice(int64(i), int64(i+1))
		sum += recordSize(s)
		s.Release()
	}
	// Per row: validity and offsets round up; nothing else may add up.
	if sum > 2*whole || sum < whole {
		t.Fatalf("%d one-row slices are charged %d bytes, the batch %d", rows, sum, whole)
	}
}
