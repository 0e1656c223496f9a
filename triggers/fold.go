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
