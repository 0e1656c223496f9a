package triggers

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"time"
)

// NoWatermark is the watermark of an input that has published none yet.
const NoWatermark = math.MinInt64

// windowed is by_time: tumbling (Window), sliding (Window and Slide) or
// session (Gap) windows, on processing time or on event time.
//
// On processing time an object's timestamp is the time it is put, the
// watermark is the clock, and windows fire on timers, so an idle bucket
// still fires (the reference implementation only checked on arrival).
//
// On event time each object brings its timestamp. The watermark is the
// largest timestamp seen minus the allowed out-of-orderness; timestamps
// more than MaxFuture ahead of the clock are clamped, so one record from the
// future cannot make everything else late. A window fires once, when the
// watermark passes its end plus AllowedLateness. An object all of whose
// windows already fired is late: it is passed in a Late firing (the engine
// drops and counts it, or routes it to a late bucket).
//
// Idleness: with IdleTimeout, the watermark follows the clock once the
// partition is idle — the engine reported it caught up with its log end
// (CaughtUp) and no object was put for IdleTimeout since then. Time the
// partition was down, restoring or behind the log never counts: the engine
// reports caught-up only from a fresh look at the log end, and the trigger
// keeps no wall-clock time across restarts.
//
// With Spec.Inputs the bucket is fed by several upstream partitions
// (partition_by) and the watermark is the minimum of theirs (see Merger).
//
// Windows without objects never fire.
type windowed struct {
	spec Spec
	// panes holds the open windows; keyed lists the session windows of
	// each key (Gap only), so an object looks at its own key's windows.
	panes map[paneID]*pane
	keyed map[string][]*pane
	last  *pane // the window the previous object went to (most objects share it)

	wm     int64 // watermark, unix ns (event time)
	maxTs  int64 // largest (clamped) event time seen
	seen   bool  // wm is set (any event-time object seen, or inputs merged)
	minEnd int64 // no pane ends before this (may be stale low)
	next   uint64
	late   uint64

	// In memory only, so no wall-clock time survives a restart.
	caughtUp   int64 // since when the engine reports the input caught up
	isCaughtUp bool  // caughtUp is set
	lastPut    int64 // processing time of the last put (or send), unix ns

	// Merged watermarks (Spec.Inputs > 0).
	chans []int64   // watermark published by each upstream partition
	send  sendState // this partition as an upstream of the bucket

	// Spec.Fold: objects go to folder, panes count them; nextID numbers
	// the panes.
	folder Folder
	nextID uint64
}

type pane struct {
	start, end int64 // unix ns, [start, end)
	key        string
	seqs       []uint64
	num        uint64 // Spec.Fold: the pane's number, and
	n          int    // how many objects were folded into it
}

type paneID struct {
	start, end int64
	key        string
}

func (p *pane) id() paneID { return paneID{p.start, p.end, p.key} }

func newWindowed(s Spec, next uint64) *windowed {
	t := &windowed{spec: s, next: next, panes: map[paneID]*pane{}, keyed: map[string][]*pane{}}
	t.resetMerged()
	return t
}

func (t *windowed) merged() bool { return t.spec.Inputs > 0 }

func (t *windowed) resetMerged() {
	t.chans = nil
	t.send = sendState{wm: NoWatermark, published: NoWatermark}
	if t.merged() {
		t.chans = make([]int64, t.spec.Inputs)
		for i := range t.chans {
			t.chans[i] = NoWatermark
		}
	}
}

// add makes p an open window.
func (t *windowed) add(p *pane) {
	if len(t.panes) == 0 || p.end < t.minEnd {
		t.minEnd = p.end
	}
	t.panes[p.id()] = p
	if t.spec.Gap > 0 {
		t.keyed[p.key] = append(t.keyed[p.key], p)
	}
}

// remove forgets the open window p.
func (t *windowed) remove(p *pane) {
	if t.last == p {
		t.last = nil
	}
	delete(t.panes, p.id())
	if t.spec.Gap > 0 {
		ps := slices.DeleteFunc(t.keyed[p.key], func(q *pane) bool { return q == p })
		if len(ps) == 0 {
			delete(t.keyed, p.key)
		} else {
			t.keyed[p.key] = ps
		}
	}
}

