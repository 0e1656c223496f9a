package kafka

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/pheromone-go/pheromone/engine"
)

// selfSigned returns a server TLS config for 127.0.0.1 and a client TLS
// config that trusts it.
func selfSigned(t *testing.T) (server, client *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "pheromone test broker"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}},
		&tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
}

// TestConnOverTLSAndSCRAM: every client opened from a Conn speaks TLS and
// authenticates with SCRAM; the right password produces and reads back, a
// wrong one fails with an authentication error that does not contain the
// password.
func TestConnOverTLSAndSCRAM(t *testing.T) {
	srv, cli := selfSigned(t)
	_, brokers := broker(t, kfake.TLS(srv), kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-256", "app", "s3cret-pw"))
	conn := Conn{Brokers: brokers, TLS: cli, SASL: &SASL{Mechanism: "SCRAM-SHA-256", User: "app", Password: "s3cret-pw"}}
	if err := EnsureTopics(ctx(t), conn, map[string]int{"out": 1}); err != nil {
		t.Fatal(err)
	}
	p, err := NewProducer(conn)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	p.Writer().Produce(&engine.OutRecord{Topic: "out", Value: []byte("hello")}, func(_ int64, err error) { done <- err })
	if err := <-done; err != nil {
		t.Fatalf("produce over TLS+SCRAM: %v", err)
	}
	p.Close()
	parts, err := TopicPartitions(ctx(t), conn, "out")
	if err != nil || parts["out"] != 1 {
		t.Fatalf("admin over TLS+SCRAM: %v %v", parts, err)
	}

	bad := conn
	bad.SASL = &SASL{Mechanism: "SCRAM-SHA-256", User: "app", Password: "wrong-pw"}
	_, err = TopicPartitions(ctx(t), bad, "out")
	if err == nil {
		t.Fatal("a wrong password was accepted")
	}
	if strings.Contains(err.Error(), "wrong-pw") || strings.Contains(err.Error(), "s3cret-pw") {
		t.Fatalf("the error shows a password: %v", err)
	}
	if s := bad.SASL.String(); strings.Contains(s, "wrong-pw") || s != "SCRAM-SHA-256 as app" {
		t.Fatalf("String shows %q", s)
	}
	t.Logf("wrong password: %v", err)
}
