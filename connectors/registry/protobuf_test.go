package registry

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/memory"
	"github.com/twmb/franz-go/pkg/sr"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/pheromone-go/pheromone/engine"
	"github.com/pheromone-go/pheromone/engine/app"
)

const orderProto = `syntax = "proto3";
package shop;
import "google/protobuf/timestamp.proto";
message Order {
  int64 id = 1;
  string user = 2;
  optional double amount = 3;
  enum Kind { VIEW = 0; BUY = 1; }
  Kind kind = 4;
  repeated string tags = 5;
  google.protobuf.Timestamp at = 6;
  message Where { string city = 1; }
  Where where = 7;
}
message Other { string id = 1; }
`

// protoRecord encodes an Order with the protobuf library's own dynamic
// messages (not the sink's encoder), in the wire format with index path.
func protoRecord(t *testing.T, id int, text string, path []int, set func(m *dynamicpb.Message, f func(string) protoreflect.FieldDescriptor)) []byte {
	t.Helper()
	fd, err := compileProto(text)
	if err != nil {
		t.Fatal(err)
	}
	md, err := messageAt(fd, path)
	if err != nil {
		t.Fatal(err)
	}
	m := dynamicpb.NewMessage(md)
	set(m, func(n string) protoreflect.FieldDescriptor { return md.Fields().ByName(protoreflect.Name(n)) })
	body, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var h sr.ConfluentHeader
	hdr, _ := h.AppendEncode(nil, id, path)
	return append(hdr, body...)
}

