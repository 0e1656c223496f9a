package server

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pheromone-go/pheromone/connectors/registry"
	"github.com/pheromone-go/pheromone/engine"
)

// TestRegistryInterop: records that kafkajs and
// @kafkajs/confluent-schema-registry (an independent implementation of the
// Confluent wire format, with avsc, protobufjs and ajv) write in Avro,
// Protobuf and JSON Schema are decoded by a node whose sources take their
// columns from those subjects; the node's sink output in each format is
// decoded by the same library, record for record.
func TestRegistryInterop(t *testing.T) {
	modules := os.Getenv("PHEROMONE_KAFKAJS")
	if modules == "" {
		t.Skip("registry interop check skipped: set PHEROMONE_KAFKAJS to a node_modules dir with kafkajs and @kafkajs/confluent-schema-registry (.ci/run does)")
	}
	node := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("node", append([]string{filepath.Join("testdata", "sr_interop.js")}, args...)...)
		cmd.Env = append(os.Environ(), "NODE_PATH="+modules)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("node %v: %v\n%s", args, err, stderr.String())
		}
		return string(out)
	}
	brokers := cluster(t)
	reg, err := registry.StartEmbedded("127.0.0.1:0", "")
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	t.Logf("registered %s", strings.TrimSpace(node("register", reg.URL())))

	var yaml strings.Builder
	yaml.WriteString("app: interop\nschema_registry: {url: \"" + reg.URL() + "\"}\nsources:\n")
	formats := map[string]string{"avro": "avro", "proto": "protobuf", "json": "json_schema"}
	for f, format := range formats {
		fmt.Fprintf(&yaml, "  - {name: %s-in, topic: %s-in, partitions: 1, format: %s, bucket: %s}\n", f, f, format, f)
	}
	yaml.WriteString("buckets:\n")
	for f := range formats {
		fmt.Fprintf(&yaml, "  - {name: %s}\n", f)
	}
	yaml.WriteString("triggers:\n")
	for f := range formats {
		fmt.Fprintf(&yaml, "  - {name: %s-each, bucket: %s, primitive: immediate, function: %s-big}\n", f, f, f)
	}
	yaml.WriteString("functions:\n")
	for f := range formats {
		fmt.Fprintf(&yaml, "  - {name: %s-big, kind: filter, expr: \"amount >= 10\", outputs: [%s-out]}\n", f, f)
	}
	yaml.WriteString("sinks:\n")
	for f, format := range formats {
		fmt.Fprintf(&yaml, "  - {name: %s-out, topic: %s-out, partitions: 1, format: %s}\n", f, f, format)
	}
	n := startNode(t, yaml.String(), brokers, engine.SystemClock{}, t.TempDir())
	defer n.stop()

	const count = 12 // amounts 0, 2, ..., 22: seven pass the filter
	node("produce", brokers[0], reg.URL(), fmt.Sprint(count))
	var want []string
	for f := range formats {
		for i := range count {
			if i*2 >= 10 {
				want = append(want, fmt.Sprintf("%s-out %d u%d %d", f, i, i%3, i*2))
			}
		}
	}
	out := node("consume", brokers[0], reg.URL(), fmt.Sprint(7))
	var got []string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var r struct {
			Topic, ID, User, Error string
			Amount                 float64
		}
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("%v: %s", err, sc.Text())
		}
		if r.Error != "" {
			t.Fatalf("the library could not decode a record of %s: %s", r.Topic, r.Error)
		}
		got = append(got, fmt.Sprintf("%s %s %s %g", r.Topic, r.ID, r.User, r.Amount))
	}
	equalLines(t, "decoded by kafkajs", sorted(got), sorted(want))
}
