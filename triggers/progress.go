package triggers

import (
	"sort"
	"time"
)

// Progress is how close a trigger is to firing for one session (or one
// window): what a live query of pending state shows.
type Progress struct {
	Session string `json:"session,omitempty"`
	// Group is the key of a by_time session window.
	Group string `json:"group,omitempty"`
	// Have objects of Need (Need is -1 while a dynamic_join waits for its
	// announcement, 0 where there is no fixed target, as for windows).
	Have int `json:"have"`
	Need int `json:"need"`
	// Missing lists the by_set keys not yet arrived.
	Missing []string `json:"missing,omitempty"`
	// Controls counts the end-of-stage markers a dynamic_group has seen.
	Controls    int        `json:"controls,omitempty"`
	WindowStart *time.Time `json:"window_start,omitempty"`
	WindowEnd   *time.Time `json:"window_end,omitempty"`
}

// Progressor is implemented by triggers that hold objects between firings.
type Progressor interface {
	Progress() []Progress
}

// Progress implements Progressor, sessions in name order.
func (t *sessioned) Progress() []Progress {
	names := make([]string, 0, len(t.sessions))
	for n := range t.sessions {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]Progress, 0, len(names))
	for _, n := range names {
		s := t.sessions[n]
		p := Progress{Session: n}
		switch t.spec.Primitive {
		case ByBatchSize:
			p.Have, p.Need = len(s.held), t.spec.Count
			if t.spec.Fold {
				p.Have = s.seen
			}
		case BySet:
			p.Need = len(t.spec.Keys)
			for i, v := range s.held {
				if v == missing {
					p.Missing = append(p.Missing, t.spec.Keys[i])
				} else {
					p.Have++
				}
			}
		case Redundant:
			p.Have, p.Need = len(s.held), t.spec.K
		case DynamicJoin:
			p.Have, p.Need = len(s.held), int(s.expect)
		case DynamicGroup:
			p.Have, p.Need, p.Controls = len(s.held), t.spec.Controls, s.seen
		}
		out = append(out, p)
	}
	return out
}

// Progress implements Progressor: one entry per open window, by end.
func (t *windowed) Progress() []Progress {
	panes := t.sorted()
	out := make([]Progress, 0, len(panes))
	for _, p := range panes {
		st, en := time.Unix(0, p.start).UTC(), time.Unix(0, p.end).UTC()
		out = append(out, Progress{Group: p.key, Have: len(p.seqs), WindowStart: &st, WindowEnd: &en})
	}
	return out
}

// SeqHolder is implemented by triggers that can list the objects they
// hold (for live queries); triggers that hold nothing need not.
type SeqHolder interface {
	HeldSeqs() []uint64
}

// HeldSeqs implements SeqHolder.
func (t *sessioned) HeldSeqs() []uint64 {
	var out []uint64
	for _, s := range t.sessions {
		for _, v := range s.held {
			if v != missing {
				out = append(out, v)
			}
		}
		out = append(out, s.ctrl...)
	}
	return out
}

// HeldSeqs implements SeqHolder.
func (t *windowed) HeldSeqs() []uint64 {
	var out []uint64
	for _, p := range t.panes {
		out = append(out, p.seqs...)
	}
	return out
}

// HeldSeqs implements SeqHolder: immediate holds nothing between puts.
func (t *immediate) HeldSeqs() []uint64 { return nil }

// HeldSeqs implements SeqHolder: by_name holds nothing.
func (t *byName) HeldSeqs() []uint64 { return nil }

// SessionDropper is implemented by triggers whose state is per session: a
// cancelled or timed-out invocation's pending state is dropped (its held
// objects are no longer needed). DropSession returns the panes of the
// session's folded batch, if any, whose partial aggregates go with it.
type SessionDropper interface {
	DropSession(name string) (panes []uint64)
}

// DropSession implements SessionDropper.
func (t *sessioned) DropSession(name string) []uint64 {
	s, ok := t.sessions[name]
	if !ok {
		return nil
	}
	delete(t.sessions, name)
	if t.spec.Fold && s.seen > 0 {
		return []uint64{uint64(s.expect)}
	}
	return nil
}
