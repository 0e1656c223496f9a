package main

import (
	"context"
	"slices"
	"testing"

	"github.com/pheromone-go/pheromone/engine/app"
	"github.com/pheromone-go/pheromone/engine/fn"
	"github.com/pheromone-go/pheromone/engine/fn/fntest"
)

// TestScore unit-tests the Go function alone, without a node or a broker:
// rows in the source's schema from the app file in, the rows it emits out,
// and the check the engine makes against the schema the app file declares.
func TestScore(t *testing.T) {
	a, err := app.Load("app.yaml")
	if err != nil {
		t.Fatal(err)
	}
	in, err := fntest.Records(a.Sources[0].ArrowSchema(),
		`{"id":1,"country":"DE","amount":120}`,
		`{"id":2,"country":"FR","amount":900}`)
	if err != nil {
		t.Fatal(err)
	}
	defer in[0].Release()
	out, err := fntest.Invoke(context.Background(), fn.Func(score), fn.Input{Records: in})
	if err != nil {
		t.Fatal(err)
	}
	defer out.Release()
	want := []string{`{"id":1,"risk":0.12,"review":false}`, `{"id":2,"risk":1.2,"review":true}`}
	if got := out.Rows("scores"); !slices.Equal(got, want) {
		t.Errorf("scores: %q, want %q", got, want)
	}
	if err := out.CheckSchema(a.Function("score").OutputSchema()); err != nil {
		t.Error(err)
	}
}
