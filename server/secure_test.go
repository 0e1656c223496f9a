package server

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/pheromone-go/pheromone/connectors/kafka"
	"github.com/pheromone-go/pheromone/engine"
	"github.com/pheromone-go/pheromone/engine/app"
)

// TestNodeOnATLSAndSCRAMCluster: an app whose kafka section asks for TLS
// (a CA file) and SCRAM (the password from an environment variable) runs
// against a cluster that requires both; without the variable it refuses to
// start, naming the variable and not a secret.
func TestNodeOnATLSAndSCRAMCluster(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "broker"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.TLS(&tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}),
		kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-256", "app", "s3cret-pw"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	brokers := c.ListenAddrs()
	yaml := `
app: secure
kafka:
  tls: {ca_file: "` + ca + `"}
  sasl: {mechanism: SCRAM-SHA-256, username: app, password_env: PHEROMONE_TEST_KAFKA_PW}
sources: [{name: in, topic: in, partitions: 1, schema: [{name: id, type: int64}], bucket: in}]
buckets: [{name: in}]
triggers: [{name: each, bucket: in, primitive: immediate, function: pass}]
functions: [{name: pass, kind: emit, outputs: [out]}]
sinks: [{name: out, topic: out, partitions: 1}]
`
	a, err := app.Parse([]byte(yaml))
	if err == nil {
		err = a.ValidateWith(Connectors())
	}
	if err != nil {
		t.Fatal(err)
	}
	// Without the password's variable: a clear refusal.
	t.Setenv("PHEROMONE_TEST_KAFKA_PW", "")
	err = Run(context.Background(), a, DataDir(t.TempDir()), Brokers(brokers...))
	if err == nil || !strings.Contains(err.Error(), "PHEROMONE_TEST_KAFKA_PW is not set") {
		t.Fatalf("start without the password: %v", err)
	}

	t.Setenv("PHEROMONE_TEST_KAFKA_PW", "s3cret-pw")
	startNode(t, yaml, brokers, engine.NewManualClock(time.Unix(0, 0)), t.TempDir())
	pool := x509.NewCertPool()
	cert, _ := x509.ParseCertificate(der)
	pool.AddCert(cert)
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DialTLSConfig(&tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}),
		kgo.SASL(scram.Auth{User: "app", Pass: "s3cret-pw"}.AsSha256Mechanism()),
		kgo.ConsumeTopics("out"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DefaultProduceTopic("in"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(context.Background(), &kgo.Record{Value: []byte(`{"id":7}`)}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	var got []string
	waitFor(t, 20*time.Second, "the output over TLS+SCRAM", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)) })
		return len(got) > 0
	})
	if len(got) != 1 || got[0] != `{"id":7}` {
		t.Fatalf("outputs %q", got)
	}
}

// TestNodeIsRefusedWhatTheClusterDoesNotAllow: on a cluster with ACLs, a
// node whose user may only read its source stops before it starts, with
// every missing permission named (topics it may not see, its group); a wrong password stops it at the login,
// naming the broker. With a user that may do everything the node runs,
// and its password is in neither its log nor /metrics.
func TestNodeIsRefusedWhatTheClusterDoesNotAllow(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.EnableSASL(), kfake.EnableACLs(),
		kfake.Superuser("SCRAM-SHA-512", "ops", "ops-pw-123"), kfake.SeedTopics(1, "in"),
		kfake.User("SCRAM-SHA-512", "reader", "reader-pw-456",
			kfake.ACL{Resource: kmsg.ACLResourceTypeTopic, Name: "in", Pattern: kmsg.ACLResourcePatternTypeLiteral, Operation: kmsg.ACLOperationRead, Allow: true}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	brokers := c.ListenAddrs()
	yamlFor := func(user string) string {
		return `
app: acl
kafka:
  changelog: false
  sasl: {mechanism: SCRAM-SHA-512, username: ` + user + `, password_env: PHEROMONE_TEST_KAFKA_PW}
sources: [{name: in, topic: in, partitions: 1, schema: [{name: id, type: int64}], bucket: in}]
buckets: [{name: in}]
triggers: [{name: each, bucket: in, primitive: immediate, function: pass}]
functions: [{name: pass, kind: emit, outputs: [out]}]
sinks: [{name: out, topic: out, partitions: 1}]
`
	}
	run := func(user, pw string, opts ...Opt) error {
		t.Setenv("PHEROMONE_TEST_KAFKA_PW", pw)
		a, err := app.Parse([]byte(yamlFor(user)))
		if err == nil {
			err = a.ValidateWith(Connectors())
		}
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		return Run(ctx, a, append([]Opt{DataDir(t.TempDir()), Brokers(brokers...), HTTPAddr("127.0.0.1:0")}, opts...)...)
	}
	err = run("reader", "reader-pw-456")
	if err == nil {
		t.Fatal("a node without the ACLs it needs started")
	}
	for _, want := range []string{`SCRAM-SHA-512 as reader`, `describe topic "out" (Describe)`, `describe topic "acl.dlq" (Describe)`, `use consumer group "pheromone-acl"`} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("refusal %q does not say %q", err, want)
		}
	}
	t.Logf("refused: %v", err)

	err = run("ops", "not-the-pw-789")
	var ae *kafka.AccessError
	if !errors.As(err, &ae) || ae.Login == nil || !strings.Contains(err.Error(), brokers[0]) || strings.Contains(err.Error(), "not-the-pw-789") {
		t.Fatalf("wrong password: %v", err)
	}

	var logs syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan Info, 1)
	done := make(chan error, 1)
	t.Setenv("PHEROMONE_TEST_KAFKA_PW", "ops-pw-123")
	a, _ := app.Parse([]byte(yamlFor("ops")))
	if err := a.ValidateWith(Connectors()); err != nil {
		t.Fatal(err)
	}
	go func() {
		done <- Run(ctx, a, DataDir(t.TempDir()), Brokers(brokers...), HTTPAddr("127.0.0.1:0"),
			Logger(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))), OnStarted(func(i Info) { started <- i }))
	}()
	var info Info
	select {
	case info = <-started:
	case err := <-done:
		t.Fatalf("the node did not start: %v", err)
	}
	metrics := scrape(t, info.HTTPAddr, "")
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for what, text := range map[string]string{"log": logs.String(), "/metrics": metrics} {
		if strings.Contains(text, "ops-pw-123") {
			t.Fatalf("the %s shows the password", what)
		}
	}
	if !strings.Contains(logs.String(), "SCRAM-SHA-512 as ops") {
		t.Fatalf("the log does not say how the node logs in:\n%s", logs.String())
	}
}