// sorted returns the open windows by end, start and key.
func (t *windowed) sorted() []*pane {
	out := make([]*pane, 0, len(t.panes))
	for _, p := range t.panes {
		out = append(out, p)
	}
	sortPanes(out)
	return out
}

func sortPanes(ps []*pane) {
	sort.Slice(ps, func(i, j int) bool {
		a, b := ps[i], ps[j]
		if a.end != b.end {
			return a.end < b.end
		}
		if a.start != b.start {
			return a.start < b.start
		}
		return a.key < b.key
	})
}

func (t *windowed) Name() string    { return t.spec.Name }
func (t *windowed) Dropped() uint64 { return t.late }

func (t *windowed) eventTime() bool { return t.spec.EventTime }

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

// closed reports whether a window ending at end has fired already, or (on
// merged inputs) had closed in the stream of the object's sender: thr is
// the sender's watermark before the object (NoWatermark: none).
func (t *windowed) closed(end, thr int64) bool {
	if !t.eventTime() {
		return false
	}
	if t.seen {
		thr = max(thr, t.wm)
	}
	return thr != NoWatermark && end+int64(t.spec.AllowedLateness) <= thr
}

func (t *windowed) pane(start, end int64, key string) *pane {
	if l := t.last; l != nil && l.start == start && l.end == end && l.key == key {
		return l
	}
	p, ok := t.panes[paneID{start, end, key}]
	if !ok {
		p = &pane{start: start, end: end, key: key}
		if t.folding() {
			p.num = t.newID()
		}
		t.add(p)
	}
	t.last = p
	return p
}

func (t *windowed) Put(o Objects, now time.Time, out []Firing) []Firing {
	if o.Len == 0 {
		return out
	}
	nowNs := now.UnixNano()
	if !t.eventTime() {
		out = t.fire(nowNs, out)
	}
	merged := t.merged() && o.Watermarks != nil
	for i := 0; i < o.Len; i++ {
		seq := o.First + uint64(i)
		ts := nowNs
		thr := int64(NoWatermark)
		if t.eventTime() {
			ts = t.clamp(o.EventTimes[i], nowNs)
			if merged {
				thr = o.Watermarks[i]
			}
		}
		if !t.assign(seq, ts, o.key(i), thr) {
			t.late++
			if n := len(out); n > 0 && out[n-1].Late && out[n-1].Objects[len(out[n-1].Objects)-1].To == seq {
				out[n-1].Objects[len(out[n-1].Objects)-1].To++
			} else {
				out = append(out, Firing{Trigger: t.spec.Name, Objects: []Span{{seq, seq + 1}}, Late: true})
			}
		}
		if !t.eventTime() {
			continue
		}
		if t.merged() {
			// The watermark is the upstreams': an object only tells what its
			// sender's watermark was.
			if merged {
				if up := int(o.Upstream[i]); up >= 0 && up < len(t.chans) {
					t.chans[up] = max(t.chans[up], thr)
				}
			}
			continue
		}
		// The watermark moves object by object, so what fires (and what is
		// late) does not depend on how the input was batched.
		if !t.seen || ts > t.maxTs {
			t.maxTs = ts
		}
		if wm := t.maxTs - int64(t.spec.OutOfOrderness); !t.seen || wm > t.wm {
			t.wm, t.seen = wm, true
			out = t.fire(t.wm, out)
		}
	}
	if t.merged() && merged {
		out = t.advanceMerged(out)
	}
	t.next = o.First + uint64(o.Len)
	if !t.merged() {
		t.lastPut = nowNs
	}
	return out
}

// clamp converts an event time in unix ms to ns, clamped to MaxFuture ahead
// of the clock.
func (t *windowed) clamp(ms, nowNs int64) int64 {
	ts := ms * int64(time.Millisecond)
	if mf := int64(t.spec.MaxFuture); mf > 0 && ts > nowNs+mf {
		ts = nowNs + mf
	}
	return ts
}

