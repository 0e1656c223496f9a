package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"
)

// Embedded is the schema registry `pheromone run` (with the embedded
// broker) and `pheromone broker --registry` serve: franz-go's in-memory
// registry, its schemas written to a file after every change and read back
// at start, so schema ids (which records carry) survive restarts.
// Compatibility settings are not kept.
type Embedded struct {
	reg  *srfake.Registry
	srv  *http.Server
	url  string
	file string
	mu   sync.Mutex // writes of file
	done chan struct{}
}

// StartEmbedded serves a registry on addr (port 0: any), keeping its
// schemas in dir/schemas.json (dir "": nowhere).
func StartEmbedded(addr, dir string) (*Embedded, error) {
	e := &Embedded{reg: srfake.NewRegistry(), done: make(chan struct{})}
	if dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("schema registry: %w", err)
		}
		e.file = filepath.Join(dir, "schemas.json")
		if err := e.load(); err != nil {
			return nil, err
		}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("schema registry on %s: %w", addr, err)
	}
	e.url = "http://" + ln.Addr().String()
	h := e.reg.Handler()
	e.srv = &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r)
		if r.Method != http.MethodGet && e.file != "" {
			if err := e.save(); err != nil {
				// The change is served but would not survive a restart.
				fmt.Fprintf(os.Stderr, "schema registry: keeping schemas in %s: %v\n", e.file, err)
			}
		}
	})}
	go func() {
		defer close(e.done)
		_ = e.srv.Serve(ln)
	}()
	return e, nil
}

// URL is the registry's address.
func (e *Embedded) URL() string { return e.url }

// Close stops serving.
func (e *Embedded) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = e.srv.Shutdown(ctx)
	<-e.done
}

// save writes every schema version to the file (atomically).
func (e *Embedded) save() error {
	rec := httptest.NewRecorder()
	e.reg.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/schemas", nil))
	if rec.Code != http.StatusOK {
		return fmt.Errorf("listing schemas: %d", rec.Code)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	tmp := e.file + ".tmp"
	if err := os.WriteFile(tmp, rec.Body.Bytes(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, e.file)
}

// load seeds the registry from the file, in id order.
func (e *Embedded) load() error {
	b, err := os.ReadFile(e.file)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("schema registry: %w", err)
	}
	var all []sr.SubjectSchema
	if err := json.Unmarshal(b, &all); err != nil {
		return fmt.Errorf("schema registry: %s: %w", e.file, err)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].ID < all[j].ID })
	seeded := map[int]bool{}
	for _, s := range all {
		if seeded[s.ID] {
			// The same schema under another subject keeps its id.
			if _, _, err := e.reg.RegisterSchema(s.Subject, s.Schema); err != nil {
				return fmt.Errorf("schema registry: %s: subject %s: %w", e.file, s.Subject, err)
			}
			continue
		}
		e.reg.SeedSchema(s.Subject, s.Version, s.ID, s.Schema)
		seeded[s.ID] = true
	}
	return nil
}
