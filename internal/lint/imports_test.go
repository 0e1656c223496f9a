// Package lint holds tests that enforce the module's architecture.
package lint

import (
	"os/exec"
	"strings"
	"testing"
)

// TestForbiddenImports fails when a package imports what its layer must not:
// engine never sees Kafka, Pebble or Prometheus; triggers and state are
// leaves; each adapter library is imported by its one adapter only.
func TestForbiddenImports(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps=false", "-f", "{{.ImportPath}}|{{join .Imports \" \"}}", "github.com/pheromone-go/pheromone/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	const mod = "github.com/pheromone-go/pheromone/"
	rules := []struct {
		pkgPrefix string
		forbidden []string
		except    []string // packages allowed despite the prefix
	}{
		{mod + "engine", []string{"github.com/twmb/franz-go", "github.com/cockroachdb/pebble", "github.com/prometheus"}, nil},
		{mod + "triggers", []string{mod}, nil},
		{mod + "state", []string{mod + "engine", mod + "connectors", mod + "triggers", mod + "cmd"}, nil},
		{mod, []string{"github.com/cockroachdb/pebble"}, []string{mod + "state/pebblestore"}},
		{mod, []string{"github.com/prometheus"}, []string{mod + "connectors/prom"}},
		// benchmarks/ measures raw franz-go against the engine, by design;
		// connectors/registry is the schema registry client (franz-go's sr).
		{mod, []string{"github.com/twmb/franz-go"}, []string{mod + "connectors/kafka", mod + "connectors/registry", mod + "benchmarks/"}},
	}
	checked := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		pkg, imports, _ := strings.Cut(line, "|")
		checked++
		for _, r := range rules {
			if !strings.HasPrefix(pkg, r.pkgPrefix) || contains(r.except, pkg) {
				continue
			}
			for _, imp := range strings.Fields(imports) {
				for _, f := range r.forbidden {
					if strings.HasPrefix(imp, f) && !(f == mod && strings.HasPrefix(imp, r.pkgPrefix)) {
						t.Errorf("%s imports %s, which its layer forbids", pkg, imp)
					}
				}
			}
		}
	}
	if checked < 8 {
		t.Fatalf("only %d packages listed; the check is not seeing the module", checked)
	}
}

// contains reports whether v is in s; entries ending in "/" match prefixes.
func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v || (strings.HasSuffix(x, "/") && strings.HasPrefix(v, x)) {
			return true
		}
	}
	return false
}
