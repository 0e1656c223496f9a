// Package fn defines what a function is to the engine and implements the
// built-in functions of the app file: filter, project, aggregate and emit.
//
// A function receives the objects its trigger passed as Arrow records and
// emits Arrow records to its outputs. Functions must not keep references to
// their input records after Invoke returns unless they Retain them; records
// passed to Emit are owned by the engine from then on.
package fn

import (
	"context"
	"fmt"

	"github.com/apache/arrow/go/v15/arrow"

	"github.com/pheromone-go/pheromone/engine/app"
	"github.com/pheromone-go/pheromone/triggers"
)

// Input is what one invocation receives.
type Input struct {
	// Records hold the objects the trigger passed, in bucket order. They are
	// valid until Invoke returns.
	Records []arrow.Record
	// Trigger is the name of the trigger that fired.
	Trigger string
	// Window is the window of a by_time firing, zero otherwise.
	Window triggers.Window
	// Session is the session the firing belongs to ("" without sessions).
	Session string
	// Group is the group of a dynamic_group firing.
	Group string
}

// Rows is the number of objects in the input.
func (in Input) Rows() int {
	n := 0
	for _, r := range in.Records {
		n += int(r.NumRows())
	}
	return n
}

// Output receives what a function emits.
type Output interface {
	// Emit sends rec to every output of the function. Emit takes over one
	// reference: the caller must not Release rec afterwards.
	Emit(rec arrow.Record) error
	// EmitTo sends rec to one output (a bucket or sink named in the
	// function's outputs); it takes over the reference like Emit.
	EmitTo(output string, rec arrow.Record) error
}

// Dropper is implemented by the engine's Output. A function that discards
// input rows by design (a lookup's rows without a match) reports how many,
// so they are counted (pheromone_function_dropped_total) instead of
// vanishing without a trace.
type Dropper interface {
	Dropped(n int)
}

// Function is user or built-in code fired by a trigger. Invoke may be called
// concurrently from several executors and must not keep state between calls.
// It should return when ctx is done (the function's timeout).
type Function interface {
	Invoke(ctx context.Context, in Input, out Output) error
}

// Func adapts a plain Go function to Function.
type Func func(ctx context.Context, in Input, out Output) error

// Invoke calls f.
func (f Func) Invoke(ctx context.Context, in Input, out Output) error { return f(ctx, in, out) }

// Registry holds the Go functions an app file can name with `kind: go`.
// Build one per binary and pass it to cli.MainWith; it is not safe to
// Register while a node runs.
type Registry struct{ m map[string]Function }

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{m: map[string]Function{}} }

// Register adds f under name, replacing any earlier one.
func (r *Registry) Register(name string, f Function) *Registry {
	r.m[name] = f
	return r
}

// Lookup returns the function registered under name.
func (r *Registry) Lookup(name string) (Function, bool) {
	if r == nil {
		return nil, false
	}
	f, ok := r.m[name]
	return f, ok
}

// Functions returns the registered functions by name (a copy).
func (r *Registry) Functions() map[string]Function {
	out := map[string]Function{}
	if r != nil {
		for k, v := range r.m {
			out[k] = v
		}
	}
	return out
}

// Build makes the built-in function declared by f (after app validation).
func Build(f *app.Function) (Function, error) { return BuildWith(f, nil) }

// BuildWith is Build with the reference tables lookup functions read.
func BuildWith(f *app.Function, tables Tables) (Function, error) {
	switch f.Kind {
	case "filter":
		return newFilter(f)
	case "project":
		return newProject(f)
	case "aggregate":
		return newAggregate(f)
	case "split":
		return newSplit(f), nil
	case "route":
		return newRoute(f)
	case "lookup":
		return newLookup(f, tables)
	case "emit":
		return emit{}, nil
	case "go":
		return nil, fmt.Errorf("fn: %s: kind go needs a Go function registered under %q", f.Name, f.Name)
	}
	return nil, fmt.Errorf("fn: unknown function kind %q", f.Kind)
}

// emit forwards its input unchanged.
type emit struct{}

func (emit) Invoke(_ context.Context, in Input, out Output) error {
	for _, r := range in.Records {
		r.Retain()
		if err := out.Emit(r); err != nil {
			return err
		}
	}
	return nil
}
