package registry

import (
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"strings"

	"github.com/hamba/avro/v2"

	"github.com/pheromone-go/pheromone/engine/app"
)

// How Avro maps to columns (docs/formats.md has the table): a record's
// fields become columns, a nested record's fields columns named
// parent_child; a union with null is a nullable column of the other type;
// arrays, maps and other unions become string columns holding JSON text.

// parseAvro parses an Avro schema text on its own (named types of one
// schema never clash with another's).
func parseAvro(text string) (avro.Schema, error) {
	return avro.ParseWithCache(text, "", &avro.SchemaCache{})
}

// avroColumns are the columns of record schema s.
func avroColumns(s avro.Schema) ([]app.Column, error) {
	rec, ok := s.(*avro.RecordSchema)
	if !ok {
		return nil, fmt.Errorf("the schema is a %s, not a record", s.Type())
	}
	var cols []app.Column
	err := avroFields(&cols, "", rec)
	return cols, err
}

func avroFields(cols *[]app.Column, prefix string, rec *avro.RecordSchema) error {
	for _, f := range rec.Fields() {
		name := prefix + f.Name()
		if r, ok := nonNull(f.Type()).(*avro.RecordSchema); ok {
			if err := avroFields(cols, name+"_", r); err != nil {
				return err
			}
			continue
		}
		t, err := avroColumnType(f.Type())
		if err != nil {
			return fmt.Errorf("field %s: %w", name, err)
		}
		if t != "" {
			*cols = append(*cols, app.Column{Name: name, Type: t})
		}
	}
	return nil
}

// nonNull is the other branch of a union with null, else s.
func nonNull(s avro.Schema) avro.Schema {
	if u, ok := s.(*avro.UnionSchema); ok && u.Nullable() && len(u.Types()) == 2 {
		_, i := u.Indices()
		return u.Types()[i]
	}
	return s
}

// avroColumnType is the column type of Avro type s ("" for null).
func avroColumnType(s avro.Schema) (string, error) {
	s = nonNull(s)
	logical := ""
	if l, ok := s.(avro.LogicalTypeSchema); ok && l.Logical() != nil {
		logical = string(l.Logical().Type())
	}
	switch s.Type() {
	case avro.Null:
		return "", nil
	case avro.Boolean:
		return "bool", nil
	case avro.Int:
		return "int64", nil
	case avro.Long:
		switch avro.LogicalType(logical) {
		case avro.TimestampMillis, avro.TimestampMicros, avro.LocalTimestampMillis, avro.LocalTimestampMicros:
			return "timestamp", nil
		}
		return "int64", nil
	case avro.Float, avro.Double:
		return "float64", nil
	case avro.Bytes, avro.Fixed:
		if avro.LogicalType(logical) == avro.Decimal {
			return "float64", nil
		}
		return "bytes", nil
	case avro.String, avro.Enum, avro.Array, avro.Map, avro.Union:
		return "string", nil
	}
	return "", fmt.Errorf("type %s has no column type", s.Type())
}

// opKind is what one step of a decoding program reads.
type opKind uint8

const (
	opSkip opKind = iota // read and drop (a field the columns lack)
	opNull
	opBool
	opInt // int or long
	opFloat
	opDouble
	opBytes // bytes or string
	opFixed
	opEnum
	opDecimalBytes
	opDecimalFixed
	opUnion
	opRecord
	opJSON // array, map or a union without a column type: JSON text
)

// op reads one value of a writer schema into a column (col < 0: nowhere).
type op struct {
	kind   opKind
	col    int
	micros bool        // timestamp-micros: divided to milliseconds
	size   int         // fixed
	scale  int         // decimal
	enum   []string    // enum symbols
	subs   []op        // union branches, record fields
	schema avro.Schema // skip, JSON
}

// compileAvro is the program that reads records written with schema w into
// columns cols (by name; nested records flattened with _). A field whose
// type cannot fill its column makes the schema incompatible.
func compileAvro(w avro.Schema, cols map[string]int, types []string) ([]op, error) {
	rec, ok := w.(*avro.RecordSchema)
	if !ok {
		return nil, fmt.Errorf("the schema is a %s, not a record", w.Type())
	}
	return compileFields(rec, "", cols, types)
}

func compileFields(rec *avro.RecordSchema, prefix string, cols map[string]int, types []string) ([]op, error) {
	ops := make([]op, 0, len(rec.Fields()))
	for _, f := range rec.Fields() {
		o, err := compileValue(f.Type(), prefix+f.Name(), cols, types)
		if err != nil {
			return nil, err
		}
		ops = append(ops, o)
	}
	return ops, nil
}

