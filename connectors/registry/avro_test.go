package registry

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/memory"
	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/pheromone-go/pheromone/engine"
	"github.com/pheromone-go/pheromone/engine/app"
)

const clickV1 = `{"type":"record","name":"Click","namespace":"shop","fields":[
 {"name":"id","type":"long"},
 {"name":"user","type":"string"},
 {"name":"ts","type":{"type":"long","logicalType":"timestamp-millis"}},
 {"name":"amount","type":["null","double"],"default":null},
 {"name":"kind","type":{"type":"enum","name":"Kind","symbols":["VIEW","BUY"]}},
 {"name":"tags","type":{"type":"array","items":"string"}},
 {"name":"price","type":{"type":"bytes","logicalType":"decimal","precision":9,"scale":2}},
 {"name":"where","type":{"type":"record","name":"Where","fields":[{"name":"city","type":"string"},{"name":"zip","type":["null","int"],"default":null}]}},
 {"name":"raw","type":"bytes"}]}`

// v2 drops user and adds a field: a compatible change.
const clickV2 = `{"type":"record","name":"Click","namespace":"shop","fields":[
 {"name":"id","type":"long"},
 {"name":"ts","type":{"type":"long","logicalType":"timestamp-micros"}},
 {"name":"amount","type":["null","double"],"default":null},
 {"name":"kind","type":{"type":"enum","name":"Kind","symbols":["VIEW","BUY","RETURN"]}},
 {"name":"tags","type":{"type":"array","items":"string"}},
 {"name":"price","type":{"type":"bytes","logicalType":"decimal","precision":9,"scale":2}},
 {"name":"where","type":{"type":"record","name":"Where","fields":[{"name":"city","type":"string"},{"name":"zip","type":["null","int"],"default":null}]}},
 {"name":"raw","type":"bytes"},
 {"name":"coupon","type":["null","string"],"default":null}]}`

// v3 makes id a string: records written with it cannot fill the columns.
const clickV3 = `{"type":"record","name":"Click","namespace":"shop","fields":[{"name":"id","type":"string"}]}`

func wireRecord(t *testing.T, id int, schema string, v any) []byte {
	t.Helper()
	s, err := parseAvro(schema)
	if err != nil {
		t.Fatal(err)
	}
	body, err := avro.Marshal(s, v)
	if err != nil {
		t.Fatal(err)
	}
	return append(binary.BigEndian.AppendUint32([]byte{0}, uint32(id)), body...)
}

