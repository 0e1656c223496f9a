package server

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/pheromone-go/pheromone/engine"
	"github.com/pheromone-go/pheromone/engine/app"
	"github.com/pheromone-go/pheromone/state/pebblestore"
)

// Reset names triggers, buckets and table sinks whose state the node drops
// when the app changed in a way their state cannot follow (docs/upgrades.md).
func Reset(names ...string) Opt { return func(c *config) { c.reset = append(c.reset, names...) } }

// ResetAll drops all of the app's state when it changed in a way the state
// cannot follow; the input is read again from the start.
func ResetAll() Opt { return func(c *config) { c.resetAll = true } }

// Plan says what starting app a on the data dir would do to its state,
// item by item (keep, reset, refused), without changing anything. A data
// dir without state, or whose state a wrote, has nothing to say (nil).
func Plan(a *app.App, dataDir string, opts ...Opt) ([]engine.PlanItem, error) {
	var cfg config
	for _, o := range opts {
		o(&cfg)
	}
	dir := filepath.Join(dataDir, "state")
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	st, err := pebblestore.Open(dir, pebblestore.Options{})
	if err != nil {
		return nil, fmt.Errorf("plan: %w (is a node running on it? stop it, or plan against a copy)", err)
	}
	defer st.Close()
	old, err := engine.StoredApp(st, a.Name)
	if err != nil || old == nil {
		return nil, err
	}
	if string(engine.Canonical(old)) == string(engine.Canonical(a)) {
		return nil, nil
	}
	return engine.Plan(old, a, cfg.reset, cfg.resetAll), nil
}