// assign puts seq into every open window of ts; false means it is late.
func (t *windowed) assign(seq uint64, ts int64, key string, thr int64) bool {
	if gap := int64(t.spec.Gap); gap > 0 {
		if t.closed(ts+gap, thr) {
			return false
		}
		var hit []*pane
		for _, p := range t.keyed[key] {
			if ts < p.end && ts+gap > p.start {
				hit = append(hit, p)
			}
		}
		if len(hit) == 1 {
			// The common case: the object extends its key's open window.
			// Objects arrive in sequence order, so seqs stay sorted.
			p := hit[0]
			t.remove(p)
			p.start, p.end = min(p.start, ts), max(p.end, ts+gap)
			t.hold(p, seq)
			t.add(p)
			return true
		}
		if t.folding() {
			np := &pane{start: ts, end: ts + gap, key: key}
			if len(hit) == 0 {
				np.num = t.newID()
			}
			for i, p := range hit { // bridges two or more windows: merge them
				np.start, np.end = min(np.start, p.start), max(np.end, p.end)
				if i == 0 {
					np.num = p.num
				} else if t.folder != nil {
					t.folder.Merge(np.num, p.num)
				}
				np.n += p.n
				t.remove(p)
			}
			t.hold(np, seq)
			t.add(np)
			return true
		}
		start, end := ts, ts+gap
		merged := []uint64{seq}
		for _, p := range hit { // bridges two or more windows: merge them
			start, end = min(start, p.start), max(end, p.end)
			merged = append(merged, p.seqs...)
			t.remove(p)
		}
		slices.Sort(merged)
		t.add(&pane{start: start, end: end, key: key, seqs: merged})
		return true
	}
	size := int64(t.spec.Window)
	slide := int64(t.spec.Slide)
	if slide <= 0 {
		slide = size
	}
	ok := false
	for start := floorDiv(ts, slide) * slide; start > ts-size; start -= slide {
		if t.closed(start+size, thr) {
			continue
		}
		p := t.pane(start, start+size, "")
		t.hold(p, seq)
		ok = true
	}
	return ok
}

// fire appends the windows whose end (plus lateness) the watermark wm
// passed, ordered by end, start and key, and forgets them.
func (t *windowed) fire(wm int64, out []Firing) []Firing {
	lat := int64(0)
	if t.eventTime() {
		lat = int64(t.spec.AllowedLateness)
	}
	if t.merged() {
		// A session window of merged inputs closes a gap later: an object
		// of another upstream that could still extend it (not late in its
		// own stream) must arrive before, whatever the interleaving — so
		// which objects a session holds does not depend on timing.
		lat += int64(t.spec.Gap)
	}
	if len(t.panes) == 0 || t.minEnd+lat > wm {
		return out // nothing can be due: skip the scan
	}
	var due []*pane
	first := true
	for _, p := range t.panes {
		if p.end+lat <= wm {
			due = append(due, p)
		} else if first || p.end < t.minEnd {
			t.minEnd, first = p.end, false
		}
	}
	for _, p := range due {
		t.remove(p)
	}
	sortPanes(due)
	for _, p := range due {
		if t.folding() {
			out = append(out, Firing{
				Trigger: t.spec.Name,
				Group:   p.key,
				Window:  Window{Start: time.Unix(0, p.start).UTC(), End: time.Unix(0, p.end).UTC()},
				Folded:  p.n,
				Pane:    p.num,
			})
			continue
		}
		seqs := slices.Clone(p.seqs)
		slices.Sort(seqs)
		out = append(out, Firing{
			Trigger: t.spec.Name,
			Group:   p.key,
			Window:  Window{Start: time.Unix(0, p.start).UTC(), End: time.Unix(0, p.end).UTC()},
			Objects: spans(seqs),
		})
	}
	return out
}

func (t *windowed) Tick(now time.Time, out []Firing) []Firing {
	nowNs := now.UnixNano()
	if !t.eventTime() {
		return t.fire(nowNs, out)
	}
	if t.merged() {
		// The sender side: an idle partition's published watermark follows
		// the clock (the engine publishes it; the receiver side has no
		// timers of its own).
		if start, ok := t.idleStart(nowNs); ok {
			base := start - int64(t.spec.OutOfOrderness)
			if t.send.seen {
				base = t.send.maxTs - int64(t.spec.OutOfOrderness)
			}
			if wm := base + (nowNs - start); t.send.wm == NoWatermark || wm > t.send.wm {
				t.send.wm = wm
			}
			t.send.lastIdle = nowNs
		}
		return out
	}
	start, ok := t.idleStart(nowNs)
	if !ok || !t.seen || len(t.panes) == 0 {
		return out
	}
	// Idle: event time follows the clock from the start of the quiet.
	if wm := t.maxTs - int64(t.spec.OutOfOrderness) + (nowNs - start); wm > t.wm {
		t.wm = wm
	}
	return t.fire(t.wm, out)
}

