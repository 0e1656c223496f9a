package registry

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sync"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/pheromone-go/pheromone/engine/app"
	"github.com/pheromone-go/pheromone/engine/codec"
)

// encoder encodes a sink's rows in a registry format. Each Arrow schema
// the sink sees is prepared once: its registry schema derived and
// registered (or the subject's latest looked up), giving the id every
// record carries.
type encoder struct {
	cl      *Client
	format  string
	sink    *app.Sink
	subject string

	mu    sync.Mutex
	plans map[string]*encPlan // by Arrow schema fingerprint
	pool  sync.Pool           // *avro.Writer
	rows  sync.Pool           // *rowState
	jsons sync.Pool           // *codec.JSONEncoder
}

// rowState holds one row's values while it is encoded.
type rowState struct {
	vals    []value
	scratch []byte
}

func newEncoder(cl *Client, format string, sink *app.Sink) *encoder {
	e := &encoder{cl: cl, format: format, sink: sink, subject: subjectOf(sink), plans: map[string]*encPlan{}}
	e.pool.New = func() any { return avro.NewWriter(nil, 512) }
	e.rows.New = func() any { return &rowState{} }
	e.jsons.New = func() any { return &codec.JSONEncoder{} }
	return e
}

// encPlan is how rows of one Arrow schema encode.
type encPlan struct {
	hdr    []byte     // magic byte, schema id (and protobuf's message index)
	fields []encField // Avro: the registry schema's fields, in order
	proto  []protoField
}

// encField writes one Avro field from an Arrow column.
type encField struct {
	name     string
	col      int       // -1: the rows have no such column (null)
	typ      avro.Type // long, int, double, float, boolean, string, bytes
	micros   bool      // timestamp-micros: milliseconds * 1000
	nullable bool
	nullIdx  int // union branches
	valIdx   int
	symbols  map[string]int // enum
}

func (e *encoder) plan(s *arrow.Schema) *encPlan {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.plans[s.Fingerprint()]
}

// Prepare registers (or finds) the registry schema of rows of schema s.
func (e *encoder) Prepare(s *arrow.Schema) error {
	if e.plan(s) != nil {
		return nil
	}
	ctx := context.Background()
	var text string
	var id int
	if e.sink.Registry.Registers() {
		var err error
		if text, err = e.derive(s); err != nil {
			return err
		}
		if id, err = e.cl.Register(ctx, e.subject, sr.Schema{Schema: text, Type: schemaType[e.format]}); err != nil {
			return err
		}
	} else {
		ss, err := e.cl.Version(ctx, e.subject, 0)
		if err != nil {
			return err
		}
		if ss.Type != schemaType[e.format] {
			return fmt.Errorf("subject %q holds a %s schema, not %s", e.subject, ss.Type, e.format)
		}
		text, id = ss.Schema.Schema, ss.ID
	}
	p := &encPlan{hdr: binary.BigEndian.AppendUint32([]byte{0}, uint32(id))}
	switch e.format {
	case Protobuf:
		fd, err := compileProto(text)
		if err != nil {
			return fmt.Errorf("subject %q (id %d): %w", e.subject, id, err)
		}
		md, path, err := protoMessage(fd, e.sink.Registry.Message)
		if err != nil {
			return fmt.Errorf("subject %q (id %d): %w", e.subject, id, err)
		}
		var h sr.ConfluentHeader
		p.hdr, _ = h.AppendEncode(nil, id, path)
		if p.proto, err = protoEncPlan(md, arrowColumns(s)); err != nil {
			return fmt.Errorf("subject %q (id %d): %w", e.subject, id, err)
		}
	case Avro:
		target, err := parseAvro(text)
		if err != nil {
			return fmt.Errorf("subject %q: %w", e.subject, err)
		}
		if p.fields, err = avroPlan(target, s); err != nil {
			return fmt.Errorf("subject %q (id %d): %w", e.subject, id, err)
		}
	default:
		body := &jsonBody{src: &app.Source{Schema: arrowColumns(s)}}
		if err := body.fits(text); err != nil {
			return fmt.Errorf("subject %q (id %d): %w", e.subject, id, err)
		}
	}
	e.mu.Lock()
	e.plans[s.Fingerprint()] = p
	e.mu.Unlock()
	return nil
}

