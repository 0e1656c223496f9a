package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestResultPagesSplitWholeRows: pages cut a large answer between rows,
// never inside one (strings holding brackets, quotes, commas and escapes
// included), and every row comes back once, in order.
func TestResultPagesSplitWholeRows(t *testing.T) {
	var b strings.Builder
	b.WriteString("[")
	const rows = 3000
	nasty := `x"},{"a":[1,2]}\\` + "\n"
	for i := 0; i < rows; i++ {
		if i > 0 {
			b.WriteString(",")
		}
		v, _ := json.Marshal(map[string]any{"i": i, "s": strings.Repeat(nasty, 1+i%7) + strings.Repeat("y", 8000), "l": []int{i, -i}, "o": map[string]any{"k": "}"}})
		b.Write(v)
	}
	b.WriteString("]")
	a := newAnswer([]byte(b.String()), rows, rows)
	if len(a.starts) != rows {
		t.Fatalf("%d row starts, want %d", len(a.starts), rows)
	}
	from, pages := 0, 0
	var seen int
	for {
		pages++
		body, next := a.page(from)
		if len(body) > MaxResultPage {
			t.Fatalf("page of %d bytes", len(body))
		}
		var got []struct {
			I int `json:"i"`
		}
		if err := json.Unmarshal(body, &got); err != nil {
			t.Fatalf("page %d from %d: %v", pages, from, err)
		}
		for _, g := range got {
			if g.I != seen {
				t.Fatalf("row %d where %d was due", g.I, seen)
			}
			seen++
		}
		if next == 0 {
			break
		}
		from = next
	}
	if seen != rows || pages < 2 {
		t.Fatalf("%d rows in %d pages", seen, pages)
	}
	if body, next := a.page(rows + 5); string(body) != "[]" || next != 0 {
		t.Fatalf("past the end: %s %d", body, next)
	}
}

// TestFinishedResultsAreBounded: finished answers are forgotten oldest
// first once together they exceed MaxResultBytes.
func TestFinishedResultsAreBounded(t *testing.T) {
	var s sessionTable
	big := []byte("[" + strings.Repeat(" ", MaxResultBytes/3) + "]")
	for i := 0; i < 5; i++ {
		id := fmt.Sprint(i)
		_, _ = s.start(id, time.Unix(0, 0), time.Minute, 100)
		s.complete(id, answer{body: big, rows: 1, kept: 1})
	}
	if s.bytes > MaxResultBytes {
		t.Fatalf("%d bytes kept, over %d", s.bytes, MaxResultBytes)
	}
	if _, ok := s.get("0", 0); ok {
		t.Fatal("the oldest answer is still kept")
	}
	if st, ok := s.get("4", 0); !ok || !st.Done {
		t.Fatal("the newest answer is gone")
	}
}

// TestJoinedRepliesSayWhatTheyKeep: replies past the limit are left out
// whole, and the answer says how many rows it has and how many it kept.
func TestJoinedRepliesSayWhatTheyKeep(t *testing.T) {
	reps := []reply{{body: []byte(`[{"a":1},{"a":2}]`), rows: 2}, {body: []byte(`[{"a":3}]`), rows: 1}, {body: []byte(`[{"a":4}]`), rows: 1}}
	a := joinReplies(reps, 30)
	if string(a.body) != `[{"a":1},{"a":2},{"a":3}]` || a.rows != 4 || a.kept != 3 {
		t.Fatalf("joined %s rows %d kept %d", a.body, a.rows, a.kept)
	}
	var s sessionTable
	_, _ = s.start("x", time.Unix(0, 0), time.Minute, 100)
	s.complete("x", a)
	if st, _ := s.get("x", 0); !st.Truncated || st.Rows != 4 || st.Kept != 3 || st.Next != 0 {
		t.Fatalf("status %+v", st)
	}
	if a := joinReplies(reps, 1<<20); string(a.body) != `[{"a":1},{"a":2},{"a":3},{"a":4}]` || a.kept != 4 {
		t.Fatalf("joined %s kept %d", a.body, a.kept)
	}
}

// TestPendingSessionsAreBounded: in-memory sessions that never answer are
// forgotten after their timeout, and at most max are pending.
func TestPendingSessionsAreBounded(t *testing.T) {
	var s sessionTable
	t0 := time.Unix(0, 0)
	for i := 0; i < 3; i++ {
		if _, err := s.start(fmt.Sprint(i), t0, time.Minute, 3); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.start("3", t0.Add(time.Second), time.Minute, 3); !errors.Is(err, ErrTooManyWaiting) {
		t.Fatalf("a fourth pending session: %v, want ErrTooManyWaiting", err)
	}
	if _, err := s.start("4", t0.Add(time.Minute), time.Minute, 3); err != nil {
		t.Fatalf("after the timeout: %v", err)
	}
	if len(s.pending) != 1 {
		t.Fatalf("%d pending, want 1 (the three timed out)", len(s.pending))
	}
	if _, ok := s.get("0", 0); ok {
		t.Fatal("a timed-out session is still known")
	}
}
