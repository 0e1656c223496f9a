package cli

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/pheromone-go/pheromone/engine"
	"github.com/pheromone-go/pheromone/engine/fn"
	"github.com/pheromone-go/pheromone/server"
)

// cmdPlan prints what starting a changed app file on a data dir would do to
// its state, item by item, changing nothing: `pheromone plan -f new.yaml`.
// It exits 1 when the start would be refused.
func cmdPlan(reg *fn.Registry, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("plan", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("f", "", "the new app file")
	dataDir := fs.String("data-dir", "pheromone-data", "the node's data directory (stop the node first)")
	addr := fs.String("addr", "", "plan against a running node instead (its HTTP base URL, e.g. http://127.0.0.1:8080)")
	var resets list
	fs.Var(&resets, "reset", "as pheromone run --reset: plan with this state dropped; repeatable")
	resetAll := fs.Bool("reset-all", false, "as pheromone run --reset-all")
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	if *file == "" {
		fmt.Fprintln(stderr, "pheromone plan: -f new.yaml is required")
		return 2
	}
	a, err := load(*file, reg)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", *file, err)
		return 1
	}
	opts := []server.Opt{server.Reset(resets...)}
	if *resetAll {
		opts = append(opts, server.ResetAll())
	}
	var plan []engine.PlanItem
	where := *dataDir
	if *addr != "" {
		where = *addr
		plan, err = server.PlanAgainst(context.Background(), *addr, a, opts...)
	} else {
		plan, err = server.Plan(a, *dataDir, opts...)
	}
	if err != nil {
		fmt.Fprintln(stderr, "pheromone plan:", err)
		return 1
	}
	if len(plan) == 0 {
		fmt.Fprintf(stdout, "no changes to app %q's state in %s\n", a.Name, where)
		return 0
	}
	refused := 0
	for _, it := range plan {
		line := fmt.Sprintf("%-8s %s: %s", it.Action, it.Item, it.Change)
		if it.Why != "" {
			line += " — " + it.Why
		}
		if it.Action == engine.Refused && it.Name != "" {
			line += fmt.Sprintf(" (--reset %s)", it.Name)
		}
		if it.Action == engine.Refused {
			refused++
		}
		fmt.Fprintln(stdout, line)
	}
	if refused > 0 {
		fmt.Fprintf(stdout, "%d change(s) refused: the node would not start\n", refused)
		return 1
	}
	fmt.Fprintln(stdout, "the node would start")
	return 0
}
