package registry

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"strings"

	"github.com/bufbuild/protocompile"
	"github.com/twmb/franz-go/pkg/sr"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/pheromone-go/pheromone/engine"
	"github.com/pheromone-go/pheromone/engine/app"
)

// Protobuf: a message's fields become columns (nested messages flattened
// with _, google.protobuf.Timestamp a timestamp, enums their names,
// repeated fields and maps JSON text). Schemas are .proto texts compiled
// by protocompile (with the standard imports; references to other
// subjects are not followed); records decode as dynamic messages.

// compileProto compiles a .proto schema text.
func compileProto(text string) (protoreflect.FileDescriptor, error) {
	c := protocompile.Compiler{Resolver: protocompile.WithStandardImports(&protocompile.SourceResolver{
		Accessor: protocompile.SourceAccessorFromMap(map[string]string{"schema.proto": text})})}
	files, err := c.Compile(context.Background(), "schema.proto")
	if err != nil {
		return nil, fmt.Errorf("protobuf schema: %w", err)
	}
	return files[0], nil
}

// protoMessage is the message named name (full or short name; "": the
// file's first) and its index path in the file.
func protoMessage(fd protoreflect.FileDescriptor, name string) (protoreflect.MessageDescriptor, []int, error) {
	var walk func(ms protoreflect.MessageDescriptors, path []int) (protoreflect.MessageDescriptor, []int)
	walk = func(ms protoreflect.MessageDescriptors, path []int) (protoreflect.MessageDescriptor, []int) {
		for i := 0; i < ms.Len(); i++ {
			m := ms.Get(i)
			p := append(append([]int(nil), path...), i)
			if name == "" || string(m.FullName()) == name || string(m.Name()) == name {
				return m, p
			}
			if found, fp := walk(m.Messages(), p); found != nil {
				return found, fp
			}
		}
		return nil, nil
	}
	m, path := walk(fd.Messages(), nil)
	if m == nil {
		if name == "" {
			return nil, nil, fmt.Errorf("the protobuf schema has no message")
		}
		return nil, nil, fmt.Errorf("the protobuf schema has no message %q", name)
	}
	return m, path, nil
}

// messageAt is the message at index path in fd.
func messageAt(fd protoreflect.FileDescriptor, path []int) (protoreflect.MessageDescriptor, error) {
	ms := fd.Messages()
	var m protoreflect.MessageDescriptor
	for _, i := range path {
		if i < 0 || i >= ms.Len() {
			return nil, fmt.Errorf("message index %v is not in the schema", path)
		}
		m = ms.Get(i)
		ms = m.Messages()
	}
	if m == nil {
		return nil, fmt.Errorf("no message index")
	}
	return m, nil
}

func protoColumns(text, message string) ([]app.Column, error) {
	fd, err := compileProto(text)
	if err != nil {
		return nil, err
	}
	md, _, err := protoMessage(fd, message)
	if err != nil {
		return nil, err
	}
	var cols []app.Column
	var walk func(md protoreflect.MessageDescriptor, prefix string)
	walk = func(md protoreflect.MessageDescriptor, prefix string) {
		fs := md.Fields()
		for i := 0; i < fs.Len(); i++ {
			f := fs.Get(i)
			name := prefix + string(f.Name())
			if f.Kind() == protoreflect.MessageKind && !f.IsList() && !f.IsMap() && !isTimestamp(f.Message()) {
				walk(f.Message(), name+"_")
				continue
			}
			cols = append(cols, app.Column{Name: name, Type: protoColumnType(f)})
		}
	}
	walk(md, "")
	return cols, nil
}

func isTimestamp(m protoreflect.MessageDescriptor) bool {
	return m != nil && m.FullName() == "google.protobuf.Timestamp"
}

func protoColumnType(f protoreflect.FieldDescriptor) string {
	if f.IsList() || f.IsMap() {
		return "string"
	}
	switch f.Kind() {
	case protoreflect.BoolKind:
		return "bool"
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		return "float64"
	case protoreflect.StringKind, protoreflect.EnumKind:
		return "string"
	case protoreflect.BytesKind:
		return "bytes"
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return "timestamp"
	}
	return "int64"
}

