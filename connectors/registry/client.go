// Package registry provides the schema-registry formats avro, protobuf and
// json_schema: records in the Confluent wire format (magic byte 0, a 4-byte
// schema id, for Protobuf the message indexes, then the body), schemas
// from a Confluent-compatible registry through franz-go's sr client.
// Sources take their columns from the registry (or a schema file) and
// decode each record by the schema its id names, matching fields to
// columns by name; sinks derive their schema from the function's Arrow
// output and register it. It also serves the embedded registry that
// `pheromone run` starts beside the embedded broker.
package registry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/sr"

	"github.com/pheromone-go/pheromone/engine"
	"github.com/pheromone-go/pheromone/engine/app"
)

// Client is a schema registry client that keeps every schema it fetched:
// a schema id names one schema forever, so each is asked for once.
type Client struct {
	sr  *sr.Client
	url string

	mu   sync.Mutex
	byID map[int]sr.Schema
}

// Timeout bounds one request to the registry.
const Timeout = 10 * time.Second

// NewClient is a client of the registry at url with r's authentication and
// TLS (r may be nil); the password comes from getenv.
func NewClient(url string, r *app.SchemaRegistry, getenv func(string) string) (*Client, error) {
	opts := []sr.ClientOpt{sr.URLs(url), sr.UserAgent("pheromone")}
	httpcl := &http.Client{Timeout: Timeout}
	if r != nil {
		if r.Username != "" {
			pw := getenv(r.PasswordEnv)
			if pw == "" {
				return nil, fmt.Errorf("schema_registry.password_env: the environment variable %s is not set", r.PasswordEnv)
			}
			opts = append(opts, sr.BasicAuth(r.Username, pw))
		}
		if t := r.TLS; t != nil {
			cfg := &tls.Config{ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify, MinVersion: tls.VersionTLS12} //nolint:gosec // only when asked for
			if t.CAFile != "" {
				pem, err := os.ReadFile(t.CAFile)
				if err != nil {
					return nil, fmt.Errorf("schema_registry.tls.ca_file: %w", err)
				}
				cfg.RootCAs = x509.NewCertPool()
				if !cfg.RootCAs.AppendCertsFromPEM(pem) {
					return nil, fmt.Errorf("schema_registry.tls.ca_file: %s holds no PEM certificate", t.CAFile)
				}
			}
			if t.CertFile != "" {
				cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
				if err != nil {
					return nil, fmt.Errorf("schema_registry.tls.cert_file/key_file: %w", err)
				}
				cfg.Certificates = []tls.Certificate{cert}
			}
			httpcl.Transport = &http.Transport{TLSClientConfig: cfg}
		}
	}
	opts = append(opts, sr.HTTPClient(httpcl))
	cl, err := sr.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("schema registry %s: %w", url, err)
	}
	return &Client{sr: cl, url: url, byID: map[int]sr.Schema{}}, nil
}

// URL is the registry's address.
func (c *Client) URL() string { return c.url }

// ErrNotFound is a schema id or subject the registry does not know.
var ErrNotFound = errors.New("not found in the schema registry")

// classify tells a registry's answer (not found, refused) from its absence
// (unreachable, 5xx: wraps engine.ErrUnavailable, worth retrying).
func (c *Client) classify(what string, err error) error {
	var re *sr.ResponseError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &re) && re.StatusCode == http.StatusNotFound:
		return fmt.Errorf("%s: %w", what, ErrNotFound)
	case errors.As(err, &re) && re.StatusCode < 500:
		return fmt.Errorf("schema registry %s: %s: %s", c.url, what, re.Message)
	}
	return fmt.Errorf("schema registry %s: %s: %w (%w)", c.url, what, engine.ErrUnavailable, err)
}

// SchemaByID is the schema registered with id.
func (c *Client) SchemaByID(ctx context.Context, id int) (sr.Schema, error) {
	c.mu.Lock()
	s, ok := c.byID[id]
	c.mu.Unlock()
	if ok {
		return s, nil
	}
	ctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	s, err := c.sr.SchemaByID(ctx, id)
	if err = c.classify(fmt.Sprintf("schema id %d", id), err); err != nil {
		return sr.Schema{}, err
	}
	c.mu.Lock()
	c.byID[id] = s
	c.mu.Unlock()
	return s, nil
}

// Version is subject's schema at version (0: the latest) and its id.
func (c *Client) Version(ctx context.Context, subject string, version int) (sr.SubjectSchema, error) {
	if version == 0 {
		version = -1
	}
	ctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	ss, err := c.sr.SchemaByVersion(ctx, subject, version)
	what := fmt.Sprintf("subject %q", subject)
	if version > 0 {
		what += fmt.Sprintf(" version %d", version)
	}
	if err = c.classify(what, err); err != nil {
		return sr.SubjectSchema{}, err
	}
	c.mu.Lock()
	c.byID[ss.ID] = ss.Schema
	c.mu.Unlock()
	return ss, nil
}

// Register registers s under subject (the registry checks the subject's
// compatibility level) and returns its id; an identical schema keeps its id.
func (c *Client) Register(ctx context.Context, subject string, s sr.Schema) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	ss, err := c.sr.CreateSchema(ctx, subject, s)
	if err = c.classify(fmt.Sprintf("registering under subject %q", subject), err); err != nil {
		return 0, err
	}
	c.mu.Lock()
	c.byID[ss.ID] = s
	c.mu.Unlock()
	return ss.ID, nil
}
