package builtin

import (
	"context"
	"fmt"
	"testing"

	"github.com/apache/arrow/go/v15/arrow"

	"github.com/pheromone-go/pheromone/engine/app"
	"github.com/pheromone-go/pheromone/engine/codec"
	"github.com/pheromone-go/pheromone/engine/fn"
)

func statsFunction(tb testing.TB) (*aggregate, *app.App) {
	tb.Helper()
	a, err := app.Parse([]byte(fnApp))
	if err == nil {
		err = a.Validate()
	}
	if err != nil {
		tb.Fatal(err)
	}
	f, err := Build(a.Function("stats"), nil)
	if err != nil {
		tb.Fatal(err)
	}
	return f.(*aggregate), a
}

func statsRows(tb testing.TB, a *app.App, n int) arrow.Record {
	tb.Helper()
	d, err := codec.NewJSONDecoder(a.Sources[0].ArrowSchema())
	if err != nil {
		tb.Fatal(err)
	}
	defer d.Release()
	for i := 0; i < n; i++ {
		row := fmt.Sprintf(`{"id":%d,"user":"u%d","amount":%d.25,"ts":%d}`, i, i%50, i%97, 1000+i)
		if i%11 == 0 {
			row = fmt.Sprintf(`{"id":%d,"user":"u%d","ts":%d}`, i, i%50, 1000+i)
		}
		if err := d.Append([]byte(row)); err != nil {
			tb.Fatal(err)
		}
	}
	return d.NewRecord()
}

// TestPartialSurvivesItsDurableForm: a partial folded in three puts,
// written and read back between them (as a restart does), emits what
// Invoke over all the rows emits.
func TestPartialSurvivesItsDurableForm(t *testing.T) {
	agg, a := statsFunction(t)
	rec := statsRows(t, a, 300)
	defer rec.Release()
	var want sink
	if err := agg.Invoke(context.Background(), fn.Input{Records: []arrow.Record{rec}}, &want); err != nil {
		t.Fatal(err)
	}
	p := agg.NewPartial()
	for _, part := range [][2]int{{0, 100}, {100, 101}, {101, 300}} {
		rows := make([]int, 0, part[1]-part[0])
		for r := part[0]; r < part[1]; r++ {
			rows = append(rows, r)
		}
		if err := p.Fold(rec, 0, rows); err != nil {
			t.Fatal(err)
		}
		var err error
		if p, err = agg.UnmarshalPartial(p.AppendBinary(nil)); err != nil {
			t.Fatal(err)
		}
	}
	var got sink
	if err := p.Emit(fn.Input{}, &got); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got.rows) != fmt.Sprint(want.rows) {
		t.Fatalf("partial:\n%s\ninvoke:\n%s", got.rows, want.rows)
	}
	if _, err := agg.UnmarshalPartial([]byte{1, 0, 5}); err == nil {
		t.Fatal("a truncated partial read without error")
	}
}

// BenchmarkFold: folding 1000 objects into a window's partial aggregate
// (what an incremental window does per put) against Invoke over the same
// 1000 objects (what the window's firing did), same run.
func BenchmarkFold(b *testing.B) {
	agg, a := statsFunction(b)
	rec := statsRows(b, a, 1000)
	defer rec.Release()
	rows := make([]int, rec.NumRows())
	for i := range rows {
		rows[i] = i
	}
	b.Run("fold", func(b *testing.B) {
		b.ReportAllocs()
		p := agg.NewPartial()
		for i := 0; i < b.N; i++ {
			if err := p.Fold(rec, 0, rows); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("invoke", func(b *testing.B) {
		b.ReportAllocs()
		in := fn.Input{Records: []arrow.Record{rec}}
		for i := 0; i < b.N; i++ {
			var out discard
			if err := agg.Invoke(context.Background(), in, &out); err != nil {
				b.Fatal(err)
			}
		}
	})
}

type discard struct{}

func (discard) Emit(rec arrow.Record) error           { rec.Release(); return nil }
func (discard) EmitTo(_ string, r arrow.Record) error { r.Release(); return nil }
