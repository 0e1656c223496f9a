package engine

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/apache/arrow/go/v15/arrow"

	"github.com/pheromone-go/pheromone/engine/codec"
	"github.com/pheromone-go/pheromone/engine/fn"
	"github.com/pheromone-go/pheromone/internal/arrowx"
	"github.com/pheromone-go/pheromone/state"
	"github.com/pheromone-go/pheromone/triggers"
)

// BucketQuery filters a bucket query; empty fields match everything.
type BucketQuery struct {
	Key, Session string
	// Limit bounds the objects returned per partition; default 100.
	Limit int
	// Arrow returns the objects as Arrow records (BucketView.Records)
	// instead of JSON rows.
	Arrow bool
}

// BucketView is what a bucket holds on this node, read from the last
// committed state (a consistent snapshot; the partition tasks are never
// blocked by a query).
type BucketView struct {
	Bucket     string          `json:"bucket"`
	Partitions []PartitionView `json:"partitions"`
	// Records hold the objects when BucketQuery.Arrow was set; the caller
	// releases them.
	Records []arrow.Record `json:"-"`
}

// PartitionView is one bucket partition.
type PartitionView struct {
	Partition int32 `json:"partition"`
	// Held counts the objects some trigger holds (all stored objects for a
	// bucket without triggers); Objects lists those matching the query, up
	// to the limit, oldest first.
	Held     int64             `json:"held"`
	Objects  []json.RawMessage `json:"objects"`
	Triggers []TriggerView     `json:"triggers"`
	// CaughtUp reports (for apps with event-time triggers) whether the
	// partition has consumed everything up to its log ends, as last seen.
	CaughtUp *bool `json:"caught_up,omitempty"`
}

// TriggerView is a trigger's pending state.
type TriggerView struct {
	Name      string              `json:"name"`
	Primitive string              `json:"primitive"`
	Pending   int                 `json:"pending"`
	Dropped   uint64              `json:"dropped,omitempty"`
	Progress  []triggers.Progress `json:"progress,omitempty"`
	// Event-time triggers: the watermark (absent before the first), whether
	// the partition counts as idle (caught up and quiet for idle_timeout),
	// and the start of the oldest open window.
	Watermark    *time.Time `json:"watermark,omitempty"`
	Idle         *bool      `json:"idle,omitempty"`
	OldestWindow *time.Time `json:"oldest_window,omitempty"`
	// Windows are a by_time trigger's open windows; an incremental one's
	// come with the rows their partial aggregate would emit now.
	Windows []WindowView `json:"windows,omitempty"`
}

// WindowView is an open window.
type WindowView struct {
	Start   time.Time         `json:"start"`
	End     time.Time         `json:"end"`
	Key     string            `json:"key,omitempty"`
	Objects int               `json:"objects"`
	Partial []json.RawMessage `json:"partial,omitempty"`
}

// QueryBucket returns the bucket's state on the partitions this node owns.
func (n *Node) QueryBucket(bucket string, q BucketQuery) (BucketView, error) {
	bp := n.plan.buckets[bucket]
	if bp == nil {
		return BucketView{}, fmt.Errorf("engine: no bucket %q", bucket)
	}
	if q.Limit <= 0 {
		q.Limit = 100
	}
	snap := n.o.Store.Snapshot()
	defer snap.Close()
	view := BucketView{Bucket: bucket, Partitions: []PartitionView{}}
	for _, part := range n.Partitions() {
		b, err := loadBucket(snap, n.plan.app.Name, bp, part, nil)
		if err != nil {
			return BucketView{}, err
		}
		pv := PartitionView{Partition: part, Objects: []json.RawMessage{}, Triggers: []TriggerView{}}
		live := n.live(part)
		if live != nil && n.plan.eventTime {
			pv.CaughtUp = &live.caughtUp
		}
		low := b.low()
		// The objects some trigger holds; nil means every object from low
		// on (a bucket without triggers keeps everything).
		var held map[uint64]bool
		if len(b.triggers) > 0 {
			held = map[uint64]bool{}
			for _, tr := range b.triggers {
				h, ok := tr.t.(triggers.SeqHolder)
				if !ok {
					held = nil
					break
				}
				for _, s := range h.HeldSeqs() {
					held[s] = true
				}
			}
		}
		if held != nil {
			pv.Held = int64(len(held))
		} else {
			pv.Held = b.pending()
		}
		var enc codec.JSONEncoder
		for _, c := range b.chunks {
			if len(pv.Objects) >= q.Limit || c.end <= low {
				continue
			}
			rec, err := readChunk(snap, chunkKey(b.prefix, c.first, c.end))
			if err != nil {
				return BucketView{}, err
			}
			keys, sessions := stringColumn(rec, b.cfg.Key), stringColumn(rec, b.cfg.Session)
			var take []int
			for i := int(max(low, c.first) - c.first); i < int(rec.NumRows()) && len(pv.Objects) < q.Limit; i++ {
				if held != nil && !held[c.first+uint64(i)] {
					continue
				}
				if q.Key != "" && (keys == nil || keys[i] != q.Key) {
					continue
				}
				if q.Session != "" && (sessions == nil || sessions[i] != q.Session) {
					continue
				}
				pv.Objects = append(pv.Objects, json.RawMessage(enc.AppendRow(nil, rec, i)))
				take = append(take, i)
			}
			if q.Arrow && len(take) > 0 {
				view.Records = append(view.Records, arrowx.Take(rec, take))
			}
			rec.Release()
		}
		for _, tr := range b.triggers {
			tv := TriggerView{Name: tr.t.Name(), Pending: tr.t.Pending(), Dropped: tr.t.Dropped()}
			for _, tp := range bp.triggers {
				if tp.spec.Name == tv.Name {
					tv.Primitive = tp.spec.Primitive
				}
			}
			if w, ok := tr.t.(triggers.Windower); ok {
				if tv.Windows, err = windowViews(w, tr.fold, q.Key); err != nil {
					return BucketView{}, err
				}
			}
			if p, ok := tr.t.(triggers.Progressor); ok {
				tv.Progress = p.Progress()
				if q.Session != "" {
					tv.Progress = slices.DeleteFunc(tv.Progress, func(p triggers.Progress) bool { return p.Session != q.Session })
				}
			}
			if w, ok := tr.t.(triggers.Watermarker); ok && tr.eventTime {
				if wm, ok := w.Watermark(); ok {
					tv.Watermark = &wm
				}
				if o := w.OldestWindow(); !o.IsZero() {
					tv.OldestWindow = &o
				}
				idle := false
				if live != nil {
					idle = live.idle[bucket+"\x00"+tv.Name]
				}
				tv.Idle = &idle
			}
			pv.Triggers = append(pv.Triggers, tv)
		}
		view.Partitions = append(view.Partitions, pv)
	}
	return view, nil
}

