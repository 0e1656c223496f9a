package codec

import (
	"fmt"
	"strings"
	"testing"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
)

var testSchema = arrow.NewSchema([]arrow.Field{
	{Name: "id", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
	{Name: "name", Type: arrow.BinaryTypes.String, Nullable: true},
	{Name: "score", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
	{Name: "ok", Type: arrow.FixedWidthTypes.Boolean, Nullable: true},
	{Name: "ts", Type: arrow.FixedWidthTypes.Timestamp_ms, Nullable: true},
}, nil)

func TestRoundTrip(t *testing.T) {
	d, err := NewJSONDecoder(testSchema, "id")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Release()
	in := []string{
		`{"id":1,"name":"plain","score":1.5,"ok":true,"ts":1700000000123}`,
		` { "ts" : "2026-01-02T03:04:05.5Z", "id" : -7 , "extra": {"deep": [1, {"x": null}]}, "name": "tab\tquote\" uni\u00e9 \ud83d\ude00 |pipe\u0000nul" } `,
		`{"id":3e0,"score":2,"ok":false,"name":null}`,
	}
	for _, s := range in {
		if err := d.Append([]byte(s)); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	rec := d.NewRecord()
	defer rec.Release()
	var enc JSONEncoder
	var got []string
	for i := 0; i < int(rec.NumRows()); i++ {
		got = append(got, string(enc.AppendRow(nil, rec, i)))
	}
	want := []string{
		`{"id":1,"name":"plain","score":1.5,"ok":true,"ts":"2023-11-14T22:13:20.123Z"}`,
		`{"id":-7,"name":"tab\tquote\" unié 😀 |pipe\u0000nul","score":null,"ok":null,"ts":"2026-01-02T03:04:05.500Z"}`,
		`{"id":3,"name":null,"score":2,"ok":false,"ts":null}`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestBadRecordsAppendNothing(t *testing.T) {
	d, _ := NewJSONDecoder(testSchema, "id")
	defer d.Release()
	for _, s := range []string{
		``, `null`, `[]`, `{`, `{"id":1,}`, `{"id":1}x`, `{"id":01}`, `{"id":1.5}`,
		`{"id":99999999999999999999}`, `{"name":"x"}`, `{"id":1,"name":5}`, `{"id":1,"ok":"yes"}`,
		`{"id":1,"ts":"yesterday"}`, `{"id":1,"name":"\x"}`, `{"id":1,"name":"a` + "\n" + `"}`,
		`{"id":1,"score":-}`, `{"id":{"a":1}}`, strings.Repeat("[", 100),
		"{\"id\":1,\"name\":\"caf\xc3\"}", "{\"id\":1,\"name\":\"\xff\"}",
	} {
		if err := d.Append([]byte(s)); err == nil {
			t.Errorf("%q: decoded, want an error", s)
		} else if !IsDecodeError(err) {
			t.Errorf("%q: error %v is not a *DecodeError", s, err)
		}
	}
	if d.Rows() != 0 {
		t.Fatalf("bad records appended %d rows", d.Rows())
	}
	rec := d.NewRecord()
	defer rec.Release()
	if rec.NumRows() != 0 {
		t.Fatal("record not empty")
	}
}

// FuzzDecode: any input either decodes to a row that re-encodes to JSON the
// decoder accepts again with the same result, or fails with a *DecodeError;
// it never panics and never appends a partial row.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"id":1,"name":"a\u00e9","score":1e3,"ok":true,"ts":5}`))
	f.Add([]byte(`{"id":-0,"x":[1,[2,{"y":null}]]}`))
	f.Add([]byte(`{"id":1,"name":"\ud800"}`))
	f.Add([]byte(`{"id":1,"name":"\u0001\u001f\"\\<>&\u2028","ts":-1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, _ := NewJSONDecoder(testSchema, "id")
		defer d.Release()
		err := d.Append(b)
		if err != nil {
			if !IsDecodeError(err) {
				t.Fatalf("error type %T", err)
			}
			if d.Rows() != 0 {
				t.Fatal("partial row appended")
			}
			return
		}
		rec := d.NewRecord()
		defer rec.Release()
		var enc JSONEncoder
		once := enc.AppendRow(nil, rec, 0)
		// The size check of sink records trusts RowBound not to undercount.
		if b, ok := RowBound(rec, 0); !ok || b < len(once) {
			t.Fatalf("RowBound %d (%v) < %d bytes of %s", b, ok, len(once), once)
		}
		if err := d.Append(once); err != nil {
			t.Fatalf("re-decoding %s: %v", once, err)
		}
		rec2 := d.NewRecord()
		defer rec2.Release()
		if twice := enc.AppendRow(nil, rec2, 0); string(twice) != string(once) {
			t.Fatalf("not stable:\n%s\n%s", once, twice)
		}
	})
}

func BenchmarkDecode(b *testing.B) {
	d, _ := NewJSONDecoder(testSchema, "id")
	defer d.Release()
	rec := []byte(`{"id":12345,"name":"some user name","score":17.25,"ok":true,"ts":1700000000123}`)
	b.ReportAllocs()
	b.SetBytes(int64(len(rec)))
	const batch = 1000
	for i := 0; i < b.N; i += batch {
		d.Reserve(batch)
		for j := 0; j < batch; j++ {
			if err := d.Append(rec); err != nil {
				b.Fatal(err)
			}
		}
		d.NewRecord().Release()
	}
}

// TestBytesAreBase64BothWays pins issue 11: a bytes column stored the JSON
// string as it came but wrote base64, so nothing round-tripped. Now base64
// goes in and comes out; anything else is a decode error.
func TestBytesAreBase64BothWays(t *testing.T) {
	schema := arrow.NewSchema([]arrow.Field{{Name: "b", Type: arrow.BinaryTypes.Binary, Nullable: true}}, nil)
	d, err := NewJSONDecoder(schema)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Release()
	if err := d.Append([]byte(`{"b":"AAEC/w=="}`)); err != nil {
		t.Fatal(err)
	}
	if err := d.Append([]byte(`{"b":"not base64!"}`)); err == nil || !strings.Contains(err.Error(), "want base64") {
		t.Errorf("bad base64: %v", err)
	}
	rec := d.NewRecord()
	defer rec.Release()
	if got := rec.Column(0).(*array.Binary).Value(0); string(got) != "\x00\x01\x02\xff" {
		t.Errorf("stored %q", got)
	}
	var enc JSONEncoder
	if got := string(enc.AppendRow(nil, rec, 0)); got != `{"b":"AAEC/w=="}` {
		t.Errorf("encoded %s", got)
	}
}

// The decoder remembers the order of the last object's fields; objects
// whose fields come in other orders, with unknown or escaped names, or
// fewer or more fields, decode the same as each on its own.
func TestFieldOrderChanges(t *testing.T) {
	in := []string{
		`{"id":1,"name":"a","score":1.5,"ok":true,"ts":1}`,
		`{"id":2,"name":"b","score":2.5,"ok":false,"ts":2}`,
		`{"ts":3,"ok":true,"score":3.5,"name":"c","id":3}`,
		`{"id":4,"x":0,"name":"d","y":[1],"score":4.5}`,
		`{"id":5,"name":"e","score":5.5,"ok":true,"ts":5}`,
		`{"i\u0064":6,"\u006eame":"f","x":1,"score":6.5,"ok":false,"ts":6,"z":null,"w":"",` + `"name":"g"}`,
		`{"id":7}`,
		`{"id":8,"name":"h","score":8.5,"ok":true,"ts":8}`,
	}
	var enc JSONEncoder
	together, _ := NewJSONDecoder(testSchema)
	defer together.Release()
	for _, s := range in {
		if err := together.Append([]byte(s)); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	rec := together.NewRecord()
	defer rec.Release()
	for i, s := range in {
		alone, _ := NewJSONDecoder(testSchema)
		if err := alone.Append([]byte(s)); err != nil {
			t.Fatal(err)
		}
		one := alone.NewRecord()
		want := string(enc.AppendRow(nil, one, 0))
		if got := string(enc.AppendRow(nil, rec, i)); got != want {
			t.Errorf("%s: got %s, want %s", s, got, want)
		}
		one.Release()
		alone.Release()
	}
}

// Nulls land in the right rows of every column type, whether a column's
// first null comes at its first row, after a few rows or after many.
func TestNullsInColumns(t *testing.T) {
	d, _ := NewJSONDecoder(testSchema)
	defer d.Release()
	const n = 37
	null := func(col, r int) bool {
		switch col {
		case 0:
			return r%3 == 0
		case 1:
			return r%5 == 4
		case 2:
			return r == 17
		case 3:
			return r%7 == 6
		}
		return false
	}
	for round := 0; round < 2; round++ { // the second record starts from fresh columns
		for r := 0; r < n; r++ {
			var fields []string
			for col, f := range []string{`"id":%d`, `"name":"n%d"`, `"score":%d.5`, `"ok":%t`, `"ts":%d`} {
				switch {
				case null(col, r) && r%2 == 0:
					fields = append(fields, strings.Split(f, ":")[0]+":null")
				case null(col, r):
					// missing
				case col == 3:
					fields = append(fields, fmt.Sprintf(f, r%2 == 0))
				default:
					fields = append(fields, fmt.Sprintf(f, r))
				}
			}
			if err := d.Append([]byte("{" + strings.Join(fields, ",") + "}")); err != nil {
				t.Fatal(err)
			}
		}
		rec := d.NewRecord()
		ids, names := rec.Column(0).(*array.Int64), rec.Column(1).(*array.String)
		scores, oks, tss := rec.Column(2).(*array.Float64), rec.Column(3).(*array.Boolean), rec.Column(4).(*array.Timestamp)
		for r := 0; r < n; r++ {
			for col := 0; col < 5; col++ {
				if got := rec.Column(col).IsNull(r); got != null(col, r) {
					t.Fatalf("round %d row %d column %d: null %v, want %v", round, r, col, got, null(col, r))
				}
			}
			if !null(0, r) && ids.Value(r) != int64(r) || !null(1, r) && names.Value(r) != fmt.Sprintf("n%d", r) ||
				!null(2, r) && scores.Value(r) != float64(r)+0.5 || !null(3, r) && oks.Value(r) != (r%2 == 0) || tss.Value(r) != arrow.Timestamp(r) {
				t.Fatalf("round %d row %d: wrong value", round, r)
			}
		}
		if nulls := rec.Column(4).NullN(); nulls != 0 {
			t.Errorf("ts: %d nulls", nulls)
		}
		rec.Release()
	}
}
