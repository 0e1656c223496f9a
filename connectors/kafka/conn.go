package kafka

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/aws"
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

	// refused, when set, hears of every broker that refused a login.
	refused func(broker string, err error)
}

// SASL says how the node authenticates to the brokers. Password is a
// secret: String never shows it.
type SASL struct {
	// Mechanism is PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER or
	// AWS_MSK_IAM.
	Mechanism string
	User      string
	Password  string
	// TokenFile holds the OAUTHBEARER token; it is read again at every
	// authentication, so it may be rotated.
	TokenFile string
	// Getenv reads AWS_MSK_IAM's credentials (AWS_ACCESS_KEY_ID,
	// AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN) at every authentication;
	// default os.Getenv.
	Getenv func(string) string
	// Now is the clock an OAUTHBEARER token's expiry is checked against;
	// default time.Now.
	Now func() time.Time
}

// String describes s without its secret ("none" for no SASL).
func (s *SASL) String() string {
	if s == nil {
		return "none"
	}
	switch s.Mechanism {
	case "OAUTHBEARER":
		return fmt.Sprintf("%s (token from %s)", s.Mechanism, s.TokenFile)
	case "AWS_MSK_IAM":
		return s.Mechanism + " (credentials from AWS_ACCESS_KEY_ID)"
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
		if c.refused != nil {
			o = append(o, kgo.WithHooks(loginHook(c.refused)))
		}
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
	case "AWS_MSK_IAM":
		if _, err := s.awsAuth(); err != nil {
			return err
		}
	default:
		return fmt.Errorf("kafka: sasl mechanism %q: want PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER or AWS_MSK_IAM", s.Mechanism)
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
		return oauth.Oauth(func(context.Context) (oauth.Auth, error) {
			tok, err := s.token()
			return oauth.Auth{Token: tok}, err
		})
	case "AWS_MSK_IAM":
		return aws.ManagedStreamingIAM(func(context.Context) (aws.Auth, error) { return s.awsAuth() })
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
		c.SASL = &SASL{Mechanism: s.Mechanism, User: s.Username, TokenFile: s.TokenFile, Getenv: getenv}
		switch {
		case s.PasswordEnv != "":
			c.SASL.Password = getenv(s.PasswordEnv)
			if c.SASL.Password == "" {
				return Conn{}, fmt.Errorf("kafka.sasl.password_env: the environment variable %s is not set", s.PasswordEnv)
			}
		case s.PasswordFile != "":
			b, err := os.ReadFile(s.PasswordFile)
			if err != nil {
				return Conn{}, fmt.Errorf("kafka.sasl.password_file: %w", err)
			}
			if c.SASL.Password = strings.TrimRight(string(b), "\r\n"); c.SASL.Password == "" {
				return Conn{}, fmt.Errorf("kafka.sasl.password_file: %s is empty", s.PasswordFile)
			}
		}
		if err := c.SASL.Check(); err != nil {
			return Conn{}, err
		}
	}
	return c, nil
}