// TestProtobufSourceAndSink: a protobuf source's columns come from the
// message (nested flattened, enum names, repeated as JSON, Timestamp as
// milliseconds, optional fields null when absent); the message index
// picks the writer's message, and a message that does not fit is a
// schema dead letter; a protobuf sink derives a proto3 schema, registers
// it and writes messages the protobuf library reads back.
func TestProtobufSourceAndSink(t *testing.T) {
	e, err := StartEmbedded("127.0.0.1:0", "")
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	id := register(t, e, "orders-value", orderProto, sr.TypeProtobuf)
	cl, _ := NewClient(e.URL(), nil, nil)
	src := &app.Source{Name: "orders", Topic: "orders", Format: Protobuf, Registry: &app.Subject{}, MaxRecordBytes: 1 << 20}
	var pk app.FormatKind
	for _, k := range Kinds(func(*app.App) (*Client, error) { return cl, nil }) {
		if k.Name == Protobuf {
			pk = k
		}
	}
	cols, err := pk.Columns(&app.App{}, src)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := fmtColumns(cols), "id:int64 user:string amount:float64 kind:string tags:string at:timestamp where_city:string"; got != want {
		t.Fatalf("columns\n got %s\nwant %s", got, want)
	}
	src.Schema = cols
	d, err := New(cl).Wire()[Protobuf].NewDecoder(src)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Release()
	full := protoRecord(t, id, orderProto, []int{0}, func(m *dynamicpb.Message, f func(string) protoreflect.FieldDescriptor) {
		m.Set(f("id"), protoreflect.ValueOfInt64(7))
		m.Set(f("user"), protoreflect.ValueOfString("ann"))
		m.Set(f("amount"), protoreflect.ValueOfFloat64(2.5))
		m.Set(f("kind"), protoreflect.ValueOfEnum(1))
		l := m.Mutable(f("tags")).List()
		l.Append(protoreflect.ValueOfString("a"))
		l.Append(protoreflect.ValueOfString("b"))
		ts := m.Mutable(f("at")).Message()
		ts.Set(ts.Descriptor().Fields().ByName("seconds"), protoreflect.ValueOfInt64(1700000000))
		ts.Set(ts.Descriptor().Fields().ByName("nanos"), protoreflect.ValueOfInt32(5e6))
		w := m.Mutable(f("where")).Message()
		w.Set(w.Descriptor().Fields().ByName("city"), protoreflect.ValueOfString("Oslo"))
	})
	sparse := protoRecord(t, id, orderProto, []int{0}, func(m *dynamicpb.Message, f func(string) protoreflect.FieldDescriptor) {
		m.Set(f("id"), protoreflect.ValueOfInt64(8))
	})
	other := protoRecord(t, id, orderProto, []int{1}, func(m *dynamicpb.Message, f func(string) protoreflect.FieldDescriptor) {
		m.Set(f("id"), protoreflect.ValueOfString("x"))
	})
	for i, v := range [][]byte{full, sparse} {
		if err := d.Append(&engine.Record{Value: v}); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
	}
	var br *engine.BadRecord
	if err := d.Append(&engine.Record{Value: other}); !errors.As(err, &br) || br.Reason != engine.ReasonSchema || !strings.Contains(err.Error(), "field id is string") {
		t.Fatalf("another message of the file: %v", err)
	}
	if err := d.Append(&engine.Record{Value: append(append([]byte{}, full[:6]...), 0xff, 0xff)}); !errors.As(err, &br) || br.Reason != engine.ReasonDecode {
		t.Fatalf("a broken body: %v", err)
	}
	rec := d.NewRecord()
	defer rec.Release()
	want := `7|ann|2.5|BUY|["a","b"]|1700000000005|Oslo` + "\n" + `8||(null)|VIEW|[]|(null)|(null)`
	if got := strings.Join(rows(rec), "\n"); got != want {
		t.Fatalf("rows\n%s\nwant\n%s", got, want)
	}

	// The sink: derive, register, write; the library reads it back.
	sink := &app.Sink{Name: "out", Topic: "out", Format: Protobuf, Registry: &app.Subject{}}
	enc, _ := New(cl).Wire()[Protobuf].NewEncoder(sink)
	schema := arrow.NewSchema([]arrow.Field{{Name: "user", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "n", Type: arrow.PrimitiveTypes.Int64, Nullable: true}, {Name: "at", Type: arrow.FixedWidthTypes.Timestamp_ms, Nullable: true}}, nil)
	b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	defer b.Release()
	b.Field(0).(*array.StringBuilder).AppendValues([]string{"ann", ""}, []bool{true, false})
	b.Field(1).(*array.Int64Builder).AppendValues([]int64{-3, 4}, nil)
	b.Field(2).(*array.TimestampBuilder).AppendValues([]arrow.Timestamp{1700000000123, -1}, nil)
	out := b.NewRecord()
	defer out.Release()
	if err := enc.Prepare(out.Schema()); err != nil {
		t.Fatal(err)
	}
	ss, ok := e.reg.GetSchema("out-value", 1)
	if !ok || ss.Type != sr.TypeProtobuf {
		t.Fatalf("registered %+v", ss)
	}
	fd, err := compileProto(ss.Schema.Schema)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for i := 0; i < 2; i++ {
		v, err := enc.AppendRow(nil, out, i)
		if err != nil {
			t.Fatal(err)
		}
		if int(binary.BigEndian.Uint32(v[1:5])) != ss.ID || v[5] != 0 {
			t.Fatalf("header % x", v[:6])
		}
		m := dynamicpb.NewMessage(fd.Messages().Get(0))
		if err := proto.Unmarshal(v[6:], m); err != nil {
			t.Fatal(err)
		}
		fs := m.Descriptor().Fields()
		ts := m.Get(fs.ByName("at")).Message()
		got = append(got, fmt.Sprintf("%v %v %v %d.%09d", m.Has(fs.ByName("user")), m.Get(fs.ByName("user")), m.Get(fs.ByName("n")),
			ts.Get(ts.Descriptor().Fields().ByName("seconds")).Int(), ts.Get(ts.Descriptor().Fields().ByName("nanos")).Int()))
	}
	if want := "true ann -3 1700000000.123000000|false  4 -1.999000000"; strings.Join(got, "|") != want {
		t.Fatalf("read back %q, want %q", strings.Join(got, "|"), want)
	}
}
