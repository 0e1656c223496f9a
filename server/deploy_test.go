package server

import (
	"bytes"
	"errors"
	"io"
	"os"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/pheromone-go/pheromone/engine/app"
)

// TestDeployFilesParse keeps deploy/ honest where no container runtime is
// at hand: every document of the Kubernetes file and the compose file
// parses, the ConfigMap's app file validates, the StatefulSet probes
// /readyz and advertises the pod's DNS name, and the compose nodes run an
// example that validates.
func TestDeployFilesParse(t *testing.T) {
	raw, err := os.ReadFile("../deploy/k8s/pheromone.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	kinds := map[string]map[string]any{}
	for {
		var doc map[string]any
		if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		kind, _ := doc["kind"].(string)
		name, _ := doc["metadata"].(map[string]any)["name"].(string)
		kinds[kind+"/"+name] = doc
	}
	for _, want := range []string{"ConfigMap/pheromone-app", "Service/pheromone", "Service/pheromone-peers", "StatefulSet/pheromone"} {
		if kinds[want] == nil {
			t.Errorf("deploy/k8s/pheromone.yaml: no %s", want)
		}
	}
	cm := kinds["ConfigMap/pheromone-app"]
	appYAML, _ := cm["data"].(map[string]any)["app.yaml"].(string)
	a, err := app.Parse([]byte(appYAML))
	if err == nil {
		err = a.Validate()
	}
	if err != nil {
		t.Errorf("the ConfigMap's app file: %v", err)
	}
	if !strings.Contains(string(raw), "path: /readyz") || !strings.Contains(string(raw), "--advertise") {
		t.Errorf("the StatefulSet must probe /readyz and advertise its pod's address")
	}

	compose, err := os.ReadFile("../deploy/docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Services map[string]struct {
			Command []string `yaml:"command"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(compose, &c); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"node-0", "node-1", "node-2"} {
		cmd := c.Services[n].Command
		if len(cmd) < 3 || cmd[0] != "run" {
			t.Fatalf("compose %s: command %q", n, cmd)
		}
		a, err := app.Load(".." + cmd[2])
		if err == nil {
			err = a.Validate()
		}
		if err != nil {
			t.Errorf("compose %s runs %s: %v", n, cmd[2], err)
		}
	}
}