var avroName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// derive is the registry schema of rows of schema s: every column
// nullable, timestamps as timestamp-millis.
func (e *encoder) derive(s *arrow.Schema) (string, error) {
	if e.format == Protobuf {
		return deriveProto(e.recordName(), arrowColumns(s))
	}
	if e.format == JSONSchema {
		props := map[string]jsonProperty{}
		for _, f := range s.Fields() {
			p := jsonProperty{}
			switch f.Type.ID() {
			case arrow.STRING:
				p.Type = []any{"string", "null"}
			case arrow.BINARY:
				p.Type, p.ContentEncoding = []any{"string", "null"}, "base64"
			case arrow.TIMESTAMP:
				p.Type, p.Format = []any{"string", "null"}, "date-time"
			case arrow.INT64, arrow.INT32:
				p.Type = []any{"integer", "null"}
			case arrow.FLOAT64, arrow.FLOAT32:
				p.Type = []any{"number", "null"}
			case arrow.BOOL:
				p.Type = []any{"boolean", "null"}
			default:
				return "", fmt.Errorf("column %s: %s has no JSON Schema type", f.Name, f.Type)
			}
			props[f.Name] = p
		}
		b, err := json.Marshal(map[string]any{"$schema": "http://json-schema.org/draft-07/schema#", "title": e.recordName(),
			"type": "object", "properties": props})
		return string(b), err
	}
	fields := make([]map[string]any, 0, len(s.Fields()))
	for _, f := range s.Fields() {
		if !avroName.MatchString(f.Name) {
			return "", fmt.Errorf("column %q is not an Avro field name", f.Name)
		}
		var t any
		switch f.Type.ID() {
		case arrow.STRING:
			t = "string"
		case arrow.BINARY:
			t = "bytes"
		case arrow.TIMESTAMP:
			t = map[string]string{"type": "long", "logicalType": "timestamp-millis"}
		case arrow.INT64, arrow.INT32:
			t = "long"
		case arrow.FLOAT64, arrow.FLOAT32:
			t = "double"
		case arrow.BOOL:
			t = "boolean"
		default:
			return "", fmt.Errorf("column %s: %s has no Avro type", f.Name, f.Type)
		}
		fields = append(fields, map[string]any{"name": f.Name, "type": []any{"null", t}, "default": nil})
	}
	b, err := json.Marshal(map[string]any{"type": "record", "name": e.recordName(), "namespace": "pheromone", "fields": fields})
	return string(b), err
}

// recordName is the derived schema's record name: the registry section's
// record, else the sink's name made an Avro name.
func (e *encoder) recordName() string {
	if r := e.sink.Registry.Record; r != "" {
		return r
	}
	b := []byte(e.sink.Name)
	for i, c := range b {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			b[i] = '_'
		}
	}
	return string(b)
}

// avroPlan maps the fields of target to the columns of s.
func avroPlan(target avro.Schema, s *arrow.Schema) ([]encField, error) {
	rec, ok := target.(*avro.RecordSchema)
	if !ok {
		return nil, fmt.Errorf("the schema is a %s, not a record", target.Type())
	}
	var out []encField
	for _, f := range rec.Fields() {
		ef := encField{name: f.Name(), col: -1}
		if idx := s.FieldIndices(f.Name()); len(idx) > 0 {
			ef.col = idx[0]
		}
		t := f.Type()
		if u, ok := t.(*avro.UnionSchema); ok {
			if !u.Nullable() || len(u.Types()) != 2 {
				return nil, fmt.Errorf("field %s: only unions with null are written", f.Name())
			}
			ef.nullable = true
			ef.nullIdx, ef.valIdx = u.Indices()
			t = u.Types()[ef.valIdx]
		}
		if ef.col < 0 {
			if !ef.nullable {
				return nil, fmt.Errorf("field %s is not nullable and the output has no such column", f.Name())
			}
			out = append(out, ef)
			continue
		}
		ef.typ = t.Type()
		if l, ok := t.(avro.LogicalTypeSchema); ok && l.Logical() != nil {
			ef.micros = l.Logical().Type() == avro.TimestampMicros
		}
		col := s.Field(ef.col).Type.ID()
		okType := false
		switch ef.typ {
		case avro.Long, avro.Int:
			okType = col == arrow.INT64 || col == arrow.INT32 || col == arrow.TIMESTAMP
		case avro.Double, avro.Float:
			okType = col == arrow.FLOAT64 || col == arrow.FLOAT32 || col == arrow.INT64
		case avro.Boolean:
			okType = col == arrow.BOOL
		case avro.String:
			okType = col == arrow.STRING
		case avro.Bytes:
			okType = col == arrow.BINARY || col == arrow.STRING
		case avro.Enum:
			okType = col == arrow.STRING
			ef.symbols = map[string]int{}
			for i, s := range t.(*avro.EnumSchema).Symbols() {
				ef.symbols[s] = i
			}
		}
		if !okType {
			return nil, fmt.Errorf("field %s is %s, the output's column is %s", f.Name(), ef.typ, s.Field(ef.col).Type)
		}
		out = append(out, ef)
	}
	return out, nil
}