type protoOp struct {
	f    protoreflect.FieldDescriptor
	col  int       // -1: not a column (nested: subs)
	subs []protoOp // a nested message's fields
}

// protoPlan is how records of one (schema id, message index) decode.
type protoPlan struct {
	md  protoreflect.MessageDescriptor
	ops []protoOp
}

// planFor compiles the decoding of message path of writer schema fd.
func planFor(fd protoreflect.FileDescriptor, path []int, cols map[string]int, types []string) (*protoPlan, error) {
	md, err := messageAt(fd, path)
	if err != nil {
		return nil, err
	}
	var walk func(md protoreflect.MessageDescriptor, prefix string) ([]protoOp, error)
	walk = func(md protoreflect.MessageDescriptor, prefix string) ([]protoOp, error) {
		var ops []protoOp
		fs := md.Fields()
		for i := 0; i < fs.Len(); i++ {
			f := fs.Get(i)
			name := prefix + string(f.Name())
			if f.Kind() == protoreflect.MessageKind && !f.IsList() && !f.IsMap() && !isTimestamp(f.Message()) {
				subs, err := walk(f.Message(), name+"_")
				if err != nil {
					return nil, err
				}
				ops = append(ops, protoOp{f: f, col: -1, subs: subs})
				continue
			}
			col, ok := cols[name]
			if !ok {
				continue
			}
			if got := protoColumnType(f); got != types[col] && !(got == "int64" && types[col] == "float64") {
				return nil, fmt.Errorf("field %s is %s in the record's schema, but the source's column is %s", name, got, types[col])
			}
			ops = append(ops, protoOp{f: f, col: col})
		}
		return ops, nil
	}
	ops, err := walk(md, "")
	if err != nil {
		return nil, err
	}
	return &protoPlan{md: md, ops: ops}, nil
}

// decodeProto decodes a record body (after the schema id) of writer schema
// fd into d's values.
func (d *decoder) decodeProto(id int, fd protoreflect.FileDescriptor, body []byte) error {
	var h sr.ConfluentHeader
	path, rest, err := h.DecodeIndex(body, 32)
	if _, merr := messageAt(fd, path); err != nil || merr != nil {
		// Some serializers (@kafkajs/confluent-schema-registry) write no
		// message index. A protobuf body never starts with a 0 byte (the
		// index shortcut), so a body whose "index" names no message of the
		// schema (or an empty body: every field at its default) is read as
		// the schema's first message.
		if len(body) > 0 && body[0] == 0 {
			return bad(engine.ReasonDecode, "the record's protobuf message index names no message of schema id %d", id)
		}
		path, rest = []int{0}, body
	}
	body = rest
	key := fmt.Sprint(id, path)
	plan := d.protoPlans[key]
	if plan == nil {
		if plan, err = planFor(fd, path, d.cols, d.types); err != nil {
			return bad(engine.ReasonSchema, "schema id %d does not fit the source's columns: %v", id, err)
		}
		d.protoPlans[key] = plan
	}
	msg := dynamicpb.NewMessage(plan.md)
	if err := proto.Unmarshal(body, msg); err != nil {
		return bad(engine.ReasonDecode, "the record does not match its schema (id %d): %v", id, err)
	}
	rd := &d.rd
	clear(rd.vals)
	rd.scratch = rd.scratch[:0]
	rd.protoFill(msg, plan.ops)
	return nil
}

