package builtin

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow/go/v15/arrow"

	"github.com/pheromone-go/pheromone/engine/app"
	"github.com/pheromone-go/pheromone/engine/codec"
	"github.com/pheromone-go/pheromone/engine/fn"
	"github.com/pheromone-go/pheromone/triggers"
)

const fnApp = `
app: fns
sources:
  - name: in
    topic: in
    schema:
      - {name: id, type: int64}
      - {name: user, type: string}
      - {name: amount, type: float64}
      - {name: ts, type: timestamp}
    bucket: in
buckets: [{name: in}]
triggers:
  - {name: t1, bucket: in, primitive: immediate, function: shape}
  - {name: t2, bucket: in, primitive: by_time, window: 1m, function: stats}
  - {name: t3, bucket: in, primitive: immediate, function: keep}
  - {name: t4, bucket: in, primitive: immediate, function: words}
  - {name: t5, bucket: in, primitive: immediate, function: split_by_amount}
  - {name: t6, bucket: in, primitive: immediate, function: by_user}
functions:
  - name: shape
    kind: project
    columns:
      - {name: user}
      - {name: who, from: id}
      - {name: cents, expr: "int(amount * 100)"}
      - {name: big, expr: "amount > 10"}
    outputs: [out]
  - name: stats
    kind: aggregate
    group_by: [user]
    aggregates:
      - {name: n, op: count}
      - {name: n_amount, op: count, column: amount}
      - {name: sum, op: sum, column: amount}
      - {name: sum_id, op: sum, column: id}
      - {name: lo, op: min, column: amount}
      - {name: hi, op: max, column: id}
      - {name: avg, op: avg, column: amount}
      - {name: first_ts, op: min, column: ts}
      - {name: ids, op: count_distinct, column: id}
      - {name: top, op: top_k, column: amount, k: 1}
    outputs: [out]
  - {name: keep, kind: filter, expr: "amount > 10 or user == 'zed'", outputs: [out]}
  - {name: words, kind: split, column: user, as: part, separator: "n", outputs: [out]}
  - name: split_by_amount
    kind: route
    routes: [{when: "amount > 10", to: big}, {when: "amount > 0", to: small}]
    default: other
    outputs: [big, small, other]
  - {name: by_user, kind: sort, by: user, outputs: [out]}
sinks: [{name: out, topic: out}, {name: big, topic: big}, {name: small, topic: small}, {name: other, topic: other}]
`

type sink struct{ rows []string }

func (s *sink) EmitTo(_ string, rec arrow.Record) error { return s.Emit(rec) }

func (s *sink) Emit(rec arrow.Record) error {
	var enc codec.JSONEncoder
	for i := 0; i < int(rec.NumRows()); i++ {
		s.rows = append(s.rows, string(enc.AppendRow(nil, rec, i)))
	}
	rec.Release()
	return nil
}

func run(t *testing.T, name string, in fn.Input) []string {
	t.Helper()
	a, err := app.Parse([]byte(fnApp))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Validate(); err != nil {
		t.Fatal(err)
	}
	f, err := Build(a.Function(name), nil)
	if err != nil {
		t.Fatal(err)
	}
	var out sink
	if err := f.Invoke(context.Background(), in, &out); err != nil {
		t.Fatal(err)
	}
	return out.rows
}

// input decodes JSON rows into two records, to check functions that span
// several input batches.
func input(t *testing.T, rows ...string) []arrow.Record {
	t.Helper()
	a, _ := app.Parse([]byte(fnApp))
	_ = a.Validate()
	d, err := codec.NewJSONDecoder(a.Sources[0].ArrowSchema())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Release()
	var recs []arrow.Record
	for i, r := range rows {
		if err := d.Append([]byte(r)); err != nil {
			t.Fatal(err)
		}
		if i == len(rows)/2 {
			recs = append(recs, d.NewRecord())
		}
	}
	recs = append(recs, d.NewRecord())
	t.Cleanup(func() {
		for _, r := range recs {
			r.Release()
		}
	})
	return recs
}

var rows = []string{
	`{"id":1,"user":"ann","amount":10.5,"ts":3000}`,
	`{"id":2,"user":"bob","amount":null,"ts":1000}`,
	`{"id":3,"user":"ann","amount":2,"ts":2000}`,
	`{"id":4,"user":null,"amount":20}`,
	`{"id":5,"user":"zed"}`,
}

