package codec

import (
	"slices"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/memory"
)

// column is one column of the record being decoded, built straight into Go
// slices that become the Arrow buffers at finish: appending a value is an
// append to a slice (and, once the column has a null, a validity bit),
// without a builder's per-value capacity checks and bitmap writes.
type column struct {
	typ arrow.DataType
	id  arrow.Type
	// valid is the validity bitmap, nil while every row is valid.
	valid  []byte
	nulls  int
	ints   []int64   // INT64, TIMESTAMP
	floats []float64 // FLOAT64
	bits   []byte    // BOOL values
	offs   []int32   // STRING, BINARY: rows+1 offsets into data
	data   []byte
}

func newColumn(t arrow.DataType) column {
	return column{typ: t, id: t.ID(), offs: []int32{0}}
}

// reserve makes room for n more rows and about dataBytes more string or
// binary bytes.
func (c *column) reserve(n, dataBytes int) {
	switch c.id {
	case arrow.INT64, arrow.TIMESTAMP:
		c.ints = slices.Grow(c.ints, n)
	case arrow.FLOAT64:
		c.floats = slices.Grow(c.floats, n)
	case arrow.STRING, arrow.BINARY:
		c.offs = slices.Grow(c.offs, n)
		c.data = slices.Grow(c.data, dataBytes)
	}
}

// markValid records row as valid, once the column keeps a bitmap.
func (c *column) markValid(row int) {
	if c.valid == nil {
		return
	}
	for len(c.valid) <= row>>3 {
		c.valid = append(c.valid, 0)
	}
	c.valid[row>>3] |= 1 << (row & 7)
}

// null appends a null as row.
func (c *column) null(row int) {
	if c.valid == nil {
		// Every row before this one is valid.
		c.valid = make([]byte, row>>3+1, max(row>>3+1, cap(c.ints)>>3+1, cap(c.offs)>>3+1))
		for r := 0; r < row; r++ {
			c.valid[r>>3] |= 1 << (r & 7)
		}
	}
	for len(c.valid) <= row>>3 {
		c.valid = append(c.valid, 0)
	}
	c.nulls++
	switch c.id {
	case arrow.INT64, arrow.TIMESTAMP:
		c.ints = append(c.ints, 0)
	case arrow.FLOAT64:
		c.floats = append(c.floats, 0)
	case arrow.BOOL:
		c.bit(row, false)
	case arrow.STRING, arrow.BINARY:
		c.offs = append(c.offs, int32(len(c.data)))
	}
}

// The appends below re-slice within capacity where they can: assigning a
// slice to itself only moves its length, without the pointer write (and
// its GC write barrier) a growing append does.

func (c *column) appendInt(row int, v int64) {
	if n := len(c.ints); n < cap(c.ints) {
		c.ints = c.ints[:n+1]
		c.ints[n] = v
	} else {
		c.ints = append(c.ints, v)
	}
	c.markValid(row)
}

func (c *column) appendFloat(row int, v float64) {
	c.floats = append(c.floats, v)
	c.markValid(row)
}

func (c *column) appendBool(row int, v bool) {
	c.bit(row, v)
	c.markValid(row)
}

func (c *column) appendBytes(row int, v []byte) {
	if n := len(c.data); n+len(v) <= cap(c.data) {
		c.data = c.data[:n+len(v)]
		copy(c.data[n:], v)
	} else {
		c.data = append(c.data, v...)
	}
	if n := len(c.offs); n < cap(c.offs) {
		c.offs = c.offs[:n+1]
		c.offs[n] = int32(len(c.data))
	} else {
		c.offs = append(c.offs, int32(len(c.data)))
	}
	c.markValid(row)
}

func (c *column) bit(row int, v bool) {
	for len(c.bits) <= row>>3 {
		c.bits = append(c.bits, 0)
	}
	if v {
		c.bits[row>>3] |= 1 << (row & 7)
	}
}

// finish returns the column's n rows as an array (the caller releases it)
// and starts an empty column: the array owns the slices now.
func (c *column) finish(n int) arrow.Array {
	var valid *memory.Buffer
	if c.nulls > 0 {
		valid = memory.NewBufferBytes(c.valid)
	}
	var bufs []*memory.Buffer
	switch c.id {
	case arrow.INT64, arrow.TIMESTAMP:
		bufs = []*memory.Buffer{valid, memory.NewBufferBytes(arrow.Int64Traits.CastToBytes(c.ints))}
	case arrow.FLOAT64:
		bufs = []*memory.Buffer{valid, memory.NewBufferBytes(arrow.Float64Traits.CastToBytes(c.floats))}
	case arrow.BOOL:
		for len(c.bits) < (n+7)/8 {
			c.bits = append(c.bits, 0)
		}
		bufs = []*memory.Buffer{valid, memory.NewBufferBytes(c.bits)}
	default: // STRING, BINARY
		if c.data == nil {
			c.data = []byte{}
		}
		bufs = []*memory.Buffer{valid, memory.NewBufferBytes(arrow.Int32Traits.CastToBytes(c.offs)), memory.NewBufferBytes(c.data)}
	}
	data := array.NewData(c.typ, n, bufs, nil, c.nulls, 0)
	arr := array.MakeFromData(data)
	data.Release()
	*c = newColumn(c.typ)
	return arr
}