// windowViews lists a by_time trigger's open windows (of key, if set),
// with their partial aggregates' rows for an incremental one.
func windowViews(w triggers.Windower, f *fold, key string) ([]WindowView, error) {
	var out []WindowView
	var enc codec.JSONEncoder
	for _, ow := range w.OpenWindows() {
		if key != "" && ow.Key != "" && ow.Key != key {
			continue
		}
		v := WindowView{Start: ow.Start, End: ow.End, Key: ow.Key, Objects: ow.Objects}
		if p := f.peek(ow.Pane); p != nil {
			c := &collector{}
			if err := p.Emit(fn.Input{Window: ow.Window, Session: ow.Key}, c); err != nil {
				return nil, err
			}
			for _, rec := range c.recs {
				for i := 0; i < int(rec.NumRows()); i++ {
					v.Partial = append(v.Partial, json.RawMessage(enc.AppendRow(nil, rec, i)))
				}
			}
			c.reset()
		}
		out = append(out, v)
	}
	return out, nil
}

// TableRow is one row of a table sink.
type TableRow struct {
	Partition int32           `json:"partition"`
	Key       string          `json:"key"`
	Row       json.RawMessage `json:"row"`
}

// QueryTable returns the latest row per key of a table sink, from the last
// committed state, ordered by partition and key; key filters to one key.
func (n *Node) QueryTable(table, key string) ([]TableRow, error) {
	s := n.plan.app.Sink(table)
	if s == nil || s.Kind != "table" {
		return nil, fmt.Errorf("engine: no table %q", table)
	}
	snap := n.o.Store.Snapshot()
	defer snap.Close()
	out := []TableRow{}
	if key != "" {
		// One lookup per partition, not a scan of the table: the key may be
		// held by any partition (a table's key need not be what its rows
		// were partitioned by).
		for part := int32(0); part < int32(n.plan.app.Partitions()); part++ {
			v, err := snap.Get(tableKey(n.plan.app.Name, table, part, []byte(key)))
			if errors.Is(err, state.ErrNotFound) {
				continue
			}
			if err != nil {
				return nil, err
			}
			out = append(out, TableRow{Partition: part, Key: key, Row: json.RawMessage(v)})
		}
		return out, nil
	}
	prefix := tablePrefix(n.plan.app.Name, table)
	err := snap.Scan(prefix, func(k, v []byte) error {
		rest := k[len(prefix):]
		if len(rest) < 4 {
			return nil
		}
		tr := TableRow{Partition: int32(binary.BigEndian.Uint32(rest)), Key: string(rest[4:])}
		tr.Row = json.RawMessage(slices.Clone(v))
		out = append(out, tr)
		return nil
	})
	return out, err
}

// TableRecord returns the table's rows (from QueryTable) as one Arrow record
// with the schema of the function that writes the table; release it.
func (n *Node) TableRecord(table string, rows []TableRow) (arrow.Record, error) {
	var schema *arrow.Schema
	for i := range n.plan.app.Functions {
		f := &n.plan.app.Functions[i]
		if slices.Contains(f.Outputs, table) {
			schema = f.OutputSchema()
		}
	}
	if schema == nil {
		return nil, fmt.Errorf("engine: no function writes table %q", table)
	}
	d, err := codec.NewJSONDecoder(schema)
	if err != nil {
		return nil, err
	}
	defer d.Release()
	for _, r := range rows {
		if err := d.Append(r.Row); err != nil {
			return nil, err
		}
	}
	return d.NewRecord(), nil
}

// BucketSchema is the Arrow schema of a bucket's objects.
func (n *Node) BucketSchema(bucket string) *arrow.Schema { return n.plan.app.BucketSchema(bucket) }
