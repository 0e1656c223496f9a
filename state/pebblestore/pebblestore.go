// Package pebblestore implements state.Store on top of Pebble. It is the only
// package of this module that imports Pebble.
package pebblestore

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/bloom"
	"github.com/cockroachdb/pebble/objstorage/objstorageprovider"
	"github.com/cockroachdb/pebble/sstable"
	"github.com/cockroachdb/pebble/vfs"

	"github.com/pheromone-go/pheromone/state"
)

// Options tune the store. The zero value gives the defaults documented on
// each field.
type Options struct {
	// CacheBytes is the block cache size. Default 64 MiB: random reads of
	// window panes are several times faster with a cache well above Pebble's
	// 8 MiB default.
	CacheBytes int64
	// InMemory keeps everything in memory (tests and benchmarks only).
	InMemory bool
}

// Store is a state.Store backed by one Pebble database.
type Store struct {
	db      *pebble.DB
	cache   *pebble.Cache
	dir     string // "" in memory
	opts    *pebble.Options
	ingests atomic.Uint64
}

var (
	_ state.Store         = (*Store)(nil)
	_ state.SpaceReporter = (*Store)(nil)
	_ state.Ingester      = (*Store)(nil)
)

// Open opens or creates the database in dir.
func Open(dir string, o Options) (*Store, error) {
	if o.CacheBytes <= 0 {
		o.CacheBytes = 64 << 20
	}
	cache := pebble.NewCache(o.CacheBytes)
	opts := &pebble.Options{
		Cache:                       cache,
		MemTableSize:                32 << 20,
		MemTableStopWritesThreshold: 4,
		L0CompactionThreshold:       4,
		L0StopWritesThreshold:       24,
		MaxConcurrentCompactions:    func() int { return 2 },
		Logger:                      quietLogger{},
	}
	opts.Levels = make([]pebble.LevelOptions, 7)
	for i := range opts.Levels {
		opts.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
		opts.Levels[i].BlockSize = 32 << 10
		opts.Levels[i].TargetFileSize = 8 << 20 << i
	}
	if o.InMemory {
		opts.FS = vfs.NewMem()
	}
	if !o.InMemory {
		if err := checkDir(dir); err != nil {
			cache.Unref()
			return nil, err
		}
	}
	db, err := openRecovering(dir, opts)
	if err != nil {
		cache.Unref()
		if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EWOULDBLOCK) || strings.Contains(err.Error(), "lock held") {
			return nil, fmt.Errorf("state: data dir %s is in use by another node (two `pheromone run` on one --data-dir?): %w", dir, err)
		}
		return nil, fmt.Errorf("state: open %s: %w", dir, err)
	}
	st := &Store{db: db, cache: cache, opts: opts}
	if !o.InMemory {
		st.dir = dir
	}
	return st, nil
}

// ErrDamaged is wrapped by Open when the data dir cannot be trusted.
var ErrDamaged = errors.New("state: data dir damaged")

// checkDir refuses a data dir that holds Pebble files but not the CURRENT
// file that names its manifest (Pebble would fail on it in obscure ways).
func checkDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) == 0 {
		return nil // new or empty: Pebble creates it
	}
	hasCurrent, hasPebble := false, false
	for _, e := range entries {
		n := e.Name()
		switch {
		case n == "CURRENT":
			hasCurrent = true
		case strings.HasPrefix(n, "MANIFEST-"), strings.HasSuffix(n, ".sst"), strings.HasSuffix(n, ".log"), n == "LOCK":
			hasPebble = true
		}
	}
	if hasPebble && !hasCurrent {
		return fmt.Errorf("%w: %s has state files but no CURRENT; move it away and start again to restore the state from the changelog", ErrDamaged, dir)
	}
	return nil
}

// openRecovering is pebble.Open with its panics on damaged files turned
// into errors.
func openRecovering(dir string, opts *pebble.Options) (db *pebble.DB, err error) {
	opening.Add(1)
	defer opening.Add(-1)
	defer func() {
		if p := recover(); p != nil {
			db, err = nil, fmt.Errorf("%w: %s: %v; move it away and start again to restore the state from the changelog", ErrDamaged, dir, p)
		}
	}()
	return pebble.Open(dir, opts)
}

// Get implements state.Reader.
func (s *Store) Get(key []byte) ([]byte, error) { return get(s.db, key) }

// Scan implements state.Reader.
func (s *Store) Scan(prefix []byte, fn func(k, v []byte) error) error {
	return scan(s.db, prefix, fn)
}

type pebbleReader interface {
	Get(key []byte) ([]byte, io.Closer, error)
	NewIter(o *pebble.IterOptions) (*pebble.Iterator, error)
}

func get(r pebbleReader, key []byte) ([]byte, error) {
	v, closer, err := r.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, state.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("state: get: %w", err)
	}
	out := append([]byte(nil), v...)
	return out, closer.Close()
}

func scan(r pebbleReader, prefix []byte, fn func(k, v []byte) error) error {
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return fmt.Errorf("state: scan: %w", err)
	}
	for ok := it.First(); ok; ok = it.Next() {
		if err := fn(it.Key(), it.Value()); err != nil {
			it.Close()
			return err
		}
	}
	if err := it.Error(); err != nil {
		it.Close()
		return fmt.Errorf("state: scan: %w", err)
	}
	return it.Close()
}

