// Package builtin implements the function kinds of the app file: filter,
// project, aggregate, split, route, lookup, sort and emit. The engine builds them
// from their declarations (Build); Go functions (`kind: go`) implement the
// same fn.Function contract in the user's binary.
package builtin

import (
	"context"
	"fmt"

	"github.com/pheromone-go/pheromone/engine/app"
	"github.com/pheromone-go/pheromone/engine/fn"
)

// Build makes the built-in function declared by f (after app validation);
// tables are what lookup functions read (nil: none).
func Build(f *app.Function, tables Tables) (fn.Function, error) {
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
	case "sort":
		return sorter{by: f.By}, nil
	case "lookup":
		return newLookup(f, tables)
	case "emit":
		return emit{}, nil
	case "go":
		return nil, fmt.Errorf("builtin: %s: kind go needs a Go function registered under %q", f.Name, f.Name)
	}
	return nil, fmt.Errorf("builtin: unknown function kind %q", f.Kind)
}

// emit forwards its input unchanged.
type emit struct{}

func (emit) Invoke(_ context.Context, in fn.Input, out fn.Output) error {
	for _, r := range in.Records {
		r.Retain()
		if err := out.Emit(r); err != nil {
			return err
		}
	}
	return nil
}