func compileValue(s avro.Schema, name string, cols map[string]int, types []string) (op, error) {
	col, ok := cols[name]
	if !ok {
		col = -1
	}
	if r, isRec := s.(*avro.RecordSchema); isRec {
		subs, err := compileFields(r, name+"_", cols, types)
		return op{kind: opRecord, col: -1, subs: subs}, err
	}
	if u, isUnion := s.(*avro.UnionSchema); isUnion {
		if !u.Nullable() || len(u.Types()) != 2 {
			// A union of several types: its JSON text, in a string column.
			switch {
			case col < 0:
				return op{kind: opSkip, col: -1, schema: s}, nil
			case types[col] != "string":
				return op{}, fmt.Errorf("field %s: a union of %d types fills only a string column, not %s", name, len(u.Types()), types[col])
			}
			return op{kind: opJSON, col: col, schema: s}, nil
		}
		o := op{kind: opUnion, col: col}
		for _, b := range u.Types() {
			sub, err := compileValue(b, name, cols, types)
			if err != nil {
				return op{}, err
			}
			o.subs = append(o.subs, sub)
		}
		return o, nil
	}
	o := op{col: col, schema: s}
	logical := avro.LogicalType("")
	if l, ok := s.(avro.LogicalTypeSchema); ok && l.Logical() != nil {
		logical = l.Logical().Type()
		if d, ok := l.Logical().(*avro.DecimalLogicalSchema); ok {
			o.scale = d.Scale()
		}
	}
	want := "" // the column types this writer type fills
	switch s.Type() {
	case avro.Null:
		o.kind, want = opNull, "any"
	case avro.Boolean:
		o.kind, want = opBool, "bool"
	case avro.Int:
		o.kind, want = opInt, "int64 float64"
	case avro.Long:
		o.kind, want = opInt, "int64 timestamp float64"
		o.micros = logical == avro.TimestampMicros || logical == avro.LocalTimestampMicros
	case avro.Float:
		o.kind, want = opFloat, "float64"
	case avro.Double:
		o.kind, want = opDouble, "float64"
	case avro.Bytes:
		o.kind, want = opBytes, "bytes string"
		if logical == avro.Decimal {
			o.kind, want = opDecimalBytes, "float64"
		}
	case avro.String:
		o.kind, want = opBytes, "string bytes"
	case avro.Fixed:
		o.kind, o.size, want = opFixed, s.(*avro.FixedSchema).Size(), "bytes"
		if logical == avro.Decimal {
			o.kind, want = opDecimalFixed, "float64"
		}
	case avro.Enum:
		o.kind, o.enum, want = opEnum, s.(*avro.EnumSchema).Symbols(), "string"
	case avro.Array, avro.Map:
		o.kind, want = opJSON, "string"
	default:
		return op{}, fmt.Errorf("field %s: type %s has no column type", name, s.Type())
	}
	if col < 0 {
		if o.kind != opNull {
			o.kind = opSkip
		}
		return o, nil
	}
	if want != "any" && !strings.Contains(want, types[col]) {
		return op{}, fmt.Errorf("field %s is %s in the record's schema, but the source's column is %s", name, s.Type(), types[col])
	}
	return o, nil
}

// value is one decoded column value of the record being read.
type value struct {
	set, null bool
	i         int64
	f         float64
	b         bool
	start     int // in the decoder's scratch
	end       int
}

// avroReader runs programs over record bodies.
type avroReader struct {
	r       *avro.Reader
	vals    []value
	scratch []byte
}

