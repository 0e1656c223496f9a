package pebblestore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pheromone-go/pheromone/state"
)

// The contract every state.Store must keep, run on disk and in memory.
func TestContract(t *testing.T) {
	for _, mem := range []bool{false, true} {
		t.Run(fmt.Sprintf("in_memory=%v", mem), func(t *testing.T) {
			dir := t.TempDir()
			open := func() state.Store {
				s, err := Open(dir, Options{InMemory: mem})
				if err != nil {
					t.Fatal(err)
				}
				return s
			}
			s := open()
			if _, err := s.Get([]byte("a")); !errors.Is(err, state.ErrNotFound) {
				t.Fatalf("missing key: %v", err)
			}
			b := s.NewBatch()
			b.Set([]byte("p/1"), []byte("one"))
			b.Set([]byte("p/2"), []byte("two\x00|binary"))
			b.Set([]byte("q/1"), []byte("other"))
			b.Set([]byte("p\xff"), []byte("edge"))
			// Nothing is visible before Commit.
			if _, err := s.Get([]byte("p/1")); !errors.Is(err, state.ErrNotFound) {
				t.Fatalf("uncommitted write visible: %v", err)
			}
			if b.Len() != 4 {
				t.Fatalf("batch len %d", b.Len())
			}
			snapBefore := s.Snapshot()
			if err := b.Commit(true); err != nil {
				t.Fatal(err)
			}
			if v, err := s.Get([]byte("p/2")); err != nil || string(v) != "two\x00|binary" {
				t.Fatalf("get = %q, %v", v, err)
			}
			var keys []string
			if err := s.Scan([]byte("p/"), func(k, v []byte) error { keys = append(keys, string(k)+"="+string(v)); return nil }); err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(keys) != "[p/1=one p/2=two\x00|binary]" {
				t.Fatalf("scan = %q", keys)
			}
			if _, err := snapBefore.Get([]byte("p/1")); !errors.Is(err, state.ErrNotFound) {
				t.Fatalf("snapshot sees a later write: %v", err)
			}
			snapBefore.Close()
			stop := errors.New("stop")
			if err := s.Scan([]byte("p"), func(k, v []byte) error { return stop }); !errors.Is(err, stop) {
				t.Fatalf("scan error = %v", err)
			}
			b = s.NewBatch()
			b.Delete([]byte("p/1"))
			if err := b.Commit(true); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Get([]byte("p/1")); !errors.Is(err, state.ErrNotFound) {
				t.Fatalf("deleted key: %v", err)
			}
			// Close after Commit is a no-op (callers defer it). Pins a bug:
			// Commit had already released the pebble batch to pebble's pool,
			// so a later Close released it again — by then the next batch
			// someone took from the pool, wiping that batch's writes.
			b1 := s.NewBatch() // likely the same pebble batch, reused
			b1.Set([]byte("r/1"), []byte("one"))
			if err := b.Close(); err != nil {
				t.Fatalf("close after commit: %v", err)
			}
			if b1.Len() != 1 {
				t.Fatalf("closing a committed batch emptied another batch (len %d)", b1.Len())
			}
			if err := b1.Commit(false); err != nil {
				t.Fatal(err)
			}
			if v, err := s.Get([]byte("r/1")); err != nil || string(v) != "one" {
				t.Fatalf("r/1 = %q, %v", v, err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if mem {
				return
			}
			s = open()
			defer s.Close()
			if v, err := s.Get([]byte("p/2")); err != nil || string(v) != "two\x00|binary" {
				t.Fatalf("after reopen: %q, %v", v, err)
			}
		})
	}
}

// TestDamagedOrBusyDataDir pins issue 11: a data dir without its CURRENT
// file made Pebble panic on every start, and a second node on one data dir
// got "resource temporarily unavailable". Both are now one clear error.
func TestDamagedOrBusyDataDir(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	b := s.NewBatch()
	b.Set([]byte("k"), []byte("v"))
	if err := b.Commit(true); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, Options{}); err == nil || !strings.Contains(err.Error(), "in use by another node") {
		t.Errorf("second open of a data dir in use: %v", err)
	}
	s.Close()
	if err := os.Remove(filepath.Join(dir, "CURRENT")); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, Options{}); !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), "no CURRENT") {
		t.Errorf("open of a damaged data dir: %v", err)
	}
}
