package registry

import (
	"encoding/base64"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/pheromone-go/pheromone/engine"
	"github.com/pheromone-go/pheromone/engine/app"
)

// TestRegistryBasicAuth: the client authenticates with the username and
// the password from its environment variable; a wrong password is a
// refusal (not "unavailable"), a missing variable is named, and neither
// error shows a password.
func TestRegistryBasicAuth(t *testing.T) {
	reg := srfake.New(srfake.WithAuth("Basic " + base64.StdEncoding.EncodeToString([]byte("app:reg-pw-1"))))
	defer reg.Close()
	reg.SeedSchema("orders-value", 1, 1, sr.Schema{Schema: clickV1, Type: sr.TypeAvro})
	cfg := &app.SchemaRegistry{URL: reg.URL(), Username: "app", PasswordEnv: "REG_PW"}
	env := map[string]string{}
	if _, err := NewClient(reg.URL(), cfg, func(k string) string { return env[k] }); err == nil || !strings.Contains(err.Error(), "REG_PW is not set") {
		t.Fatalf("missing variable: %v", err)
	}
	env["REG_PW"] = "reg-pw-1"
	cl, err := NewClient(reg.URL(), cfg, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Version(t.Context(), "orders-value", 0); err != nil {
		t.Fatalf("with the right password: %v", err)
	}
	env["REG_PW"] = "wrong-pw-2"
	bad, _ := NewClient(reg.URL(), cfg, func(k string) string { return env[k] })
	_, err = bad.Version(t.Context(), "orders-value", 0)
	if err == nil || errors.Is(err, engine.ErrUnavailable) || strings.Contains(err.Error(), "pw-") {
		t.Fatalf("wrong password: %v", err)
	}
}

// TestSinkRegistrationRefusedOrUnavailable: a registry that refuses the
// derived schema (a subject whose compatibility level forbids it answers
// 409) fails the sink's preparation with the registry's message — the
// function's attempt fails and is retried, then dead-lettered — while a
// registry answering 5xx is unavailable (the cycle restarts instead).
func TestSinkRegistrationRefusedOrUnavailable(t *testing.T) {
	reg := srfake.New()
	defer reg.Close()
	status := http.StatusConflict
	reg.Intercept(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodPost {
			return false
		}
		w.WriteHeader(status)
		_, _ = w.Write([]byte(`{"error_code":409,"message":"Schema being registered is incompatible with an earlier schema for subject \"out-value\""}`))
		return true
	})
	cl, _ := NewClient(reg.URL(), nil, nil)
	enc, _ := New(cl).Wire()[Avro].NewEncoder(&app.Sink{Name: "out", Topic: "out", Format: Avro, Registry: &app.Subject{}})
	s := arrow.NewSchema([]arrow.Field{{Name: "n", Type: arrow.PrimitiveTypes.Int64, Nullable: true}}, nil)
	err := enc.Prepare(s)
	if err == nil || errors.Is(err, engine.ErrUnavailable) || !strings.Contains(err.Error(), "incompatible with an earlier schema") {
		t.Fatalf("refused: %v", err)
	}
	status = http.StatusServiceUnavailable
	if err := enc.Prepare(s); !errors.Is(err, engine.ErrUnavailable) {
		t.Fatalf("5xx: %v", err)
	}
}

// TestRegistryOverTLS: an https registry is trusted through
// schema_registry.tls.ca_file, and refused without it.
func TestRegistryOverTLS(t *testing.T) {
	reg := srfake.NewRegistry()
	srv := httptest.NewTLSServer(reg.Handler())
	defer srv.Close()
	reg.SeedSchema("orders-value", 1, 1, sr.Schema{Schema: clickV1, Type: sr.TypeAvro})
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	cl, err := NewClient(srv.URL, &app.SchemaRegistry{URL: srv.URL, TLS: &app.TLS{CAFile: ca}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Version(t.Context(), "orders-value", 0); err != nil {
		t.Fatalf("with the CA: %v", err)
	}
	plain, _ := NewClient(srv.URL, nil, nil)
	if _, err := plain.Version(t.Context(), "orders-value", 0); err == nil {
		t.Fatal("an unknown certificate was trusted")
	}
}