// AppendRow appends the wire-format record of row i.
func (e *encoder) AppendRow(dst []byte, rec arrow.Record, i int) ([]byte, error) {
	p := e.plan(rec.Schema())
	if p == nil {
		return dst, errors.New("registry: the sink's schema was not prepared")
	}
	dst = append(dst, p.hdr...)
	switch e.format {
	case JSONSchema:
		enc := e.jsons.Get().(*codec.JSONEncoder) // keeps its timestamp cache
		defer e.jsons.Put(enc)
		return enc.AppendRow(dst, rec, i), nil
	case Protobuf:
		st := e.rows.Get().(*rowState)
		defer e.rows.Put(st)
		st.vals, st.scratch = rowValues(rec, i, st.vals[:0], st.scratch[:0])
		return appendProto(dst, p.proto, st.vals, st.scratch)
	}
	w := e.pool.Get().(*avro.Writer)
	defer e.pool.Put(w)
	w.Reset(nil)
	for k := range p.fields {
		f := &p.fields[k]
		var col arrow.Array
		if f.col >= 0 {
			col = rec.Column(f.col)
		}
		if col == nil || col.IsNull(i) {
			if !f.nullable {
				return dst, fmt.Errorf("column %s is null, and field %s is not nullable", f.name, f.name)
			}
			w.WriteLong(int64(f.nullIdx))
			continue
		}
		if f.nullable {
			w.WriteLong(int64(f.valIdx))
		}
		if err := writeAvro(w, f, col, i); err != nil {
			return dst, err
		}
	}
	if w.Error != nil {
		return dst, w.Error
	}
	return append(dst, w.Buffer()...), nil
}

func writeAvro(w *avro.Writer, f *encField, col arrow.Array, i int) error {
	var n int64
	var x float64
	switch c := col.(type) {
	case *array.Int64:
		n, x = c.Value(i), float64(c.Value(i))
	case *array.Int32:
		n, x = int64(c.Value(i)), float64(c.Value(i))
	case *array.Timestamp:
		n = int64(c.Value(i))
	case *array.Float64:
		x = c.Value(i)
	case *array.Float32:
		x = float64(c.Value(i))
	case *array.Boolean:
		w.WriteBool(c.Value(i))
		return nil
	case *array.String:
		if f.typ == avro.Enum {
			sym, ok := f.symbols[c.Value(i)]
			if !ok {
				return fmt.Errorf("column %s: %q is not a symbol of the enum", f.name, c.Value(i))
			}
			w.WriteInt(int32(sym))
			return nil
		}
		if f.typ == avro.Bytes {
			w.WriteBytes([]byte(c.Value(i)))
		} else {
			w.WriteString(c.Value(i))
		}
		return nil
	case *array.Binary:
		w.WriteBytes(c.Value(i))
		return nil
	default:
		return fmt.Errorf("column %s: %s cannot be written as Avro", f.name, col.DataType())
	}
	if f.micros {
		n *= 1000
	}
	switch f.typ {
	case avro.Long:
		w.WriteLong(n)
	case avro.Int:
		w.WriteInt(int32(n))
	case avro.Double:
		w.WriteDouble(x)
	case avro.Float:
		w.WriteFloat(float32(x))
	}
	return nil
}

// arrowColumns are the columns of an Arrow schema, by the app's type names.
func arrowColumns(s *arrow.Schema) []app.Column {
	out := make([]app.Column, 0, len(s.Fields()))
	for _, f := range s.Fields() {
		t := "string"
		switch f.Type.ID() {
		case arrow.INT64, arrow.INT32:
			t = "int64"
		case arrow.FLOAT64, arrow.FLOAT32:
			t = "float64"
		case arrow.BOOL:
			t = "bool"
		case arrow.TIMESTAMP:
			t = "timestamp"
		case arrow.BINARY:
			t = "bytes"
		}
		out = append(out, app.Column{Name: f.Name, Type: t})
	}
	return out
}

// rowValues appends row i of rec's columns to vals (strings and bytes in
// scratch).
func rowValues(rec arrow.Record, i int, vals []value, scratch []byte) ([]value, []byte) {
	for _, col := range rec.Columns() {
		var v value
		if col.IsNull(i) {
			vals = append(vals, value{set: true, null: true})
			continue
		}
		v.set = true
		switch c := col.(type) {
		case *array.Int64:
			v.i, v.f = c.Value(i), float64(c.Value(i))
		case *array.Int32:
			v.i, v.f = int64(c.Value(i)), float64(c.Value(i))
		case *array.Timestamp:
			v.i = int64(c.Value(i))
		case *array.Float64:
			v.f = c.Value(i)
		case *array.Float32:
			v.f = float64(c.Value(i))
		case *array.Boolean:
			v.b = c.Value(i)
		case *array.String:
			v.start = len(scratch)
			scratch = append(scratch, c.Value(i)...)
			v.end = len(scratch)
		case *array.Binary:
			v.start = len(scratch)
			scratch = append(scratch, c.Value(i)...)
			v.end = len(scratch)
		default:
			v.null = true
		}
		vals = append(vals, v)
	}
	return vals, scratch
}
