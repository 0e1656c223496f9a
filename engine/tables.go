package engine

import (
	"fmt"
	"sync"

	"github.com/apache/arrow/go/v15/arrow"

	"github.com/pheromone-go/pheromone/engine/app"
	"github.com/pheromone-go/pheromone/engine/codec"
)

// tableStore holds the app's reference tables in memory: the latest row
// per key, each a one-row Arrow record. Readers (lookup functions on the
// executors) and the writer (the table feed) may run concurrently.
type tableStore struct {
	mu     sync.RWMutex
	tables map[string]*refTable
}

type refTable struct {
	cfg  *app.Table
	dec  *codec.JSONDecoder // guarded by tableStore.mu (write lock)
	rows map[string]arrow.Record
}

func newTableStore(a *app.App) (*tableStore, error) {
	ts := &tableStore{tables: map[string]*refTable{}}
	for i := range a.Tables {
		t := &a.Tables[i]
		d, err := codec.NewJSONDecoder(t.ArrowSchema(), t.Key)
		if err != nil {
			return nil, err
		}
		ts.tables[t.Name] = &refTable{cfg: t, dec: d, rows: map[string]arrow.Record{}}
	}
	return ts, nil
}

// upsert decodes value (a JSON object of the table's schema) and makes it
// the row of its key; a nil value deletes key (a compacted-topic tombstone).
func (ts *tableStore) upsert(table string, key, value []byte) error {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	t := ts.tables[table]
	if t == nil {
		return fmt.Errorf("engine: no table %q", table)
	}
	if value == nil {
		if old, ok := t.rows[string(key)]; ok {
			old.Release()
			delete(t.rows, string(key))
		}
		return nil
	}
	if err := t.dec.Append(value); err != nil {
		return fmt.Errorf("table %s: %w", table, err)
	}
	rec := t.dec.NewRecord()
	k := string(codec.AppendKey(nil, rec.Column(rec.Schema().FieldIndices(t.cfg.Key)[0]), 0))
	if old, ok := t.rows[k]; ok {
		old.Release()
	}
	t.rows[k] = rec
	return nil
}

// LookupRow implements builtin.Tables.
func (ts *tableStore) LookupRow(table, key string) (arrow.Record, bool) {
	ts.mu.RLock()
	defer ts.mu.RUnlock()
	t := ts.tables[table]
	if t == nil {
		return nil, false
	}
	r, ok := t.rows[key]
	if ok {
		r.Retain()
	}
	return r, ok
}

// Len implements builtin.Tables.
func (ts *tableStore) Len(table string) int { return ts.size(table) }

func (ts *tableStore) size(table string) int {
	ts.mu.RLock()
	defer ts.mu.RUnlock()
	if t := ts.tables[table]; t != nil {
		return len(t.rows)
	}
	return 0
}

// UpsertTable feeds one row of a reference table (key is the record key of
// a compacted topic, used for tombstones; the row's own key column decides
// where it is kept). A nil value deletes key.
func (n *Node) UpsertTable(table string, key, value []byte) error {
	return n.tables.upsert(table, key, value)
}

// TableSize reports how many rows a reference table holds.
func (n *Node) TableSize(table string) int { return n.tables.size(table) }