// run reads one value by o.
func (d *avroReader) run(o *op) {
	r := d.r
	switch o.kind {
	case opSkip:
		skipAvro(r, o.schema)
	case opNull:
		d.setNull(o.col)
	case opBool:
		d.set(o.col).b = r.ReadBool()
	case opInt:
		var v int64
		if o.schema.Type() == avro.Int {
			v = int64(r.ReadInt())
		} else {
			v = r.ReadLong()
		}
		if o.micros {
			v = floorDiv(v, 1000)
		}
		if o.col >= 0 {
			val := d.set(o.col)
			val.i, val.f = v, float64(v)
		}
	case opFloat:
		d.set(o.col).f = float64(r.ReadFloat())
	case opDouble:
		d.set(o.col).f = r.ReadDouble()
	case opBytes:
		n := r.ReadLong()
		if n < 0 || n > int64(math.MaxInt32) {
			r.ReportError("ReadBytes", "invalid length")
			return
		}
		d.readInto(o.col, int(n))
	case opFixed:
		d.readInto(o.col, o.size)
	case opEnum:
		i := int(r.ReadInt())
		if i < 0 || i >= len(o.enum) {
			r.ReportError("ReadEnum", fmt.Sprintf("symbol %d of %d", i, len(o.enum)))
			return
		}
		d.appendScratch(o.col, o.enum[i])
	case opDecimalBytes, opDecimalFixed:
		var b []byte
		if o.kind == opDecimalBytes {
			b = r.ReadBytes()
		} else {
			b = make([]byte, o.size)
			r.Read(b)
		}
		d.set(o.col).f = decimalFloat(b, o.scale)
	case opUnion:
		i := int(r.ReadLong())
		if i < 0 || i >= len(o.subs) {
			r.ReportError("ReadUnion", fmt.Sprintf("branch %d of %d", i, len(o.subs)))
			return
		}
		d.run(&o.subs[i])
	case opRecord:
		for i := range o.subs {
			d.run(&o.subs[i])
		}
	case opJSON:
		v := r.ReadNext(o.schema)
		if r.Error != nil {
			return
		}
		b, err := json.Marshal(jsonable(v))
		if err != nil {
			r.ReportError("ReadJSON", err.Error())
			return
		}
		d.appendScratch(o.col, string(b))
	}
}

func (d *avroReader) set(col int) *value {
	if col < 0 {
		return &value{}
	}
	v := &d.vals[col]
	v.set, v.null = true, false
	return v
}

func (d *avroReader) setNull(col int) {
	if col >= 0 {
		d.vals[col] = value{set: true, null: true}
	}
}

// readInto reads n bytes into the scratch as col's value (or drops them).
func (d *avroReader) readInto(col, n int) {
	start := len(d.scratch)
	d.scratch = append(d.scratch, make([]byte, n)...)
	d.r.Read(d.scratch[start:])
	if col < 0 {
		d.scratch = d.scratch[:start]
		return
	}
	v := d.set(col)
	v.start, v.end = start, len(d.scratch)
}

func (d *avroReader) appendScratch(col int, s string) {
	if col < 0 {
		return
	}
	start := len(d.scratch)
	d.scratch = append(d.scratch, s...)
	v := d.set(col)
	v.start, v.end = start, len(d.scratch)
}

// skipAvro reads past one value of schema s.
func skipAvro(r *avro.Reader, s avro.Schema) {
	switch s.Type() {
	case avro.Null:
	case avro.Boolean:
		r.SkipBool()
	case avro.Int, avro.Enum:
		r.SkipInt()
	case avro.Long:
		r.SkipLong()
	case avro.Float:
		r.SkipFloat()
	case avro.Double:
		r.SkipDouble()
	case avro.Bytes:
		r.SkipBytes()
	case avro.String:
		r.SkipString()
	case avro.Fixed:
		r.SkipNBytes(s.(*avro.FixedSchema).Size())
	case avro.Record:
		for _, f := range s.(*avro.RecordSchema).Fields() {
			skipAvro(r, f.Type())
		}
	case avro.Union:
		types := s.(*avro.UnionSchema).Types()
		i := int(r.ReadLong())
		if i < 0 || i >= len(types) {
			r.ReportError("SkipUnion", fmt.Sprintf("branch %d of %d", i, len(types)))
			return
		}
		skipAvro(r, types[i])
	default: // arrays, maps
		r.ReadNext(s)
	}
}

// jsonable turns what avro.Reader.ReadNext returns into values
// encoding/json takes (maps with string keys; bytes as strings).
func jsonable(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = jsonable(e)
		}
	case []any:
		for i, e := range x {
			x[i] = jsonable(e)
		}
	case []byte:
		return string(x)
	case *big.Rat:
		f, _ := x.Float64()
		return f
	}
	return v
}

// decimalFloat is the two's-complement big-endian unscaled value b divided
// by 10^scale.
func decimalFloat(b []byte, scale int) float64 {
	n := new(big.Int).SetBytes(b)
	if len(b) > 0 && b[0]&0x80 != 0 {
		n.Sub(n, new(big.Int).Lsh(big.NewInt(1), uint(len(b))*8))
	}
	f, _ := new(big.Rat).SetFrac(n, new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(scale)), nil)).Float64()
	return f
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}
