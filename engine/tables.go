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
	cfg   *app.Table
	dec   *codec.JSONDecoder // json rows; guarded by tableStore.mu (write lock)
	wired RecordDecoder      // rows of a connector's format, likewise
	rows  map[string]arrow.Record
}

func newTableStore(a *app.App, formats map[string]WireFormat) (*tableStore, error) {
	ts := &tableStore{tables: map[string]*refTable{}}
	for i := range a.Tables {
		t := &a.Tables[i]
		rt := &refTable{cfg: t, rows: map[string]arrow.Record{}}
		var err error
		if wf := formats[t.Format]; wf != nil {
			rt.wired, err = wf.NewDecoder(t.Source())
		} else {
			rt.dec, err = codec.NewJSONDecoder(t.ArrowSchema(), t.Key)
		}
		if err != nil {
			return nil, fmt.Errorf("engine: table %s: %w", t.Name, err)
		}
		ts.tables[t.Name] = rt
	}
	return ts, nil
}

// upsert decodes value (a row of the table's schema and format) and makes it
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
	var rec arrow.Record
	if t.wired != nil {
		// An unavailable registry comes back wrapped in ErrUnavailable: the
		// feed retries the row rather than skip it.
		if err := t.wired.Append(&Record{Key: key, Value: value}); err != nil {
			t.wired.NewRecord().Release()
			return fmt.Errorf("table %s: %w", table, err)
		}
		rec = t.wired.NewRecord()
	} else {
		if err := t.dec.Append(value); err != nil {
			return fmt.Errorf("table %s: %w", table, err)
		}
		rec = t.dec.NewRecord()
	}
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
