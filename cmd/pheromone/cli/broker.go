package cli

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pheromone-go/pheromone/connectors/kafka"
	"github.com/pheromone-go/pheromone/connectors/registry"
)

// list is a repeatable string flag.
type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }

func cmdBroker(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("broker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", "pheromone-data", "directory for the broker's data")
	addr := fs.String("addr", "127.0.0.1:9092", "listen address (of the first broker; the others take the next ports)")
	count := fs.Int("count", 1, "number of brokers in the cluster")
	regAddr := fs.String("registry", "127.0.0.1:8081", "address of the schema registry served beside the brokers (\"\": none)")
	cert := fs.String("tls-cert", "", "serve TLS with this certificate (PEM; with --tls-key)")
	key := fs.String("tls-key", "", "the key of --tls-cert (PEM)")
	selfSigned := fs.String("tls-self-signed", "", "serve TLS with a certificate made for this run; its CA goes to DIR/ca.pem (for kafka.tls.ca_file)")
	var supers, users, acls list
	fs.Var(&supers, "superuser", "a SASL user who passes every ACL: MECHANISM:NAME:PASSWORD (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512); repeatable")
	fs.Var(&users, "user", "a SASL user held to the ACLs: MECHANISM:NAME:PASSWORD; repeatable")
	fs.Var(&acls, "acl", "allow USER:OPERATION:RESOURCE:NAME (read, write, create, describe, alter, delete, all; topic, group, cluster, transactional_id; NAME* a prefix); repeatable, turns ACLs on")
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	opts, err := brokerSecurity(*cert, *key, *selfSigned, supers, users, acls)
	if err != nil {
		fmt.Fprintln(stderr, "pheromone broker:", err)
		return 2
	}
	b, err := kafka.StartBrokers(*addr, *count, filepath.Join(*dataDir, "broker"), opts...)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	security := "plaintext"
	switch {
	case *cert != "" || *selfSigned != "":
		security = "TLS"
		if len(supers)+len(users) > 0 {
			security = "SASL_SSL"
		}
	case len(supers)+len(users) > 0:
		security = "SASL_PLAINTEXT"
	}
	if len(acls) > 0 {
		security += fmt.Sprintf(", %d ACLs", len(acls))
	}
	fmt.Fprintf(stdout, "broker listening on %s (%s; data in %s)\n", strings.Join(b.Addrs(), ","), security, filepath.Join(*dataDir, "broker"))
	if *selfSigned != "" {
		fmt.Fprintf(stdout, "its CA certificate is %s\n", filepath.Join(*selfSigned, "ca.pem"))
	}
	if *regAddr != "" {
		// The brokers serve without it if its port is taken: say so.
		if reg, err := registry.StartEmbedded(*regAddr, filepath.Join(*dataDir, "registry")); err != nil {
			fmt.Fprintf(stderr, "pheromone broker: no schema registry: %v\n", err)
		} else {
			defer reg.Close()
			fmt.Fprintf(stdout, "schema registry on %s (schema_registry.url)\n", reg.URL())
		}
	}
	<-ctx.Done()
	b.Close()
	return 0
}

// brokerSecurity turns the broker's security flags into options; user
// specs are MECHANISM:NAME:PASSWORD.
func brokerSecurity(cert, key, selfSigned string, supers, users, acls []string) ([]kafka.BrokerOpt, error) {
	var opts []kafka.BrokerOpt
	switch {
	case cert != "" && selfSigned != "":
		return nil, errors.New("--tls-cert and --tls-self-signed exclude each other")
	case (cert == "") != (key == ""):
		return nil, errors.New("--tls-cert and --tls-key go together")
	case cert != "":
		c, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
		opts = append(opts, kafka.BrokerTLS(&tls.Config{Certificates: []tls.Certificate{c}, MinVersion: tls.VersionTLS12}))
	case selfSigned != "":
		c, err := writeSelfSigned(selfSigned)
		if err != nil {
			return nil, fmt.Errorf("--tls-self-signed: %w", err)
		}
		opts = append(opts, kafka.BrokerTLS(&tls.Config{Certificates: []tls.Certificate{c}, MinVersion: tls.VersionTLS12}))
	}
	for i, specs := range [][]string{supers, users} {
		for _, spec := range specs {
			p := strings.SplitN(spec, ":", 3)
			if len(p) != 3 || p[1] == "" || p[2] == "" {
				return nil, fmt.Errorf("user %q: want MECHANISM:NAME:PASSWORD", strings.Join(p[:min(2, len(p))], ":"))
			}
			switch p[0] {
			case "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
			default:
				return nil, fmt.Errorf("user %s: mechanism %q: want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", p[1], p[0])
			}
			opts = append(opts, kafka.BrokerUser(p[0], p[1], p[2], i == 0))
		}
	}
	for _, spec := range acls {
		o, err := kafka.BrokerACL(spec)
		if err != nil {
			return nil, err
		}
		opts = append(opts, o)
	}
	return opts, nil
}

// writeSelfSigned makes a CA-signed-by-itself certificate for localhost
// and 127.0.0.1, valid for a year, writes it to dir/ca.pem (clients trust
// it) and returns it with its key.
func writeSelfSigned(dir string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "pheromone broker"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(1, 0, 0),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")},
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return tls.Certificate{}, err
	}
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
