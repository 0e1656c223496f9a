// Package fntest runs a function in a unit test, without a node or a
// broker: rows in as JSON, rows out as JSON per output, with the check the
// engine makes of every emitted record against the declared schema.
//
//	in, _ := fntest.Records(schema, `{"user":"ann","amount":12.5}`)
//	out, err := fntest.Invoke(ctx, score, fn.Input{Records: in})
//	// out.Rows("") == []string{`{"user":"ann","score":0.8}`}
package fntest

import (
	"context"
	"fmt"
	"slices"

	"github.com/apache/arrow/go/v15/arrow"

	"github.com/pheromone-go/pheromone/engine/codec"
	"github.com/pheromone-go/pheromone/engine/fn"
	"github.com/pheromone-go/pheromone/internal/arrowx"
)

// Records decodes JSON rows (objects in schema, as a source would) into
// one record for fn.Input.Records; release it when done.
func Records(schema *arrow.Schema, rows ...string) ([]arrow.Record, error) {
	d, err := codec.NewJSONDecoder(schema)
	if err != nil {
		return nil, err
	}
	defer d.Release()
	for i, r := range rows {
		if err := d.Append([]byte(r)); err != nil {
			return nil, fmt.Errorf("fntest: row %d: %w", i, err)
		}
	}
	return []arrow.Record{d.NewRecord()}, nil
}

// Output is what a function emitted in one Invoke.
type Output struct {
	recs    []arrow.Record
	to      []string // "" for Emit (every output)
	dropped int
}

// Emit implements fn.Output.
func (o *Output) Emit(rec arrow.Record) error { return o.EmitTo("", rec) }

// EmitTo implements fn.Output.
func (o *Output) EmitTo(output string, rec arrow.Record) error {
	o.recs = append(o.recs, rec)
	o.to = append(o.to, output)
	return nil
}

// Dropped implements fn.Dropper.
func (o *Output) Dropped(n int) { o.dropped += n }

// Rows returns the rows emitted to output ("" for those emitted with Emit,
// to every output) as JSON, in the order they were emitted.
func (o *Output) Rows(output string) []string {
	var enc codec.JSONEncoder
	var out []string
	for i, rec := range o.recs {
		if o.to[i] != output {
			continue
		}
		for r := 0; r < int(rec.NumRows()); r++ {
			out = append(out, string(enc.AppendRow(nil, rec, r)))
		}
	}
	return out
}

// Outputs lists the outputs records were emitted to ("" for Emit).
func (o *Output) Outputs() []string {
	out := slices.Clone(o.to)
	slices.Sort(out)
	return slices.Compact(out)
}

// DroppedRows is how many input rows the function reported discarding.
func (o *Output) DroppedRows() int { return o.dropped }

// CheckSchema fails, as the engine would fail the invocation, when an
// emitted record does not match the schema declared for the function's
// output in the app file.
func (o *Output) CheckSchema(declared *arrow.Schema) error {
	for _, rec := range o.recs {
		if col, problem := arrowx.SchemaDiff(rec.Schema(), declared); col != "" {
			return fmt.Errorf("fntest: column %q %s", col, problem)
		}
	}
	return nil
}

// Release releases the emitted records.
func (o *Output) Release() {
	for _, r := range o.recs {
		r.Release()
	}
	o.recs, o.to = nil, nil
}

// Invoke calls f with in, as the engine would, and returns what it
// emitted. A panic in f is returned as an error. The caller releases the
// output (and in's records).
func Invoke(ctx context.Context, f fn.Function, in fn.Input) (out *Output, err error) {
	out = &Output{}
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("fntest: function panicked: %v", p)
		}
	}()
	err = f.Invoke(ctx, in, out)
	return out, err
}
