package engine

import (
	"fmt"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/memory"

	"github.com/pheromone-go/pheromone/engine/app"
)

// rawRecord builds the (key, value) batch of a raw source; records larger
// than the source's limit are handed to bad instead.
func rawRecord(src *app.Source, recs []Record, bad func(*Record, string, error)) arrow.Record {
	b := array.NewRecordBuilder(memory.DefaultAllocator, src.ArrowSchema())
	defer b.Release()
	b.Reserve(len(recs))
	kb, vb := b.Field(0).(*array.BinaryBuilder), b.Field(1).(*array.BinaryBuilder)
	for i := range recs {
		r := &recs[i]
		if len(r.Value) > src.MaxRecordBytes {
			bad(r, ReasonTooLarge, fmt.Errorf("record of %d bytes exceeds max_record_bytes %d", len(r.Value), src.MaxRecordBytes))
			continue
		}
		if r.Key == nil {
			kb.AppendNull()
		} else {
			kb.Append(r.Key)
		}
		vb.Append(r.Value)
	}
	return b.NewRecord()
}
