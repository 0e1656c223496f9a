package triggers

import "time"

// Spec.Fold: a window keeps a count of its objects, which go to the Folder.

// SetFolder implements Folding.
func (t *windowed) SetFolder(f Folder) { t.folder = f }

func (t *windowed) folding() bool { return t.spec.Fold }

// hold adds object seq to p.
func (t *windowed) hold(p *pane, seq uint64) {
	if t.folding() {
		p.n++
		if t.folder != nil {
			t.folder.Fold(seq, p.num)
		}
		return
	}
	p.seqs = append(p.seqs, seq)
}

// sendState is the stream of objects one partition sends into a bucket with
// partition_by: its watermark is what the partition publishes downstream.
type sendState struct {
	maxTs     int64
	seen      bool
	wm        int64 // NoWatermark until the first object or idle advance
	published int64 // memory only: the last value Publish returned
	lastIdle  int64 // memory only: when Tick last advanced wm by idleness
}

// newID numbers a new pane (Spec.Fold).
func (t *windowed) newID() uint64 {
	t.nextID++
	return t.nextID
}

// OpenWindow is an open window of a by_time trigger.
type OpenWindow struct {
	Window
	Key     string // a session window's key
	Objects int    // objects in it
	Pane    uint64 // Spec.Fold: the window's number (its partial's)
}

// OpenWindows lists a by_time trigger's open windows by end, start and key.
func (t *windowed) OpenWindows() []OpenWindow {
	var out []OpenWindow
	for _, p := range t.sorted() {
		n := p.n
		if !t.folding() {
			n = len(p.seqs)
		}
		out = append(out, OpenWindow{Window: Window{Start: time.Unix(0, p.start).UTC(), End: time.Unix(0, p.end).UTC()}, Key: p.key, Objects: n, Pane: p.num})
	}
	return out
}

// SetFolder implements Folding (by_batch_size).
func (t *sessioned) SetFolder(f Folder) { t.folder = f }

// foldBatch adds object seq to session s's batch with Spec.Fold: the batch
// counts its objects (seen) and is numbered by its first object (expect
// holds seq+1, so numbers never repeat); a full batch fires by its number.
func (t *sessioned) foldBatch(name string, s *session, seq uint64, out []Firing) []Firing {
	if s.seen == 0 {
		s.expect = int64(seq) + 1
	}
	s.seen++
	if t.folder != nil {
		t.folder.Fold(seq, uint64(s.expect))
	}
	if s.seen == t.spec.Count {
		out = append(out, Firing{Trigger: t.spec.Name, Session: name, Folded: s.seen, Pane: uint64(s.expect)})
		delete(t.sessions, name)
	}
	return out
}
