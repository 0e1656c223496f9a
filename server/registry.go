package server

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/pheromone-go/pheromone/connectors/registry"
	"github.com/pheromone-go/pheromone/engine"
	"github.com/pheromone-go/pheromone/engine/app"
)

// EmbeddedRegistry is the address of the schema registry Run serves beside
// the embedded broker (its schemas kept under the data dir); default
// 127.0.0.1:0 (any port; Info and the banner tell which).
func EmbeddedRegistry(addr string) Opt { return func(c *config) { c.embeddedRegistry = addr } }

// registryKinds declares the registry formats to validation: a source
// without columns of its own takes them from its schema_file, else from
// the app's schema_registry.url (the embedded registry exists only once
// the node runs).
func registryKinds() []app.FormatKind {
	return registry.Kinds(func(a *app.App) (*registry.Client, error) {
		r := a.SchemaRegistry
		if r == nil || r.URL == "" {
			return nil, errors.New("schema_registry.url is not set (the embedded registry exists only while the node runs)")
		}
		return registry.NewClient(r.URL, r, os.Getenv)
	})
}

// startEmbeddedRegistry serves the embedded registry beside the embedded
// broker; closeBroker, extended, stops both.
func startEmbeddedRegistry(cfg *config, closeBroker func()) (func(), error) {
	reg, err := registry.StartEmbedded(cfg.embeddedRegistry, filepath.Join(cfg.dataDir, "registry"))
	if err != nil {
		closeBroker()
		return nil, err
	}
	cfg.registryURL = reg.URL()
	return func() { reg.Close(); closeBroker() }, nil
}

// registryFormats are the registry formats for the engine, on the app's
// registry (or the embedded one), with the sources' schema files
// registered where their subjects have none. A registry that does not
// answer does not stop the start: the partitions that need it retry from
// their last commit and /readyz says why.
func registryFormats(ctx context.Context, a *app.App, cfg *config) (map[string]engine.WireFormat, error) {
	if !a.UsesRegistry() {
		return nil, nil
	}
	r := a.SchemaRegistry
	url := cfg.registryURL
	if r != nil && r.URL != "" {
		url = r.URL
	}
	if url == "" {
		return nil, errors.New("schema_registry.url must be set: the app has registry formats, and only the embedded broker comes with a registry")
	}
	cfg.registryURL = url
	cl, err := registry.NewClient(url, r, os.Getenv)
	if err != nil {
		return nil, err
	}
	f := registry.New(cl)
	if err := f.RegisterSchemaFiles(ctx, a); err != nil {
		if !errors.Is(err, engine.ErrUnavailable) {
			return nil, fmt.Errorf("schema registry: %w", err)
		}
		cfg.logger.Warn("the schema registry does not answer; partitions that need it will retry", "registry", url, "error", err)
	}
	return f.Wire(), nil
}

// upsertTable feeds one row of a table; a row whose schema the registry
// cannot give yet is retried with backoff (the registry down), not skipped.
func (w *wiring) upsertTable(ctx context.Context, table string) func(k, v []byte) error {
	return func(k, v []byte) error {
		backoff := 100 * time.Millisecond
		for {
			err := w.node.UpsertTable(table, k, v)
			if !errors.Is(err, engine.ErrUnavailable) || ctx.Err() != nil {
				return err
			}
			w.cfg.logger.Warn("a table row waits for the schema registry", "table", table, "error", err)
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			}
			backoff = min(2*backoff, 10*time.Second)
		}
	}
}

// generatorFormat is how a generator source's JSON records are written: as
// they are, or in its registry format under the schema derived from its
// columns (registered under its subject, retried while the registry does
// not answer).
func (w *wiring) generatorFormat(ctx context.Context, s *app.Source) (func([]byte) []byte, error) {
	if s.Registry == nil {
		return func(v []byte) []byte { return v }, nil
	}
	cl, err := registry.NewClient(w.cfg.registryURL, w.a.SchemaRegistry, os.Getenv)
	if err != nil {
		return nil, err
	}
	var conv *registry.Converter
	for backoff := 100 * time.Millisecond; ; backoff = min(2*backoff, 10*time.Second) {
		conv, err = registry.NewDerivedConverter(cl, s.Format, s.Registry.Name(s.Topic), s.Name, s.Schema)
		if !errors.Is(err, engine.ErrUnavailable) {
			break
		}
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		}
	}
	if err != nil {
		return nil, err
	}
	return func(v []byte) []byte {
		out, err := conv.Convert([][]byte{v})
		if err != nil {
			w.cfg.logger.Warn("generator record not encoded", "source", s.Name, "error", err)
			return nil
		}
		return out[0]
	}, nil
}