// protoFill sets the columns of ops from msg: a field without presence
// that is absent is its zero value; one with presence is null.
func (d *avroReader) protoFill(msg protoreflect.Message, ops []protoOp) {
	for _, o := range ops {
		if o.subs != nil {
			if msg.Has(o.f) {
				d.protoFill(msg.Get(o.f).Message(), o.subs)
			}
			continue
		}
		if o.f.HasPresence() && !msg.Has(o.f) {
			d.setNull(o.col)
			continue
		}
		v := msg.Get(o.f)
		switch {
		case o.f.IsList() || o.f.IsMap():
			b, err := json.Marshal(protoJSON(o.f, v))
			if err != nil {
				d.setNull(o.col)
				continue
			}
			d.appendScratch(o.col, string(b))
			continue
		}
		switch o.f.Kind() {
		case protoreflect.BoolKind:
			d.set(o.col).b = v.Bool()
		case protoreflect.FloatKind, protoreflect.DoubleKind:
			d.set(o.col).f = v.Float()
		case protoreflect.StringKind:
			d.appendScratch(o.col, v.String())
		case protoreflect.BytesKind:
			d.appendScratch(o.col, string(v.Bytes()))
		case protoreflect.EnumKind:
			name := fmt.Sprint(int32(v.Enum()))
			if ev := o.f.Enum().Values().ByNumber(v.Enum()); ev != nil {
				name = string(ev.Name())
			}
			d.appendScratch(o.col, name)
		case protoreflect.MessageKind, protoreflect.GroupKind: // Timestamp
			m := v.Message()
			fs := m.Descriptor().Fields()
			sec, nanos := m.Get(fs.ByName("seconds")).Int(), m.Get(fs.ByName("nanos")).Int()
			d.set(o.col).i = sec*1000 + nanos/1e6
		case protoreflect.Uint32Kind, protoreflect.Fixed32Kind, protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
			val := d.set(o.col)
			val.i, val.f = int64(v.Uint()), float64(v.Uint())
		default:
			val := d.set(o.col)
			val.i, val.f = v.Int(), float64(v.Int())
		}
	}
}

// protoJSON is a repeated field's or map's value as plain Go values.
func protoJSON(f protoreflect.FieldDescriptor, v protoreflect.Value) any {
	one := func(fd protoreflect.FieldDescriptor, v protoreflect.Value) any {
		switch fd.Kind() {
		case protoreflect.MessageKind, protoreflect.GroupKind:
			out := map[string]any{}
			m := v.Message()
			m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
				out[string(fd.Name())] = protoJSON(fd, v)
				return true
			})
			return out
		case protoreflect.EnumKind:
			if ev := fd.Enum().Values().ByNumber(v.Enum()); ev != nil {
				return string(ev.Name())
			}
			return int32(v.Enum())
		case protoreflect.BytesKind:
			return base64.StdEncoding.EncodeToString(v.Bytes())
		}
		return v.Interface()
	}
	switch {
	case f.IsList():
		l := v.List()
		out := make([]any, l.Len())
		for i := range out {
			out[i] = one(f, l.Get(i))
		}
		return out
	case f.IsMap():
		out := map[string]any{}
		v.Map().Range(func(k protoreflect.MapKey, v protoreflect.Value) bool {
			out[k.String()] = one(f.MapValue(), v)
			return true
		})
		return out
	}
	return one(f, v)
}

// deriveProto is the .proto text of rows of columns cols: proto3, every
// field optional, numbered in column order.
func deriveProto(name string, s []app.Column) (string, error) {
	var b strings.Builder
	b.WriteString("syntax = \"proto3\";\npackage pheromone;\n")
	for _, c := range s {
		if c.Type == "timestamp" {
			b.WriteString("import \"google/protobuf/timestamp.proto\";\n")
			break
		}
	}
	fmt.Fprintf(&b, "message %s {\n", name)
	for i, c := range s {
		if !avroName.MatchString(c.Name) {
			return "", fmt.Errorf("column %q is not a protobuf field name", c.Name)
		}
		t := map[string]string{"string": "string", "bytes": "bytes", "int64": "int64", "float64": "double", "bool": "bool",
			"timestamp": "google.protobuf.Timestamp"}[c.Type]
		fmt.Fprintf(&b, "  optional %s %s = %d;\n", t, c.Name, i+1)
	}
	b.WriteString("}\n")
	return b.String(), nil
}

// protoField writes one column as a field of the registered message.
type protoField struct {
	f   protoreflect.FieldDescriptor
	col int
}

