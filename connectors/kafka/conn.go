package kafka

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/oauth"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/pheromone-go/pheromone/engine/app"
)

// Conn is how the node reaches a Kafka cluster: its seed brokers, and the
// settings every client it opens shares (sources, producers, transactional
// writers, changelog readers, admin, the group describer).
type Conn struct {
	Brokers []string
	// TLS, when set, encrypts every connection with this configuration.
	TLS *tls.Config
	// SASL, when set, authenticates every connection.
	SASL *SASL
}

// SASL says how the node authenticates to the brokers. Password is a
// secret: String never shows it.
type SASL struct {
	// Mechanism is PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER.
	Mechanism string
	User      string
	Password  string
	// TokenFile holds the OAUTHBEARER token; it is read again at every
	// authentication, so it may be rotated.
	TokenFile string
}

// String describes s without its secret.
func (s SASL) String() string {
	if s.Mechanism == "OAUTHBEARER" {
		return fmt.Sprintf("%s (token from %s)", s.Mechanism, s.TokenFile)
	}
	return fmt.Sprintf("%s as %s", s.Mechanism, s.User)
}

// Plain is a Conn to brokers with no further settings.
func Plain(brokers ...string) Conn { return Conn{Brokers: brokers} }

// opts are the client options of every client of c, then extra.
func (c Conn) opts(extra ...kgo.Opt) []kgo.Opt {
	o := []kgo.Opt{kgo.SeedBrokers(c.Brokers...)}
	if c.TLS != nil {
		o = append(o, kgo.DialTLSConfig(c.TLS.Clone()))
	}
	if c.SASL != nil {
		o = append(o, kgo.SASL(c.SASL.mechanism()))
	}
	return append(o, extra...)
}

// client opens a client of c.
func (c Conn) client(extra ...kgo.Opt) (*kgo.Client, error) {
	return kgo.NewClient(c.opts(extra...)...)
}

// Check reports what is wrong with s, before any connection is tried.
func (s SASL) Check() error {
	switch s.Mechanism {
	case "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
		if s.User == "" {
			return fmt.Errorf("kafka: sasl %s needs a user", s.Mechanism)
		}
	case "OAUTHBEARER":
		if s.TokenFile == "" {
			return fmt.Errorf("kafka: sasl OAUTHBEARER needs a token file")
		}
	default:
		return fmt.Errorf("kafka: sasl mechanism %q: want PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER", s.Mechanism)
	}
	return nil
}

func (s SASL) mechanism() sasl.Mechanism {
	switch s.Mechanism {
	case "PLAIN":
		return plain.Auth{User: s.User, Pass: s.Password}.AsMechanism()
	case "SCRAM-SHA-512":
		return scram.Auth{User: s.User, Pass: s.Password}.AsSha512Mechanism()
	case "OAUTHBEARER":
		file := s.TokenFile
		return oauth.Oauth(func(context.Context) (oauth.Auth, error) {
			b, err := os.ReadFile(file)
			if err != nil {
				return oauth.Auth{}, fmt.Errorf("kafka: oauth token: %w", err)
			}
			return oauth.Auth{Token: strings.TrimSpace(string(b))}, nil
		})
	}
	return scram.Auth{User: s.User, Pass: s.Password}.AsSha256Mechanism()
}

// ConnFor is the Conn of an app's kafka section to brokers: its TLS files
// loaded, its SASL password read from the environment through getenv.
// Errors name files and variables, never a secret.
func ConnFor(brokers []string, k app.Kafka, getenv func(string) string) (Conn, error) {
	c := Conn{Brokers: brokers}
	if t := k.TLS; t != nil {
		cfg := &tls.Config{ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify, MinVersion: tls.VersionTLS12}
		if t.CAFile != "" {
			pem, err := os.ReadFile(t.CAFile)
			if err != nil {
				return Conn{}, fmt.Errorf("kafka.tls.ca_file: %w", err)
			}
			cfg.RootCAs = x509.NewCertPool()
			if !cfg.RootCAs.AppendCertsFromPEM(pem) {
				return Conn{}, fmt.Errorf("kafka.tls.ca_file: %s holds no PEM certificate", t.CAFile)
			}
		}
		if t.CertFile != "" {
			cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
			if err != nil {
				return Conn{}, fmt.Errorf("kafka.tls.cert_file/key_file: %w", err)
			}
			cfg.Certificates = []tls.Certificate{cert}
		}
		c.TLS = cfg
	}
	if s := k.SASL; s != nil {
		c.SASL = &SASL{Mechanism: s.Mechanism, User: s.Username, TokenFile: s.TokenFile}
		if s.PasswordEnv != "" {
			c.SASL.Password = getenv(s.PasswordEnv)
			if c.SASL.Password == "" {
				return Conn{}, fmt.Errorf("kafka.sasl.password_env: the environment variable %s is not set", s.PasswordEnv)
			}
		}
		if err := c.SASL.Check(); err != nil {
			return Conn{}, err
		}
	}
	return c, nil
}