// prefixEnd returns the smallest key greater than every key with prefix p,
// or nil when there is none.
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		end[i]++
		if end[i] != 0 {
			return end[:i+1]
		}
	}
	return nil
}

// NewBatch implements state.Store.
func (s *Store) NewBatch() state.Batch { return &batch{b: s.db.NewBatch()} }

// Sync implements state.Store: an empty synced write to the log.
func (s *Store) Sync() error { return s.db.LogData(nil, pebble.Sync) }

// NewBatchSized implements state.SizedBatcher.
func (s *Store) NewBatchSized(size int) state.Batch { return &batch{b: s.db.NewBatchWithSize(size)} }

// Snapshot implements state.Store.
func (s *Store) Snapshot() state.Snapshot { return &snapshot{s: s.db.NewSnapshot()} }

// Close flushes and closes the database.
func (s *Store) Close() error {
	err := s.db.Close()
	s.cache.Unref()
	if err != nil {
		return fmt.Errorf("state: close: %w", err)
	}
	return nil
}

// FreeBytes implements state.SpaceReporter: the space left on the file
// system of the data dir (unlimited in memory).
func (s *Store) FreeBytes() (uint64, error) {
	if s.dir == "" {
		return math.MaxUint64, nil
	}
	return freeBytes(s.dir)
}

// DiskBytes reports the size of the database's files.
func (s *Store) DiskBytes() uint64 { return s.db.Metrics().DiskSpaceUsage() }

// batch wraps a pebble batch; done makes Close after Commit (or a second
// Close) a no-op, so `defer b.Close()` is safe: releasing a pebble batch
// twice would hand it to two users through pebble's pool.
type batch struct {
	b    *pebble.Batch
	done bool
}

func (b *batch) Set(k, v []byte) { _ = b.b.Set(k, v, nil) }
func (b *batch) Delete(k []byte) { _ = b.b.Delete(k, nil) }
func (b *batch) Len() int        { return int(b.b.Count()) }
func (b *batch) Commit(sync bool) error {
	if b.done {
		return errors.New("state: commit of a committed or closed batch")
	}
	b.done = true
	o := pebble.NoSync
	if sync {
		o = pebble.Sync
	}
	if err := b.b.Commit(o); err != nil {
		b.b.Close()
		return fmt.Errorf("state: commit: %w", err)
	}
	return b.b.Close()
}
func (b *batch) Close() error {
	if b.done {
		return nil
	}
	b.done = true
	return b.b.Close()
}

type snapshot struct{ s *pebble.Snapshot }

func (s *snapshot) Get(key []byte) ([]byte, error) { return get(s.s, key) }
func (s *snapshot) Scan(prefix []byte, fn func(k, v []byte) error) error {
	return scan(s.s, prefix, fn)
}
func (s *snapshot) Close() error { return s.s.Close() }

type quietLogger struct{}

func (quietLogger) Infof(string, ...any) {}
func (quietLogger) Errorf(format string, args ...any) {
	fmt.Printf("pebble: "+format+"\n", args...)
}

// Fatalf is Pebble's "cannot go on" (a failed WAL or manifest write, a
// full disk): during Open it panics, which Open turns into an error;
// afterwards it ends the process with one clear line instead of a panic's
// stack trace — the store cannot be trusted, and the committed state
// (with the changelog) is what a restart resumes from.
func (quietLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf("pebble: "+format, args...)
	if opening.Load() > 0 {
		panic(msg)
	}
	fmt.Fprintf(os.Stderr, "pheromone: the state store failed and cannot be trusted: %s (a full disk? free space and restart; the last commit is kept)\n", msg)
	os.Exit(1)
}

// opening counts Opens under way (their Pebble panics become errors).
var opening atomic.Int32

// Ingest implements state.Ingester: kvs are written to an sstable, which
// Pebble links into the database as newer than everything in it.
func (s *Store) Ingest(kvs []state.KV) error {
	if len(kvs) == 0 {
		return nil
	}
	fs := s.opts.FS
	if fs == nil {
		fs = vfs.Default
	}
	path := fmt.Sprintf("ingest-%d-%d.sst", os.Getpid(), s.ingests.Add(1))
	if s.dir != "" {
		path = filepath.Join(s.dir, path)
	}
	f, err := fs.Create(path)
	if err != nil {
		return fmt.Errorf("state: ingest: %w", err)
	}
	defer func() { _ = fs.Remove(path) }() // Pebble keeps its own link
	w := sstable.NewWriter(objstorageprovider.NewFileWritable(f), s.opts.MakeWriterOptions(0, s.db.FormatMajorVersion().MaxTableFormat()))
	for _, kv := range kvs {
		if kv.Value == nil {
			err = w.Delete(kv.Key)
		} else {
			err = w.Set(kv.Key, kv.Value)
		}
		if err != nil {
			_ = w.Close()
			return fmt.Errorf("state: ingest: %w", err)
		}
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("state: ingest: %w", err)
	}
	if err := s.db.Ingest([]string{path}); err != nil {
		return fmt.Errorf("state: ingest: %w", err)
	}
	return nil
}
