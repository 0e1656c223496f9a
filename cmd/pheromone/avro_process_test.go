package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestAvroExample runs examples/avro as a user would: `pheromone run` on
// the embedded broker and registry, orders written in Avro by `pheromone
// produce` with the schema changed in the middle of the stream (v2 adds an
// optional field), the big orders read back from Protobuf by `pheromone
// consume`, exactly; the generator's clickstream is Avro too; a record
// that is not Avro goes to the dead-letter topic.
func TestAvroExample(t *testing.T) {
	dir := t.TempDir()
	examples, err := filepath.Abs("../../examples/avro")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(examples, "app.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	appFile := filepath.Join(dir, "app.yaml")
	if err := os.WriteFile(appFile, []byte(strings.ReplaceAll(string(raw), "examples/avro/", examples+"/")), 0o644); err != nil {
		t.Fatal(err)
	}
	broker, reg := freeAddr(t), freeAddr(t)
	proc(t, "run", "-f", appFile, "--data-dir", filepath.Join(dir, "data"), "--http", "127.0.0.1:0",
		"--embedded-broker", broker, "--embedded-registry", reg)
	waitPort(t, broker)
	waitPort(t, reg)
	run := func(stdin string, args ...string) string {
		t.Helper()
		cmd := exec.Command(binary_, args...)
		if stdin != "" {
			f, err := os.Open(stdin)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			cmd.Stdin = f
		}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	common := []string{"--brokers", broker, "--registry", "http://" + reg}
	// The node registered order-v1.avsc at start; the topic exists once it
	// created it.
	waitFor(t, 30*time.Second, "the node's topics", func() bool {
		return exec.Command(binary_, append([]string{"consume", "-t", "orders"}, common...)...).Run() == nil
	})
	run(filepath.Join(examples, "orders-v1.jsonl"), append([]string{"produce", "-t", "orders", "--format", "avro"}, common...)...)
	run(filepath.Join(examples, "orders-v2.jsonl"), append([]string{"produce", "-t", "orders", "--format", "avro",
		"--schema-file", filepath.Join(examples, "order-v2.avsc")}, common...)...)
	if kcat, err := exec.LookPath("kcat"); err == nil {
		cmd := exec.Command(kcat, "-b", broker, "-t", "orders", "-P")
		cmd.Stdin = strings.NewReader("not avro\n")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("kcat: %v\n%s", err, out)
		}
	}
	want := []string{
		`{"id":1,"user":"ann","amount":120.5,"country":"NO","at":"2026-11-30T09:00:00.000Z"}`,
		`{"id":3,"user":"cid","amount":300,"country":"DE","at":"2026-11-30T09:00:02.000Z"}`,
		`{"id":5,"user":"dee","amount":100,"country":"FR","at":"2026-11-30T09:00:04.000Z"}`,
		`{"id":6,"user":"bob","amount":250,"country":"IT","at":"2026-11-30T09:01:00.000Z"}`,
		`{"id":8,"user":"cid","amount":1000,"country":"DE","at":"2026-11-30T09:01:02.000Z"}`,
	}
	var got []string
	waitFor(t, 30*time.Second, "the big orders", func() bool {
		out, err := exec.Command(binary_, append([]string{"consume", "-t", "big-orders", "--format", "protobuf"}, common...)...).Output()
		if err != nil {
			return false
		}
		got = strings.Fields(strings.TrimSpace(string(out)))
		return len(got) >= len(want)
	})
	if strings.Join(slices.Sorted(slices.Values(got)), "\n") != strings.Join(slices.Sorted(slices.Values(want)), "\n") {
		t.Fatalf("big orders:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// The generator writes its clickstream in Avro too.
	waitFor(t, 30*time.Second, "the generated Avro clicks", func() bool {
		out, err := exec.Command(binary_, append([]string{"consume", "-t", "clicks", "--format", "avro"}, common...)...).Output()
		return err == nil && strings.Contains(string(out), `"event_id":0,"user_id":"u`)
	})
	if _, err := exec.LookPath("kcat"); err == nil {
		var dead string
		waitFor(t, 30*time.Second, "the dead letter", func() bool {
			out, _ := exec.Command("kcat", "-b", broker, "-t", "avro-orders.dlq", "-C", "-e", "-q", "-f", "%h\n").Output()
			dead = string(out)
			return strings.Contains(dead, "pheromone.reason=decode")
		})
		if !strings.Contains(dead, "magic byte 110") {
			t.Fatalf("dead letter headers: %s", dead)
		}
	}
}
