// Package arrowx holds the Arrow row operations the engine, its built-in
// functions and the server share: copying rows between records.
package arrowx

import (
	"fmt"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/memory"
)

// Take returns a new record with the rows idx of rec, in that order.
func Take(rec arrow.Record, idx []int) arrow.Record {
	cols := make([]arrow.Array, rec.NumCols())
	for c := range cols {
		cols[c] = TakeRefs(rec.Column(c).DataType(), len(idx), func(k int) (arrow.Array, int) { return rec.Column(c), idx[k] })
	}
	out := array.NewRecord(rec.Schema(), cols, int64(len(idx)))
	for _, c := range cols {
		c.Release()
	}
	return out
}

// TakeRefs builds an array of type dt from n rows, row k being row i of
// col as ref(k) returns them (rows may come from several arrays of that
// type). The common types are copied with one type switch per array, not
// per value.
func TakeRefs(dt arrow.DataType, n int, ref func(k int) (arrow.Array, int)) arrow.Array {
	b := array.NewBuilder(memory.DefaultAllocator, dt)
	defer b.Release()
	b.Reserve(n)
	switch sb := b.(type) {
	case *array.StringBuilder:
		size := 0
		for k := 0; k < n; k++ {
			col, i := ref(k)
			size += col.(*array.String).ValueLen(i)
		}
		sb.ReserveData(size)
		for k := 0; k < n; k++ {
			col, i := ref(k)
			if a := col.(*array.String); a.IsNull(i) {
				sb.AppendNull()
			} else {
				sb.Append(a.Value(i))
			}
		}
	case *array.Int64Builder:
		takeFixed[int64, *array.Int64](sb, n, ref)
	case *array.Float64Builder:
		takeFixed[float64, *array.Float64](sb, n, ref)
	default:
		for k := 0; k < n; k++ {
			col, i := ref(k)
			AppendFrom(b, col, i)
		}
	}
	return b.NewArray()
}

// takeFixed copies n fixed-width values into b (TakeRefs).
func takeFixed[T any, A interface {
	IsNull(int) bool
	Value(int) T
}](b interface {
	AppendNull()
	UnsafeAppend(T)
}, n int, ref func(k int) (arrow.Array, int)) {
	for k := 0; k < n; k++ {
		col, i := ref(k)
		if a := col.(A); a.IsNull(i) {
			b.AppendNull()
		} else {
			b.UnsafeAppend(a.Value(i))
		}
	}
}

// AppendFrom appends col[i] to b; b must be a builder of col's type.
func AppendFrom(b array.Builder, col arrow.Array, i int) {
	if col.IsNull(i) {
		b.AppendNull()
		return
	}
	switch a := col.(type) {
	case *array.String:
		b.(*array.StringBuilder).Append(a.Value(i))
	case *array.Binary:
		b.(*array.BinaryBuilder).Append(a.Value(i))
	case *array.Int64:
		b.(*array.Int64Builder).Append(a.Value(i))
	case *array.Float64:
		b.(*array.Float64Builder).Append(a.Value(i))
	case *array.Boolean:
		b.(*array.BooleanBuilder).Append(a.Value(i))
	case *array.Timestamp:
		b.(*array.TimestampBuilder).Append(a.Value(i))
	case *array.List:
		lb := b.(*array.ListBuilder)
		lb.Append(true)
		start, end := a.ValueOffsets(i)
		for j := start; j < end; j++ {
			AppendFrom(lb.ValueBuilder(), a.ListValues(), int(j))
		}
	default:
		panic(fmt.Sprintf("arrowx: AppendFrom: unsupported type %s", col.DataType()))
	}
}

// SchemaDiff compares a record's schema with the one declared for it,
// column by column (names and types, in order), and returns the first
// column that differs with what is wrong ("is missing (declared int64)",
// "is string, declared float64", ...); col is "" when they match.
func SchemaDiff(got, want *arrow.Schema) (col, problem string) {
	if got == want {
		return "", ""
	}
	for i, wf := range want.Fields() {
		if _, ok := got.FieldsByName(wf.Name); !ok {
			return wf.Name, fmt.Sprintf("is missing (declared %s)", wf.Type)
		}
		gf := got.Field(i)
		if gf.Name != wf.Name {
			return gf.Name, fmt.Sprintf("is where column %q is declared", wf.Name)
		}
		if !arrow.TypeEqual(gf.Type, wf.Type) {
			return wf.Name, fmt.Sprintf("is %s, declared %s", gf.Type, wf.Type)
		}
	}
	if got.NumFields() > want.NumFields() {
		return got.Field(want.NumFields()).Name, "is not declared"
	}
	return "", ""
}