// idleStart reports when the current quiet began (the later of the last put
// and the engine's caught-up report) and whether it has lasted IdleTimeout.
func (t *windowed) idleStart(nowNs int64) (int64, bool) {
	idle := int64(t.spec.IdleTimeout)
	if idle <= 0 || !t.isCaughtUp {
		return 0, false
	}
	start := max(t.caughtUp, t.lastPut)
	return start, nowNs-start >= idle
}

// CaughtUp implements Idler.
func (t *windowed) CaughtUp(since time.Time) {
	if since.IsZero() {
		t.isCaughtUp = false
		return
	}
	if !t.isCaughtUp {
		t.caughtUp, t.isCaughtUp = since.UnixNano(), true
	}
}

// publishEvery is how often an idle sender's watermark is published.
func (t *windowed) publishEvery() int64 {
	return int64(min(max(t.spec.IdleTimeout/5, 100*time.Millisecond), time.Second))
}

func (t *windowed) NextTick() time.Time {
	if t.eventTime() && t.merged() {
		if t.spec.IdleTimeout <= 0 || !t.isCaughtUp {
			return time.Time{}
		}
		start := max(t.caughtUp, t.lastPut)
		at := start + int64(t.spec.IdleTimeout)
		if t.send.lastIdle >= at {
			at = t.send.lastIdle + t.publishEvery()
		}
		return time.Unix(0, at).UTC()
	}
	if len(t.panes) == 0 {
		return time.Time{}
	}
	first := true
	var minEnd int64
	for _, p := range t.panes {
		if first || p.end < minEnd {
			minEnd, first = p.end, false
		}
	}
	if !t.eventTime() {
		return time.Unix(0, minEnd).UTC()
	}
	if t.spec.IdleTimeout <= 0 || !t.isCaughtUp || !t.seen {
		return time.Time{}
	}
	start := max(t.caughtUp, t.lastPut)
	// When the idle watermark reaches the first window's end (+ lateness).
	reach := start + (minEnd + int64(t.spec.AllowedLateness) - (t.maxTs - int64(t.spec.OutOfOrderness)))
	return time.Unix(0, max(reach, start+int64(t.spec.IdleTimeout))).UTC()
}

// Send implements Merger.
func (t *windowed) Send(eventMs int64, now time.Time) int64 {
	nowNs := now.UnixNano()
	before := t.send.wm
	ts := t.clamp(eventMs, nowNs)
	if !t.send.seen || ts > t.send.maxTs {
		t.send.maxTs, t.send.seen = ts, true
	}
	if wm := t.send.maxTs - int64(t.spec.OutOfOrderness); t.send.wm == NoWatermark || wm > t.send.wm {
		t.send.wm = wm
	}
	t.lastPut = nowNs
	return before
}

// Publish implements Merger.
func (t *windowed) Publish() (int64, bool) {
	if t.send.wm == t.send.published || t.send.wm == NoWatermark {
		return t.send.wm, false
	}
	t.send.published = t.send.wm
	return t.send.wm, true
}

// Observe implements Merger.
func (t *windowed) Observe(from int, wm int64, out []Firing) []Firing {
	if from < 0 || from >= len(t.chans) || wm <= t.chans[from] {
		return out
	}
	t.chans[from] = wm
	return t.advanceMerged(out)
}

// advanceMerged moves the watermark to the minimum of the inputs' and fires.
func (t *windowed) advanceMerged(out []Firing) []Firing {
	low := int64(math.MaxInt64)
	for _, w := range t.chans {
		if w == NoWatermark {
			return out // an input that never published holds the watermark
		}
		low = min(low, w)
	}
	if t.seen && low <= t.wm {
		return out
	}
	t.wm, t.seen = low, true
	return t.fire(t.wm, out)
}

// Watermark implements Watermarker.
func (t *windowed) Watermark() (time.Time, bool) {
	if !t.eventTime() || !t.seen {
		return time.Time{}, false
	}
	return time.Unix(0, t.wm).UTC(), true
}

