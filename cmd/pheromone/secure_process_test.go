package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// TestKcatOverSASLSSL: `pheromone broker` serves TLS (a certificate made
// for the run) with SCRAM users and ACLs; `pheromone run` connects as a
// superuser through the app file's kafka.tls and kafka.sasl; kcat
// (librdkafka, an independent client) produces as a user who may only
// write the input topic, reads nothing of the output topic, and reads
// the node's output as the superuser; a wrong password is refused.
func TestKcatOverSASLSSL(t *testing.T) {
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		t.Skip("kcat not installed (apt-get install -y kcat); .ci/run installs it")
	}
	dir := t.TempDir()
	certs := filepath.Join(dir, "certs")
	broker := freeAddr(t)
	proc(t, "broker", "--addr", broker, "--data-dir", filepath.Join(dir, "broker"), "--tls-self-signed", certs,
		"--superuser", "SCRAM-SHA-512:node:node-pw-1", "--user", "SCRAM-SHA-256:producer:producer-pw-2",
		"--acl", "producer:write:topic:events", "--acl", "producer:describe:topic:*")
	waitPort(t, broker)
	ca := filepath.Join(certs, "ca.pem")
	waitFor(t, 10*time.Second, "the broker's CA file", func() bool { _, err := os.Stat(ca); return err == nil })

	app := strings.Replace(restartApp, "app: restart", `app: secured
kafka:
  brokers: [`+broker+`]
  tls: {ca_file: `+ca+`}
  sasl: {mechanism: SCRAM-SHA-512, username: node, password_env: NODE_PW}`, 1)
	appFile := filepath.Join(dir, "app.yaml")
	if err := os.WriteFile(appFile, []byte(app), 0o644); err != nil {
		t.Fatal(err)
	}
	node := exec.Command(binary_, "run", "-f", appFile, "--data-dir", filepath.Join(dir, "data"), "--http", "127.0.0.1:0")
	node.Env = append(os.Environ(), "NODE_PW=node-pw-1")
	logf, err := os.Create(filepath.Join(dir, "node.log"))
	if err != nil {
		t.Fatal(err)
	}
	node.Stdout, node.Stderr = logf, logf
	if err := node.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = node.Process.Kill()
		_, _ = node.Process.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("node output:\n%s", b)
		}
	})

	as := func(mech, user, pw string, args ...string) *exec.Cmd {
		return exec.Command(kcat, append([]string{"-b", broker, "-X", "security.protocol=SASL_SSL", "-X", "ssl.ca.location=" + ca,
			"-X", "sasl.mechanisms=" + mech, "-X", "sasl.username=" + user, "-X", "sasl.password=" + pw}, args...)...)
	}
	var in strings.Builder
	var want []string
	for id := range 40 {
		v := fmt.Sprintf(`{"id":%d,"user":"u%d"}`, id, id%4)
		in.WriteString(v + "\n")
		want = append(want, v)
	}
	waitFor(t, 30*time.Second, "kcat produce over SASL_SSL", func() bool {
		cmd := as("SCRAM-SHA-256", "producer", "producer-pw-2", "-t", "events", "-P", "-K", ":")
		cmd.Stdin = strings.NewReader(keyed(in.String()))
		return cmd.Run() == nil
	})
	var got []string
	waitFor(t, 60*time.Second, "kcat consume over SASL_SSL", func() bool {
		out, err := as("SCRAM-SHA-512", "node", "node-pw-1", "-t", "copy", "-C", "-e", "-o", "beginning", "-q").Output()
		if err != nil {
			return false
		}
		got = nil
		sc := bufio.NewScanner(strings.NewReader(string(out)))
		for sc.Scan() {
			if sc.Text() != "" {
				got = append(got, sc.Text())
			}
		}
		return len(got) >= len(want)
	})
	sort.Strings(got)
	sort.Strings(want)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("kcat read:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// The producer may not read the output (it holds 40 records): it gets none.
	out, err := as("SCRAM-SHA-256", "producer", "producer-pw-2", "-t", "copy", "-C", "-e", "-o", "beginning", "-m", "5").CombinedOutput()
	if strings.Contains(string(out), `"id":`) {
		t.Fatalf("the producer read the output topic (err %v):\n%s", err, out)
	}
	// A wrong password may not log in.
	out, err = as("SCRAM-SHA-512", "node", "wrong-pw", "-L", "-m", "5").CombinedOutput()
	if err == nil {
		t.Fatalf("a wrong password listed metadata:\n%s", out)
	}
}
