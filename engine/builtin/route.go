package builtin

import (
	"context"
	"fmt"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"

	"github.com/pheromone-go/pheromone/engine/app"
	"github.com/pheromone-go/pheromone/engine/expr"
	"github.com/pheromone-go/pheromone/engine/fn"
	"github.com/pheromone-go/pheromone/internal/arrowx"
)

// route sends each row to one output: the one named by a column (by), or
// the first route whose condition holds; rows with no destination go to the
// default output, or nowhere.
type route struct {
	by      string
	whens   []*expr.Expr
	tos     []string
	def     string
	outputs map[string]bool
}

func newRoute(f *app.Function) (*route, error) {
	r := &route{by: f.By, def: f.Default, outputs: map[string]bool{}}
	for _, o := range f.Outputs {
		r.outputs[o] = true
	}
	for _, rt := range f.Routes {
		e, err := expr.Compile(rt.When, f.InputSchema())
		if err != nil {
			return nil, fmt.Errorf("builtin: %s: %w", f.Name, err)
		}
		r.whens = append(r.whens, e)
		r.tos = append(r.tos, rt.To)
	}
	return r, nil
}

func (r *route) Invoke(_ context.Context, in fn.Input, out fn.Output) error {
	for _, rec := range in.Records {
		dest, err := r.destinations(rec)
		if err != nil {
			return err
		}
		// Rows per output, in row order; outputs in first-use order.
		var order []string
		rows := map[string][]int{}
		for i, d := range dest {
			if d == "" {
				continue
			}
			if _, ok := rows[d]; !ok {
				order = append(order, d)
			}
			rows[d] = append(rows[d], i)
		}
		for _, d := range order {
			var part arrow.Record
			if len(rows[d]) == int(rec.NumRows()) {
				rec.Retain()
				part = rec
			} else {
				part = arrowx.Take(rec, rows[d])
			}
			if err := out.EmitTo(d, part); err != nil {
				return err
			}
		}
	}
	return nil
}

// Route implements fn.Router.
func (r *route) Route(_ context.Context, in fn.Input) ([][]string, error) {
	out := make([][]string, len(in.Records))
	for i, rec := range in.Records {
		dest, err := r.destinations(rec)
		if err != nil {
			return nil, err
		}
		out[i] = dest
	}
	return out, nil
}

func (r *route) destinations(rec arrow.Record) ([]string, error) {
	n := int(rec.NumRows())
	dest := make([]string, n)
	if r.by != "" {
		col := rec.Column(rec.Schema().FieldIndices(r.by)[0]).(*array.String)
		for i := range dest {
			if col.IsValid(i) && r.outputs[col.Value(i)] {
				dest[i] = col.Value(i)
			} else {
				dest[i] = r.def
			}
		}
		return dest, nil
	}
	for k, e := range r.whens {
		v, err := e.Eval(rec)
		if err != nil {
			return nil, err
		}
		for i := range dest {
			if dest[i] == "" && v.B[i] && v.IsValid(i) {
				dest[i] = r.tos[k]
			}
		}
	}
	for i := range dest {
		if dest[i] == "" {
			dest[i] = r.def
		}
	}
	return dest, nil
}
