package engine

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/apache/arrow/go/v15/arrow"

	"github.com/pheromone-go/pheromone/engine/app"
	"github.com/pheromone-go/pheromone/engine/fn"
	"github.com/pheromone-go/pheromone/state"
	"github.com/pheromone-go/pheromone/triggers"
)

// Incremental windows (docs/triggers.md): a by_time trigger whose function
// is Incremental (the built-in aggregate) keeps no objects. Its trigger
// assigns each object to its windows as usual, but hands it to the
// trigger's fold, which adds it to that window's partial aggregate; the
// firing emits the partial's result. The bucket frees the objects at the
// next commit (the trigger's Low is past them), and the state — in Pebble
// and the changelog — holds one partial per open window, written when it
// changed in the cycle, instead of every object and its sequence number.

// foldable reports whether trigger t keeps partial aggregates, and returns
// its function's Incremental.
func foldable(t *app.Trigger, impl fn.Function) (fn.Incremental, bool) {
	// A by_batch_size batch that times out goes to the dead-letter topic
	// with its objects: with a session_timeout, the objects are kept.
	batch := t.Primitive == "by_batch_size" && t.SessionTimeout == ""
	if (t.Primitive != "by_time" && !batch) || !t.IncrementalAllowed() {
		return nil, false
	}
	inc, ok := impl.(fn.Incremental)
	if !ok || !inc.Foldable(t.Gap != "") {
		return nil, false
	}
	return inc, true
}

// fold is the triggers.Folder of one folding trigger in one bucket
// partition, owned by the task's goroutine.
type fold struct {
	inc      fn.Incremental
	partials map[uint64]fn.Partial
	dirty    map[uint64]bool // written (or deleted) by the next commit
	// The put being assigned: its record, first sequence number, and the
	// rows each window got, in the order windows were first touched.
	rec   arrow.Record
	first uint64
	rows  map[uint64][]int
	order []uint64
	err   error
}

func newFold(inc fn.Incremental) *fold {
	return &fold{inc: inc, partials: map[uint64]fn.Partial{}, dirty: map[uint64]bool{}, rows: map[uint64][]int{}}
}

// Fold implements triggers.Folder.
func (f *fold) Fold(seq, pane uint64) {
	rows, ok := f.rows[pane]
	if !ok {
		f.order = append(f.order, pane)
	}
	f.rows[pane] = append(rows, int(seq-f.first))
}

// Merge implements triggers.Folder.
func (f *fold) Merge(into, from uint64) {
	f.flush() // the rows assigned so far go where they were assigned
	if p := f.partials[from]; p != nil {
		if q := f.partials[into]; q != nil {
			q.Merge(p)
		} else {
			f.partials[into] = p
		}
		delete(f.partials, from)
	}
	f.dirty[into], f.dirty[from] = true, true
}

// begin starts the assignment of a put's objects.
func (f *fold) begin(rec arrow.Record, first uint64) { f.rec, f.first = rec, first }

// flush folds the rows assigned since the last flush into their windows.
func (f *fold) flush() {
	for _, pane := range f.order {
		rows := f.rows[pane]
		p := f.partials[pane]
		if p == nil {
			p = f.inc.NewPartial()
			f.partials[pane] = p
		}
		if err := p.Fold(f.rec, f.first, rows); err != nil && f.err == nil {
			f.err = err
		}
		f.dirty[pane] = true
		f.rows[pane] = rows[:0]
	}
	f.order = f.order[:0]
	clear(f.rows)
}

// end finishes a put: what was assigned is folded; the record is not kept.
func (f *fold) end() error {
	f.flush()
	f.rec = nil
	err := f.err
	f.err = nil
	return err
}

// peek returns a window's partial (nil without one, or for a nil fold).
func (f *fold) peek(pane uint64) fn.Partial {
	if f == nil {
		return nil
	}
	return f.partials[pane]
}

// take removes a window's partial for its firing.
func (f *fold) take(pane uint64) fn.Partial {
	p := f.partials[pane]
	delete(f.partials, pane)
	f.dirty[pane] = true
	return p
}

// foldKey marks a trigger whose state (in this bucket partition) was
// written folding: state without it was written keeping objects.
func foldKey(prefix []byte, trigger string) []byte {
	k := append(append([]byte{}, prefix...), 'f', '/')
	return append(k, trigger...)
}

// folded reports whether the trigger's stored state was written folding.
func folded(st state.Reader, prefix []byte, trigger string) (bool, error) {
	_, err := st.Get(foldKey(prefix, trigger))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, state.ErrNotFound):
		return false, nil
	}
	return false, err
}

func partialPrefix(prefix []byte, trigger string) []byte {
	k := append(append([]byte{}, prefix...), 'w', '/')
	k = append(k, trigger...)
	return append(k, 0)
}

func partialKey(prefix []byte, trigger string, pane uint64) []byte {
	return binary.BigEndian.AppendUint64(partialPrefix(prefix, trigger), pane)
}

// load reads the trigger's partials of one bucket partition.
func (f *fold) load(st state.Reader, prefix []byte, trigger string) error {
	pp := partialPrefix(prefix, trigger)
	return st.Scan(pp, func(k, v []byte) error {
		if len(k) != len(pp)+8 {
			return fmt.Errorf("trigger %s: corrupt partial key", trigger)
		}
		p, err := f.inc.UnmarshalPartial(v)
		if err != nil {
			return fmt.Errorf("trigger %s: %w", trigger, err)
		}
		f.partials[binary.BigEndian.Uint64(k[len(pp):])] = p
		return nil
	})
}

// save writes the partials that changed since the last commit.
func (f *fold) save(batch state.Batch, prefix []byte, trigger string) {
	for pane := range f.dirty {
		k := partialKey(prefix, trigger, pane)
		if p := f.partials[pane]; p != nil {
			batch.Set(k, p.AppendBinary(nil))
		} else {
			batch.Delete(k)
		}
	}
	clear(f.dirty)
}

// emitter is the function a folded firing runs: it emits the partial's
// result through the same output path as any invocation.
type emitter struct{ p fn.Partial }

func (e emitter) Invoke(_ context.Context, in fn.Input, out fn.Output) error {
	return e.p.Emit(in, out)
}

var _ triggers.Folder = (*fold)(nil)
