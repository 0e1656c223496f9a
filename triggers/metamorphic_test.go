package triggers

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// TestMetamorphicBatching feeds the same object stream to every primitive in
// puts of different sizes, with restarts (state marshalled and restored)
// between some puts, and requires the same firings, object for object.
func TestMetamorphicBatching(t *testing.T) {
	specs := []Spec{
		{Name: "b", Primitive: ByBatchSize, Count: 3},
		{Name: "n", Primitive: ByName, Match: "k1"},
		{Name: "s", Primitive: BySet, Keys: []string{"k0", "k1", "k2"}},
		{Name: "r", Primitive: Redundant, K: 2, N: 3},
		{Name: "j", Primitive: DynamicJoin, ControlKey: "ctl"},
		{Name: "g", Primitive: DynamicGroup, ControlKey: "ctl", Controls: 2},
		{Name: "tt", Primitive: ByTime, Window: 10 * time.Second, EventTime: true, OutOfOrderness: 3 * time.Second},
		{Name: "ts", Primitive: ByTime, Window: 10 * time.Second, Slide: 5 * time.Second, EventTime: true, OutOfOrderness: 2 * time.Second},
		{Name: "tg", Primitive: ByTime, Gap: 4 * time.Second, EventTime: true, OutOfOrderness: 1 * time.Second},
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	const n = 400
	objs := Objects{First: 0, Len: n}
	ts := int64(0)
	for i := 0; i < n; i++ {
		key := fmt.Sprintf("k%d", rnd.IntN(4))
		if rnd.IntN(10) == 0 {
			key = "ctl"
		}
		objs.Keys = append(objs.Keys, key)
		objs.Sessions = append(objs.Sessions, fmt.Sprintf("s%d", rnd.IntN(5)))
		objs.Groups = append(objs.Groups, fmt.Sprintf("g%d", rnd.IntN(3)))
		objs.Counts = append(objs.Counts, int64(rnd.IntN(3)))
		ts += int64(rnd.IntN(1500)) - 300 // mostly forward, sometimes back
		objs.EventTimes = append(objs.EventTimes, max(ts, 0))
	}
	now := time.Unix(1000, 0)
	run := func(sp Spec, chunk int, restartEvery int) string {
		tr, err := New(sp, 0)
		if err != nil {
			t.Fatal(err)
		}
		var firings []Firing
		for from, k := 0, 0; from < n; from, k = from+chunk, k+1 {
			to := min(from+chunk, n)
			part := Objects{First: uint64(from), Len: to - from,
				Keys: objs.Keys[from:to], Sessions: objs.Sessions[from:to], Groups: objs.Groups[from:to],
				Counts: objs.Counts[from:to], EventTimes: objs.EventTimes[from:to]}
			firings = tr.Put(part, now, firings)
			if restartEvery > 0 && k%restartEvery == 0 {
				st := tr.MarshalState()
				tr, _ = New(sp, 0)
				if err := tr.UnmarshalState(st, uint64(to)); err != nil {
					t.Fatal(err)
				}
			}
		}
		return normalize(firings)
	}
	for _, sp := range specs {
		want := run(sp, n, 0)
		if strings.Count(want, "\n") < 3 {
			t.Fatalf("%s: only %d firings; the stream does not exercise it", sp.Name, strings.Count(want, "\n"))
		}
		for _, chunk := range []int{1, 3, 7, 64} {
			for _, restart := range []int{0, 1, 5} {
				if got := run(sp, chunk, restart); got != want {
					t.Errorf("%s: puts of %d, restart every %d: firings differ from one put:\n%s\nvs\n%s",
						sp.Name, chunk, restart, head(got), head(want))
				}
			}
		}
	}
}

// normalize lists firings one per line, late objects one per line (how
// late objects are grouped into firings follows the puts).
func normalize(fs []Firing) string {
	var b strings.Builder
	for _, f := range fs {
		if f.Late {
			for _, sp := range f.Objects {
				for s := sp.From; s < sp.To; s++ {
					fmt.Fprintf(&b, "late %d\n", s)
				}
			}
			continue
		}
		fmt.Fprintf(&b, "%s %s %s %v %v\n", f.Trigger, f.Session, f.Group, f.Window, f.Objects)
	}
	return b.String()
}

func head(s string) string {
	lines := strings.SplitN(s, "\n", 6)
	return strings.Join(lines[:min(5, len(lines))], "\n")
}