func TestProject(t *testing.T) {
	got := run(t, "shape", fn.Input{Records: input(t, rows...)})
	want := []string{
		`{"user":"ann","who":1,"cents":1050,"big":true}`,
		`{"user":"bob","who":2,"cents":null,"big":null}`,
		`{"user":"ann","who":3,"cents":200,"big":false}`,
		`{"user":null,"who":4,"cents":2000,"big":true}`,
		`{"user":"zed","who":5,"cents":null,"big":null}`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestAggregate(t *testing.T) {
	w := triggers.Window{Start: time.Unix(60, 0), End: time.Unix(120, 0)}
	got := run(t, "stats", fn.Input{Records: input(t, rows...), Window: w})
	ws := `"window_start":"1970-01-01T00:01:00.000Z","window_end":"1970-01-01T00:02:00.000Z"`
	want := []string{
		`{"user":"ann",` + ws + `,"n":2,"n_amount":2,"sum":12.5,"sum_id":4,"lo":2,"hi":3,"avg":6.25,"first_ts":"1970-01-01T00:00:02.000Z","ids":2,"top":["10.5"]}`,
		`{"user":"bob",` + ws + `,"n":1,"n_amount":0,"sum":null,"sum_id":2,"lo":null,"hi":2,"avg":null,"first_ts":"1970-01-01T00:00:01.000Z","ids":1,"top":[]}`,
		`{"user":null,` + ws + `,"n":1,"n_amount":1,"sum":20,"sum_id":4,"lo":20,"hi":4,"avg":20,"first_ts":null,"ids":1,"top":["20"]}`,
		`{"user":"zed",` + ws + `,"n":1,"n_amount":0,"sum":null,"sum_id":5,"lo":null,"hi":5,"avg":null,"first_ts":null,"ids":1,"top":[]}`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if got := run(t, "stats", fn.Input{}); len(got) != 0 {
		t.Errorf("aggregate of nothing emitted %q", got)
	}
}

func TestFilterDropsNullsAndKeepsOrder(t *testing.T) {
	got := run(t, "keep", fn.Input{Records: input(t, rows...)})
	want := []string{
		`{"id":1,"user":"ann","amount":10.5,"ts":"1970-01-01T00:00:03.000Z"}`,
		`{"id":4,"user":null,"amount":20,"ts":null}`,
		`{"id":5,"user":"zed","amount":null,"ts":null}`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestSplit(t *testing.T) {
	got := run(t, "words", fn.Input{Records: input(t,
		`{"id":1,"user":"anna"}`, `{"id":2,"user":"nnn"}`, `{"id":3}`, `{"id":4,"user":"bob"}`)})
	want := []string{
		`{"id":1,"amount":null,"ts":null,"part":"a"}`,
		`{"id":1,"amount":null,"ts":null,"part":"a"}`,
		`{"id":2,"amount":null,"ts":null,"part":null}`,
		`{"id":3,"amount":null,"ts":null,"part":null}`,
		`{"id":4,"amount":null,"ts":null,"part":"bob"}`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

type routed struct{ rows []string }

func (r *routed) Emit(rec arrow.Record) error { return r.EmitTo("*", rec) }
func (r *routed) EmitTo(to string, rec arrow.Record) error {
	var enc codec.JSONEncoder
	for i := 0; i < int(rec.NumRows()); i++ {
		r.rows = append(r.rows, to+" "+string(enc.AppendRow(nil, rec, i)))
	}
	rec.Release()
	return nil
}

func TestRoute(t *testing.T) {
	a, _ := app.Parse([]byte(fnApp))
	if err := a.Validate(); err != nil {
		t.Fatal(err)
	}
	f, err := Build(a.Function("split_by_amount"), nil)
	if err != nil {
		t.Fatal(err)
	}
	var out routed
	if err := f.Invoke(context.Background(), fn.Input{Records: input(t, rows...)}, &out); err != nil {
		t.Fatal(err)
	}
	// The input arrives as two records (rows 1-3, rows 4-5); each is split
	// per output in first-use order.
	want := []string{
		`big {"id":1,"user":"ann","amount":10.5,"ts":"1970-01-01T00:00:03.000Z"}`,
		`other {"id":2,"user":"bob","amount":null,"ts":"1970-01-01T00:00:01.000Z"}`,
		`small {"id":3,"user":"ann","amount":2,"ts":"1970-01-01T00:00:02.000Z"}`,
		`big {"id":4,"user":null,"amount":20,"ts":null}`,
		`other {"id":5,"user":"zed","amount":null,"ts":null}`,
	}
	if strings.Join(out.rows, "\n") != strings.Join(want, "\n") {
		t.Errorf("got:\n%s\nwant:\n%s", strings.Join(out.rows, "\n"), strings.Join(want, "\n"))
	}
}

// TestSort orders the rows of both input batches by user: nulls first,
// equal users in input order.
func TestSort(t *testing.T) {
	got := run(t, "by_user", fn.Input{Records: input(t, rows...)})
	want := []string{
		`{"id":4,"user":null,"amount":20,"ts":null}`,
		`{"id":1,"user":"ann","amount":10.5,"ts":"1970-01-01T00:00:03.000Z"}`,
		`{"id":3,"user":"ann","amount":2,"ts":"1970-01-01T00:00:02.000Z"}`,
		`{"id":2,"user":"bob","amount":null,"ts":"1970-01-01T00:00:01.000Z"}`,
		`{"id":5,"user":"zed","amount":null,"ts":null}`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("sorted:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// Without nulls the keys are compared as strings: the same order.
	got = run(t, "by_user", fn.Input{Records: input(t, rows[4], rows[0], rows[1], rows[2])})
	want = []string{want[1], want[2], want[3], want[4]}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("sorted without nulls:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
