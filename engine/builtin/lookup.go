package builtin

import (
	"context"
	"errors"
	"fmt"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/memory"

	"github.com/pheromone-go/pheromone/engine/app"
	"github.com/pheromone-go/pheromone/engine/codec"
	"github.com/pheromone-go/pheromone/engine/fn"
	"github.com/pheromone-go/pheromone/internal/arrowx"
)

// Tables gives lookup functions read access to reference tables. It is
// safe for concurrent use.
type Tables interface {
	// LookupRow returns the current row of table with key as a one-row
	// record; the caller must Release it.
	LookupRow(table, key string) (arrow.Record, bool)
	// Len is how many rows table holds.
	Len(table string) int
}

// ErrTableEmpty fails a lookup (inner join) into a table that holds no row
// yet: the function is retried, then its input is dead-lettered, rather
// than every row being dropped as unmatched without a trace (a node started
// before its table's topic had rows).
var ErrTableEmpty = errors.New("builtin: the lookup table holds no rows yet")

// lookup is a stream-table join: each row gets the columns of the table row
// whose key equals its On column.
type lookup struct {
	tables        Tables
	table, on     string
	columns       []string
	keepUnmatched bool
	schema        *arrow.Schema
}

func newLookup(f *app.Function, tables Tables) (*lookup, error) {
	if tables == nil {
		return nil, fmt.Errorf("builtin: %s: lookup needs the node's tables", f.Name)
	}
	return &lookup{tables: tables, table: f.Table, on: f.On, columns: f.TableColumns,
		keepUnmatched: f.KeepUnmatched, schema: f.OutputSchema()}, nil
}

func (l *lookup) Invoke(_ context.Context, in fn.Input, out fn.Output) error {
	if !l.keepUnmatched && l.tables.Len(l.table) == 0 {
		return fmt.Errorf("%w: table %q", ErrTableEmpty, l.table)
	}
	var key []byte
	misses := 0
	defer func() {
		if d, ok := out.(fn.Dropper); ok && misses > 0 {
			d.Dropped(misses)
		}
	}()
	for _, rec := range in.Records {
		on := rec.Column(rec.Schema().FieldIndices(l.on)[0])
		n := int(rec.NumRows())
		idx := make([]int, 0, n)
		rows := make([]arrow.Record, 0, n)
		for i := 0; i < n; i++ {
			var row arrow.Record
			ok := false
			if on.IsValid(i) {
				key = codec.AppendKey(key[:0], on, i)
				row, ok = l.tables.LookupRow(l.table, string(key))
			}
			if ok || l.keepUnmatched {
				idx = append(idx, i)
				rows = append(rows, row)
			} else {
				misses++
			}
		}
		if len(idx) > 0 {
			if err := out.Emit(l.join(rec, idx, rows)); err != nil {
				releaseRows(rows)
				return err
			}
		}
		releaseRows(rows)
	}
	return nil
}

func releaseRows(rows []arrow.Record) {
	for _, r := range rows {
		if r != nil {
			r.Release()
		}
	}
}

// join builds the output: the kept input rows plus the table columns.
func (l *lookup) join(rec arrow.Record, idx []int, rows []arrow.Record) arrow.Record {
	base := rec
	if len(idx) != int(rec.NumRows()) {
		base = arrowx.Take(rec, idx)
		defer base.Release()
	}
	cols := make([]arrow.Array, 0, l.schema.NumFields())
	for c := 0; c < int(base.NumCols()); c++ {
		col := base.Column(c)
		col.Retain()
		cols = append(cols, col)
	}
	for k, name := range l.columns {
		b := array.NewBuilder(memory.DefaultAllocator, l.schema.Field(int(base.NumCols())+k).Type)
		b.Reserve(len(rows))
		for _, row := range rows {
			if row == nil {
				b.AppendNull()
				continue
			}
			arrowx.AppendFrom(b, row.Column(row.Schema().FieldIndices(name)[0]), 0)
		}
		cols = append(cols, b.NewArray())
		b.Release()
	}
	out := array.NewRecord(l.schema, cols, int64(len(idx)))
	for _, c := range cols {
		c.Release()
	}
	return out
}