func register(t *testing.T, e *Embedded, subject, text string, typ sr.SchemaType) int {
	t.Helper()
	id, _, err := e.reg.RegisterSchema(subject, sr.Schema{Schema: text, Type: typ})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestAvroSourceDecodesEveryVersion: a source's columns come from the
// subject's latest schema (nested records flattened, enums as strings,
// arrays as JSON, decimals as numbers, timestamps in milliseconds);
// records written with an older or newer compatible schema decode by
// field name; an incompatible schema, an unknown id, a wrong magic byte and
// a body that does not match its schema are bad records with their
// reasons, and leave no partial row; a registry that does not answer is
// not a bad record but ErrUnavailable.
func TestAvroSourceDecodesEveryVersion(t *testing.T) {
	e, err := StartEmbedded("127.0.0.1:0", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	id1 := register(t, e, "clicks-value", clickV1, sr.TypeAvro)
	cl, err := NewClient(e.URL(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	a := &app.App{}
	src := &app.Source{Name: "clicks", Topic: "clicks", Format: Avro, Registry: &app.Subject{}, Key: "user", MaxRecordBytes: 1 << 20}
	kinds := Kinds(func(*app.App) (*Client, error) { return cl, nil })
	cols, err := kinds[0].Columns(a, src)
	if err != nil {
		t.Fatal(err)
	}
	want := "id:int64 user:string ts:timestamp amount:float64 kind:string tags:string price:float64 where_city:string where_zip:int64 raw:bytes"
	if got := fmtColumns(cols); got != want {
		t.Fatalf("columns\n got %s\nwant %s", got, want)
	}
	src.Schema = cols
	src.Key = "id"
	id2 := register(t, e, "clicks-value", clickV2, sr.TypeAvro)
	id3 := register(t, e, "clicks-other", clickV3, sr.TypeAvro)
	ts := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	v1 := map[string]any{"id": int64(1), "user": "ann", "ts": ts, "amount": 2.5, "kind": "BUY", "tags": []any{"a", "b"},
		"price": mustRat("12.34"), "where": map[string]any{"city": "Oslo", "zip": 150}, "raw": []byte{0, 1}}
	v2 := map[string]any{"id": int64(2), "ts": ts.Add(time.Second), "amount": nil, "kind": "RETURN", "tags": []any{},
		"price": mustRat("-0.5"), "where": map[string]any{"city": "Rome", "zip": nil}, "raw": []byte{}, "coupon": "X"}

	d, err := New(cl).Wire()[Avro].NewDecoder(src)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Release()
	d.Reserve(8)
	good1, good2 := wireRecord(t, id1, clickV1, v1), wireRecord(t, id2, clickV2, v2)
	cases := []struct {
		value  []byte
		reason string
		msg    string
	}{
		{good1, "", ""},
		{wireRecord(t, id3, clickV3, map[string]any{"id": "x"}), engine.ReasonSchema, "field id is string in the record's schema, but the source's column is int64"},
		{append([]byte{0, 0, 0, 0, 99}, good1[5:]...), engine.ReasonSchema, "schema id 99 is not in the registry"},
		{append([]byte{1}, good1[1:]...), engine.ReasonDecode, "magic byte 1"},
		{good1[:len(good1)-3], engine.ReasonDecode, "does not match its schema"},
		{[]byte{0, 0}, engine.ReasonDecode, "fewer than its 5-byte header"},
		{good2, "", ""},
	}
	for i, c := range cases {
		err := d.Append(&engine.Record{Value: c.value})
		var br *engine.BadRecord
		switch {
		case c.reason == "" && err != nil:
			t.Fatalf("record %d: %v", i, err)
		case c.reason != "" && (!errors.As(err, &br) || br.Reason != c.reason || !strings.Contains(err.Error(), c.msg)):
			t.Fatalf("record %d: got %v, want %s: %s", i, err, c.reason, c.msg)
		}
	}
	rec := d.NewRecord()
	defer rec.Release()
	got := rows(rec)
	wantRows := []string{
		fmt.Sprintf(`1|ann|%d|2.5|BUY|["a","b"]|12.34|Oslo|150|[0 1]`, ts.UnixMilli()),
		fmt.Sprintf(`2|(null)|%d|(null)|RETURN|[]|-0.5|Rome|(null)|[]`, ts.Add(time.Second).UnixMilli()),
	}
	if strings.Join(got, "\n") != strings.Join(wantRows, "\n") {
		t.Fatalf("rows\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(wantRows, "\n"))
	}

	// The registry goes away: a record of a schema not seen yet is not
	// bad, it waits.
	e.Close()
	id4 := id2 + 10
	err = d.Append(&engine.Record{Value: append(binary.BigEndian.AppendUint32([]byte{0}, uint32(id4)), good1[5:]...)})
	var br *engine.BadRecord
	if errors.As(err, &br) || !errors.Is(err, engine.ErrUnavailable) {
		t.Fatalf("registry down: got %v", err)
	}
	// A schema it has already seen still decodes.
	if err := d.Append(&engine.Record{Value: good1}); err != nil {
		t.Fatalf("a known schema with the registry down: %v", err)
	}
	d.NewRecord().Release()
}

func mustRat(s string) any {
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		panic(s)
	}
	return r
}

func fmtColumns(cols []app.Column) string {
	var b []string
	for _, c := range cols {
		b = append(b, c.Name+":"+c.Type)
	}
	return strings.Join(b, " ")
}

// rows renders rec's rows as col|col|..., (null) for nulls.
func rows(rec arrow.Record) []string {
	var out []string
	for i := 0; i < int(rec.NumRows()); i++ {
		var cells []string
		for _, col := range rec.Columns() {
			if col.IsNull(i) {
				cells = append(cells, "(null)")
				continue
			}
			switch c := col.(type) {
			case *array.Timestamp:
				cells = append(cells, fmt.Sprint(int64(c.Value(i))))
			case *array.Binary:
				cells = append(cells, fmt.Sprint(c.Value(i)))
			default:
				cells = append(cells, col.ValueStr(i))
			}
		}
		out = append(out, strings.Join(cells, "|"))
	}
	return out
}

// TestAvroSinkRegistersAndEncodes: a sink derives its Avro schema from the
// Arrow output (nullable fields, timestamp-millis), registers it under
// <topic>-value once, and writes records an independent decoder (hamba's
// own, by the registered schema) reads back exactly; register: false
// writes by the subject's latest schema and refuses an output that lacks
// one of its required fields.
func TestAvroSinkRegistersAndEncodes(t *testing.T) {
	e, err := StartEmbedded("127.0.0.1:0", "")
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	cl, _ := NewClient(e.URL(), nil, nil)
	sink := &app.Sink{Name: "per-user", Topic: "out", Format: Avro, Registry: &app.Subject{}}
	enc, err := New(cl).Wire()[Avro].NewEncoder(sink)
	if err != nil {
		t.Fatal(err)
	}
	schema := arrow.NewSchema([]arrow.Field{{Name: "user", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "n", Type: arrow.PrimitiveTypes.Int64, Nullable: true}, {Name: "avg", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
		{Name: "at", Type: arrow.FixedWidthTypes.Timestamp_ms, Nullable: true}, {Name: "ok", Type: arrow.FixedWidthTypes.Boolean, Nullable: true}}, nil)
	b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	defer b.Release()
	b.Field(0).(*array.StringBuilder).AppendValues([]string{"ann", "bob"}, nil)
	b.Field(1).(*array.Int64Builder).AppendValues([]int64{3, 4}, nil)
	b.Field(2).(*array.Float64Builder).AppendValues([]float64{1.5, 0}, []bool{true, false})
	b.Field(3).(*array.TimestampBuilder).AppendValues([]arrow.Timestamp{1700000000000, 1700000000001}, nil)
	b.Field(4).(*array.BooleanBuilder).AppendValues([]bool{true, false}, nil)
	rec := b.NewRecord()
	defer rec.Release()
	if _, err := enc.AppendRow(nil, rec, 0); err == nil {
		t.Fatal("an unprepared schema was encoded")
	}
	if err := enc.Prepare(rec.Schema()); err != nil {
		t.Fatal(err)
	}
	if err := enc.Prepare(rec.Schema()); err != nil {
		t.Fatal(err)
	}
	ss, ok := e.reg.GetSchema("out-value", 1)
	if !ok {
		t.Fatal("nothing registered under out-value")
	}
	if _, ok := e.reg.GetSchema("out-value", 2); ok {
		t.Fatal("the same schema was registered twice")
	}
	reader, err := parseAvro(ss.Schema.Schema)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for i := 0; i < 2; i++ {
		v, err := enc.AppendRow(nil, rec, i)
		if err != nil {
			t.Fatal(err)
		}
		if v[0] != 0 || int(binary.BigEndian.Uint32(v[1:5])) != ss.ID {
			t.Fatalf("header % x, want id %d", v[:5], ss.ID)
		}
		var m map[string]any
		if err := avro.Unmarshal(reader, v[5:], &m); err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%v %v %v %v %v", m["user"], m["n"], m["avg"], m["at"].(time.Time).UnixMilli(), m["ok"]))
	}
	if want := "ann 3 1.5 1700000000000 true|bob 4 <nil> 1700000000001 false"; strings.Join(got, "|") != want {
		t.Fatalf("decoded %q\nwant    %q", strings.Join(got, "|"), want)
	}

	// register: false: the subject's latest schema decides.
	no := false
	fixed := &app.Sink{Name: "fixed", Topic: "fixed", Format: Avro, Registry: &app.Subject{Register: &no}}
	register(t, e, "fixed-value", `{"type":"record","name":"F","fields":[{"name":"user","type":"string"},{"name":"missing","type":"long"}]}`, sr.TypeAvro)
	enc2, _ := New(cl).Wire()[Avro].NewEncoder(fixed)
	if err := enc2.Prepare(rec.Schema()); err == nil || !strings.Contains(err.Error(), "field missing is not nullable") {
		t.Fatalf("an output without a required field: %v", err)
	}
}
