package main

import (
	"context"
	"testing"

	"github.com/pheromone-go/pheromone/examples/parallel/tasks"
	"github.com/pheromone-go/pheromone/server/apptest"
)

// TestAppTestFile runs app_test.yaml with this binary's functions, as
// `go run ./examples/parallel test examples/parallel` does.
func TestAppTestFile(t *testing.T) {
	res, err := apptest.Run(context.Background(), "app_test.yaml", apptest.Options{Functions: tasks.Functions().Functions()})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if !r.Passed || r.Skipped != "" {
			t.Errorf("%s: %s%s", r.Case, r.Failure, r.Skipped)
		}
	}
}
