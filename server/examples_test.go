package server

import (
	"path/filepath"
	"testing"

	"github.com/pheromone-go/pheromone/engine/app"
)

// TestExamplesValidate: every example app validates with the connectors
// the pheromone binary wires (the file source and sink, the registry
// formats), from the repository root as the README runs them.
func TestExamplesValidate(t *testing.T) {
	t.Chdir("..")
	paths, _ := filepath.Glob("examples/*/app.yaml")
	if len(paths) < 2 {
		t.Fatalf("examples not found: %v", paths)
	}
	for _, p := range paths {
		if _, err := app.LoadWith(p, Connectors()); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
}