// protoEncPlan maps the fields of message md to the columns of s.
func protoEncPlan(md protoreflect.MessageDescriptor, s []app.Column) ([]protoField, error) {
	var out []protoField
	fs := md.Fields()
	for i := 0; i < fs.Len(); i++ {
		f := fs.Get(i)
		col := -1
		for j, c := range s {
			if c.Name == string(f.Name()) {
				col = j
			}
		}
		if col < 0 {
			if f.Cardinality() == protoreflect.Required {
				return nil, fmt.Errorf("field %s is required and the output has no such column", f.Name())
			}
			continue
		}
		if f.IsList() || f.IsMap() || (f.Kind() == protoreflect.MessageKind && !isTimestamp(f.Message())) {
			return nil, fmt.Errorf("field %s: only scalar and Timestamp fields are written", f.Name())
		}
		if got := protoColumnType(f); got != s[col].Type && !(got == "float64" && s[col].Type == "int64") {
			return nil, fmt.Errorf("field %s is %s, the output's column is %s", f.Name(), got, s[col].Type)
		}
		out = append(out, protoField{f: f, col: col})
	}
	return out, nil
}

// appendProto appends row i of the columns as the message's fields.
func appendProto(dst []byte, fields []protoField, cols []value, scratch []byte) ([]byte, error) {
	for _, pf := range fields {
		v := cols[pf.col]
		if !v.set || v.null {
			continue
		}
		num := pf.f.Number()
		switch pf.f.Kind() {
		case protoreflect.BoolKind:
			dst = protowire.AppendTag(dst, num, protowire.VarintType)
			dst = protowire.AppendVarint(dst, protowire.EncodeBool(v.b))
		case protoreflect.DoubleKind:
			dst = protowire.AppendTag(dst, num, protowire.Fixed64Type)
			dst = protowire.AppendFixed64(dst, math.Float64bits(v.f))
		case protoreflect.FloatKind:
			dst = protowire.AppendTag(dst, num, protowire.Fixed32Type)
			dst = protowire.AppendFixed32(dst, math.Float32bits(float32(v.f)))
		case protoreflect.StringKind, protoreflect.BytesKind:
			dst = protowire.AppendTag(dst, num, protowire.BytesType)
			dst = protowire.AppendBytes(dst, scratch[v.start:v.end])
		case protoreflect.EnumKind:
			ev := pf.f.Enum().Values().ByName(protoreflect.Name(scratch[v.start:v.end]))
			if ev == nil {
				return dst, fmt.Errorf("field %s: %q is not a value of enum %s", pf.f.Name(), scratch[v.start:v.end], pf.f.Enum().FullName())
			}
			dst = protowire.AppendTag(dst, num, protowire.VarintType)
			dst = protowire.AppendVarint(dst, uint64(int64(ev.Number())))
		case protoreflect.MessageKind: // Timestamp
			sec, ms := floorDiv(v.i, 1000), v.i-floorDiv(v.i, 1000)*1000
			var ts []byte
			if sec != 0 {
				ts = protowire.AppendTag(ts, 1, protowire.VarintType)
				ts = protowire.AppendVarint(ts, uint64(sec))
			}
			if ms != 0 {
				ts = protowire.AppendTag(ts, 2, protowire.VarintType)
				ts = protowire.AppendVarint(ts, uint64(ms*1e6))
			}
			dst = protowire.AppendTag(dst, num, protowire.BytesType)
			dst = protowire.AppendBytes(dst, ts)
		case protoreflect.Sint32Kind, protoreflect.Sint64Kind:
			dst = protowire.AppendTag(dst, num, protowire.VarintType)
			dst = protowire.AppendVarint(dst, protowire.EncodeZigZag(v.i))
		case protoreflect.Sfixed32Kind, protoreflect.Fixed32Kind:
			dst = protowire.AppendTag(dst, num, protowire.Fixed32Type)
			dst = protowire.AppendFixed32(dst, uint32(v.i))
		case protoreflect.Sfixed64Kind, protoreflect.Fixed64Kind:
			dst = protowire.AppendTag(dst, num, protowire.Fixed64Type)
			dst = protowire.AppendFixed64(dst, uint64(v.i))
		default: // int32, int64, uint32, uint64
			dst = protowire.AppendTag(dst, num, protowire.VarintType)
			dst = protowire.AppendVarint(dst, uint64(v.i))
		}
	}
	return dst, nil
}
