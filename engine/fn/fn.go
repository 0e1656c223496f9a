// Package fn defines what a function is to the engine: the contract a Go
// function (`kind: go`) implements, and the Registry a binary passes its
// functions in. The built-in kinds live in engine/builtin; fntest runs a
// function in a unit test without a node.
//
// A function receives the objects its trigger passed as Arrow records and
// emits Arrow records to its outputs. Functions must not keep references to
// their input records after Invoke returns unless they Retain them; records
// passed to Emit are owned by the engine from then on.
package fn

import (
	"context"

	"github.com/apache/arrow/go/v15/arrow"

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
// Build one per binary and pass it to cli.MainWith (or its Functions to
// server.Run); it is not safe to Register while a node runs.
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

// Incremental is implemented by functions whose result over a window can
// be kept as a running partial instead of the window's objects (the
// built-in aggregate). A window trigger firing such a function folds each
// object into its window's partial as it arrives; the firing emits the
// partial's result, which must equal Invoke over the same objects.
type Incremental interface {
	// Foldable reports whether this function's results can be folded;
	// orderFree also asks for results that do not depend on the order the
	// objects are folded in (windows that merge: sessions).
	Foldable(orderFree bool) bool
	// NewPartial returns an empty partial.
	NewPartial() Partial
	// UnmarshalPartial restores a partial written by Partial.AppendBinary.
	UnmarshalPartial(b []byte) (Partial, error)
}

// Partial is the running result of an Incremental function over the
// objects folded into it so far. It is used by one goroutine at a time.
type Partial interface {
	// Fold adds the given rows of rec, in order; row r is the object of
	// sequence number first+r.
	Fold(rec arrow.Record, first uint64, rows []int) error
	// Merge adds other's objects (which it no longer owns).
	Merge(other Partial)
	// Emit emits the result for in.Window (in.Records is empty).
	Emit(in Input, out Output) error
	// AppendBinary appends the partial's durable form to b.
	AppendBinary(b []byte) []byte
	// Groups is how many result rows the partial holds.
	Groups() int
}

// Selector is implemented by functions whose output is some of their input
// rows, unchanged (the built-in filter). Select returns, for each input
// record, the rows kept, in order. A node whose sink takes the rows in the
// source's format passes the original records through instead of
// encoding the rows again.
type Selector interface {
	Select(ctx context.Context, in Input) ([][]int, error)
}

// Router is implemented by functions that send each input row, unchanged,
// to at most one of their outputs (the built-in route). Route returns, for
// each input record, each row's output ("": none). Like a Selector's, a
// Router's rows can pass through as the records came.
type Router interface {
	Route(ctx context.Context, in Input) ([][]string, error)
}