// syncBuffer is a bytes.Buffer for concurrent log writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestACLRemovedWhileRunning: when the operator takes the node's topic
// permission away while it runs, the node stops with the refusal (the
// topic and group named) instead of retrying forever.
func TestACLRemovedWhileRunning(t *testing.T) {
	all := func(res kmsg.ACLResourceType) kfake.ACL {
		return kfake.ACL{Resource: res, Name: "*", Pattern: kmsg.ACLResourcePatternTypeLiteral, Operation: kmsg.ACLOperationAll, Allow: true}
	}
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.EnableSASL(), kfake.EnableACLs(),
		kfake.Superuser("SCRAM-SHA-256", "ops", "ops-pw"),
		kfake.User("SCRAM-SHA-256", "app", "app-pw", all(kmsg.ACLResourceTypeTopic), all(kmsg.ACLResourceTypeGroup), all(kmsg.ACLResourceTypeCluster)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	brokers := c.ListenAddrs()
	t.Setenv("PHEROMONE_TEST_KAFKA_PW", "app-pw")
	a, err := app.Parse([]byte(`
app: revoked
kafka:
  changelog: false
  sasl: {mechanism: SCRAM-SHA-256, username: app, password_env: PHEROMONE_TEST_KAFKA_PW}
sources: [{name: in, topic: in, partitions: 1, schema: [{name: id, type: int64}], bucket: in}]
buckets: [{name: in}]
triggers: [{name: each, bucket: in, primitive: immediate, function: pass}]
functions: [{name: pass, kind: emit, outputs: [out]}]
sinks: [{name: out, topic: out, partitions: 1}]
`))
	if err == nil {
		err = a.ValidateWith(Connectors())
	}
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan Info, 1)
	done := make(chan error, 1)
	go func() {
		done <- Run(context.Background(), a, DataDir(t.TempDir()), Brokers(brokers...), OnStarted(func(i Info) { started <- i }))
	}()
	select {
	case <-started:
	case err := <-done:
		t.Fatalf("the node did not start: %v", err)
	}
	adm := kadm.NewClient(must(kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.SASL(scram.Auth{User: "ops", Pass: "ops-pw"}.AsSha256Mechanism()))))
	defer adm.Close()
	del := kadm.NewACLs().Allow("User:app").AllowHosts().Topics("*").Operations(kadm.OpAll).ResourcePatternType(kadm.ACLPatternLiteral)
	if _, err := adm.DeleteACLs(context.Background(), del); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "refused the node") || !strings.Contains(err.Error(), "in") {
			t.Fatalf("the node stopped with %v", err)
		}
		t.Logf("stopped: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("the node kept running without its topic permission")
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestExpiredTokenStopsTheNode: a node logging in with OAUTHBEARER whose
// token file holds an expired JWT does not start, and says which file and
// since when.
func TestExpiredTokenStopsTheNode(t *testing.T) {
	file := filepath.Join(t.TempDir(), "token")
	enc := base64.RawURLEncoding.EncodeToString
	jwt := enc([]byte(`{"alg":"none"}`)) + "." + enc([]byte(`{"sub":"app","exp":1700000000}`)) + ".sig"
	if err := os.WriteFile(file, []byte(jwt), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-256", "ops", "ops-pw"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	a, err := app.Parse([]byte(`
app: token
kafka:
  sasl: {mechanism: OAUTHBEARER, token_file: "` + file + `"}
sources: [{name: in, topic: in, partitions: 1, schema: [{name: id, type: int64}], bucket: in}]
buckets: [{name: in}]
triggers: [{name: each, bucket: in, primitive: immediate, function: pass}]
functions: [{name: pass, kind: emit, outputs: [out]}]
sinks: [{name: out, topic: out, partitions: 1}]
`))
	if err == nil {
		err = a.ValidateWith(Connectors())
	}
	if err != nil {
		t.Fatal(err)
	}
	err = Run(context.Background(), a, DataDir(t.TempDir()), Brokers(c.ListenAddrs()...))
	if err == nil || !strings.Contains(err.Error(), "expired at 2023-11-14T22:13:20Z") || !strings.Contains(err.Error(), file) {
		t.Fatalf("an expired token: %v", err)
	}
	if strings.Contains(err.Error(), jwt) {
		t.Fatal("the error shows the token")
	}
}
