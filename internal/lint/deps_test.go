package lint

import (
	"os/exec"
	"strings"
	"testing"
)

// TestForbiddenDependencies checks what each layer pulls in transitively
// (go list -deps), not only what it imports itself: an engine import of
// state/pebblestore passes a direct-import check while dragging Pebble into
// the engine.
func TestForbiddenDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}}|{{join .Deps \" \"}}", "github.com/pheromone-go/pheromone/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	const mod = "github.com/pheromone-go/pheromone/"
	adapters := []string{"github.com/twmb/franz-go", "github.com/cockroachdb/pebble", "github.com/prometheus"}
	rules := []struct {
		pkgPrefix string
		forbidden []string
		why       string
	}{
		{mod + "engine", append([]string{mod + "connectors", mod + "state/", mod + "server", mod + "cmd"}, adapters...),
			"the engine sees its adapters only through its own contracts"},
		{mod + "triggers", []string{mod}, "triggers is a leaf"},
		{mod + "state", []string{mod + "engine", mod + "connectors", mod + "triggers", mod + "cmd", mod + "server"}, "state is a leaf"},
		{mod + "connectors", []string{mod + "server", mod + "cmd"}, "connectors do not reach back into the composition root"},
		{mod + "server", []string{mod + "cmd"}, "the server package is a library; cmd depends on it, not the reverse"},
	}
	checked := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		pkg, deps, _ := strings.Cut(line, "|")
		checked++
		for _, r := range rules {
			if !strings.HasPrefix(pkg, r.pkgPrefix) {
				continue
			}
			for _, dep := range strings.Fields(deps) {
				for _, f := range r.forbidden {
					if strings.HasPrefix(dep, f) && !(f == mod && strings.HasPrefix(dep, r.pkgPrefix)) {
						t.Errorf("%s depends on %s (%s)", pkg, dep, r.why)
					}
				}
			}
		}
	}
	if checked < 8 {
		t.Fatalf("only %d packages listed; the check is not seeing the module", checked)
	}
}
