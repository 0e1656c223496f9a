// Package state defines the small key-value contract the engine keeps its
// buckets, trigger state and source offsets in. Implementations live in
// sub-packages (pebblestore); the engine only sees these interfaces.
//
// The package is a leaf: it imports nothing else from this module.
package state

import "errors"

// ErrNotFound is returned by Get when the key does not exist.
var ErrNotFound = errors.New("state: not found")

// Reader reads committed state.
type Reader interface {
	// Get returns a copy of the value stored under key, or ErrNotFound.
	Get(key []byte) ([]byte, error)
	// Scan calls fn for every key with the given prefix in ascending order.
	// k and v are valid only during the call; copy them to keep them.
	// Returning an error from fn stops the scan and returns that error.
	Scan(prefix []byte, fn func(k, v []byte) error) error
}

// Batch collects writes that become visible together, atomically, on Commit.
// A Batch is not safe for concurrent use. Set and Delete copy their arguments.
type Batch interface {
	Set(key, value []byte)
	Delete(key []byte)
	// Len reports how many operations the batch holds.
	Len() int
	// Commit applies the batch atomically. With sync set, Commit returns only
	// after the batch is durable on disk. A batch cannot be reused after Commit
	// or Close.
	Commit(sync bool) error
	// Close releases the batch without applying it; after Commit, or a
	// second time, it does nothing (so it can be deferred).
	Close() error
}

// Store is a durable ordered key-value store.
// All methods are safe for concurrent use.
type Store interface {
	Reader
	NewBatch() Batch
	// Snapshot returns a consistent read view; Close it when done.
	Snapshot() Snapshot
	Close() error
	// Sync makes every batch committed so far durable.
	Sync() error
}

// SizedBatcher is implemented by stores that can preallocate a batch for
// about size bytes of keys and values (restores write large batches).
type SizedBatcher interface {
	NewBatchSized(size int) Batch
}

// Ingester is implemented by stores that can take a bulk of changes as a
// file (a Pebble sstable) instead of through a batch: several times
// faster for a restore.
type Ingester interface {
	// Ingest applies kvs — sorted by key, each key once; a nil Value is a
	// delete — atomically and durably, as newer than everything stored.
	Ingest(kvs []KV) error
}

// KV is one change given to Ingest.
type KV struct{ Key, Value []byte }

// SpaceReporter is implemented by stores on a disk: FreeBytes is the space
// left on the file system that holds the store.
type SpaceReporter interface {
	FreeBytes() (uint64, error)
}

// Snapshot is a point-in-time Reader.
type Snapshot interface {
	Reader
	Close() error
}