// Idle implements Watermarker.
func (t *windowed) Idle(now time.Time) bool {
	_, ok := t.idleStart(now.UnixNano())
	return ok
}

// OldestWindow implements Watermarker.
func (t *windowed) OldestWindow() time.Time {
	first := true
	var start int64
	for _, p := range t.panes {
		if first || p.start < start {
			start, first = p.start, false
		}
	}
	if first {
		return time.Time{}
	}
	return time.Unix(0, start).UTC()
}

func (t *windowed) Low() uint64 {
	low := t.next
	for _, p := range t.panes {
		for _, s := range p.seqs {
			low = min(low, s)
		}
	}
	return low
}

func (t *windowed) Pending() int {
	if t.folding() {
		n := 0
		for _, p := range t.panes {
			n += p.n
		}
		return n
	}
	seen := map[uint64]bool{}
	for _, p := range t.panes {
		for _, s := range p.seqs {
			seen[s] = true
		}
	}
	return len(seen)
}

func (t *windowed) MarshalState() []byte {
	b := binary.AppendUvarint(nil, t.next)
	b = binary.AppendUvarint(b, t.late)
	b = binary.AppendVarint(b, t.wm)
	b = binary.AppendVarint(b, t.maxTs)
	b = binary.AppendVarint(b, 0) // was the last arrival's wall time; no longer kept
	if t.seen {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	b = binary.AppendUvarint(b, uint64(len(t.panes)))
	for _, p := range t.sorted() {
		b = binary.AppendVarint(b, p.start)
		b = binary.AppendVarint(b, p.end)
		b = appendString(b, p.key)
		if t.folding() {
			b = binary.AppendUvarint(b, p.num)
			b = binary.AppendUvarint(b, uint64(p.n))
			continue
		}
		b = binary.AppendUvarint(b, uint64(len(p.seqs)))
		for _, s := range p.seqs {
			b = binary.AppendUvarint(b, s)
		}
	}
	if t.folding() {
		b = binary.AppendUvarint(b, t.nextID)
	}
	if t.merged() {
		// Appended section: state written before merged watermarks existed
		// ends above and reads as "no input published yet".
		b = binary.AppendVarint(b, t.send.maxTs)
		if t.send.seen {
			b = append(b, 1)
		} else {
			b = append(b, 0)
		}
		b = binary.AppendVarint(b, t.send.wm)
		b = binary.AppendUvarint(b, uint64(len(t.chans)))
		for _, w := range t.chans {
			b = binary.AppendVarint(b, w)
		}
	}
	return b
}

func (t *windowed) UnmarshalState(b []byte, next uint64) error {
	t.panes, t.keyed, t.last = map[paneID]*pane{}, map[string][]*pane{}, nil
	t.caughtUp, t.isCaughtUp, t.lastPut = 0, false, 0
	t.resetMerged()
	if b == nil {
		t.next, t.late, t.wm, t.maxTs, t.seen, t.nextID = next, 0, 0, 0, false, 0
		return nil
	}
	r := &reader{b: b}
	t.next = r.uvarint()
	t.late = r.uvarint()
	t.wm = r.varint()
	t.maxTs = r.varint()
	_ = r.varint() // the last arrival's wall time, no longer used
	t.seen = r.byte() == 1
	for n := r.count(); n > 0 && r.err == nil; n-- {
		p := &pane{start: r.varint(), end: r.varint(), key: strings.Clone(r.string())}
		if t.folding() {
			p.num, p.n = r.uvarint(), int(r.uvarint())
			t.add(p)
			continue
		}
		for k := r.count(); k > 0 && r.err == nil; k-- {
			p.seqs = append(p.seqs, r.uvarint())
		}
		t.add(p)
	}
	if t.folding() {
		t.nextID = r.uvarint()
	}
	if t.merged() && len(r.b) > 0 && r.err == nil {
		t.send.maxTs = r.varint()
		t.send.seen = r.byte() == 1
		t.send.wm = r.varint()
		for i, n := 0, r.count(); i < n && r.err == nil; i++ {
			w := r.varint()
			if i < len(t.chans) { // the partition count may have grown
				t.chans[i] = w
			}
		}
	}
	if r.err != nil || len(r.b) != 0 {
		return fmt.Errorf("triggers: %s: corrupt state", t.spec.Name)
	}
	return nil
}
