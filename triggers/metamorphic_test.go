package triggers

import (
	"fmt"
	"math/rand/v2"
	"slices"
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

// TestMetamorphicMergedInterleaving: three upstream partitions send their
// streams (with disorder and a few far-too-late objects) into a bucket with
// merged watermarks. Whatever the interleaving of the streams at the
// receiver, wherever the senders' cycle ends (markers) fall, and wherever
// the receiver restarts, every window fires with the same objects and the
// same objects are late.
func TestMetamorphicMergedInterleaving(t *testing.T) {
	specs := []Spec{
		{Name: "tt", Primitive: ByTime, Window: 10 * time.Second, EventTime: true, OutOfOrderness: 2 * time.Second},
		{Name: "ts", Primitive: ByTime, Window: 10 * time.Second, Slide: 5 * time.Second, EventTime: true, OutOfOrderness: time.Second},
		{Name: "tg", Primitive: ByTime, Gap: 1500 * time.Millisecond, EventTime: true, OutOfOrderness: 500 * time.Millisecond},
	}
	const inputs, perStream = 3, 300
	type obj struct {
		id  int
		ts  int64 // ms
		key string
	}
	gen := rand.New(rand.NewPCG(5, 6))
	streams := make([][]obj, inputs)
	id := 0
	for s := range streams {
		ts := int64(0)
		for i := 0; i < perStream; i++ {
			ts += int64(gen.IntN(400))
			o := obj{id: id, ts: ts - int64(gen.IntN(3500)), key: fmt.Sprintf("k%d", gen.IntN(12))}
			if i > 50 && gen.IntN(40) == 0 {
				o.ts = ts - 40_000 // far too late
			}
			streams[s] = append(streams[s], o)
			id++
		}
	}
	now := time.Unix(1_000_000, 0)
	type event struct {
		from   int
		o      *obj
		wm     int64 // the sender's watermark before o, or a marker's
		marker bool
	}
	run := func(sp Spec, seed uint64) string {
		rnd := rand.New(rand.NewPCG(seed, 1))
		// The senders: each stream with markers at random cycle ends.
		queues := make([][]event, inputs)
		for s := range streams {
			sp := sp
			sp.Inputs, sp.Self = inputs, s
			tr, _ := New(sp, 0)
			m := tr.(Merger)
			for i := range streams[s] {
				o := &streams[s][i]
				queues[s] = append(queues[s], event{from: s, o: o, wm: m.Send(o.ts, now)})
				if rnd.IntN(7) == 0 || i == len(streams[s])-1 {
					if wm, ok := m.Publish(); ok {
						queues[s] = append(queues[s], event{from: s, wm: wm, marker: true})
					}
				}
			}
			// The end of the input: the stream's watermark moves far on (as
			// idleness would make it), closing every window.
			queues[s] = append(queues[s], event{from: s, wm: int64(time.Hour) * 1000, marker: true})
		}
		sp.Inputs, sp.Self = inputs, 0
		tr, _ := New(sp, 0)
		var arrived []int // object ids by sequence number
		var firings []Firing
		for {
			var open []int
			for s := range queues {
				if len(queues[s]) > 0 {
					open = append(open, s)
				}
			}
			if len(open) == 0 {
				break
			}
			s := open[rnd.IntN(len(open))]
			e := queues[s][0]
			queues[s] = queues[s][1:]
			if e.marker {
				firings = tr.(Merger).Observe(e.from, e.wm, firings)
			} else {
				o := Objects{First: uint64(len(arrived)), Len: 1, Keys: []string{e.o.key}, EventTimes: []int64{e.o.ts},
					Upstream: []int32{int32(e.from)}, Watermarks: []int64{e.wm}}
				arrived = append(arrived, e.o.id)
				firings = tr.Put(o, now, firings)
			}
			if rnd.IntN(50) == 0 {
				st := tr.MarshalState()
				tr, _ = New(sp, 0)
				if err := tr.UnmarshalState(st, uint64(len(arrived))); err != nil {
					t.Fatal(err)
				}
			}
		}
		var lines []string
		for _, f := range firings {
			var ids []int
			for _, span := range f.Objects {
				for q := span.From; q < span.To; q++ {
					ids = append(ids, arrived[q])
				}
			}
			slices.Sort(ids)
			if f.Late {
				for _, id := range ids { // consecutive late objects share a firing
					lines = append(lines, fmt.Sprintf("late %d", id))
				}
				continue
			}
			lines = append(lines, fmt.Sprintf("fire %s %v %v", f.Group, f.Window.Start.UnixMilli(), ids))
		}
		slices.Sort(lines)
		return strings.Join(lines, "\n")
	}
	for _, sp := range specs {
		want := run(sp, 1)
		if !strings.Contains(want, "late") || !strings.Contains(want, "fire") {
			t.Fatalf("%s: the workload must fire windows and drop late objects:\n%s", sp.Name, want)
		}
		for seed := uint64(2); seed < 30; seed++ {
			if got := run(sp, seed); got != want {
				gl, wl := strings.Split(got, "\n"), strings.Split(want, "\n")
				var diff []string
				for _, l := range gl {
					if !slices.Contains(wl, l) {
						diff = append(diff, "+ "+l)
					}
				}
				for _, l := range wl {
					if !slices.Contains(gl, l) {
						diff = append(diff, "- "+l)
					}
				}
				t.Errorf("%s: interleaving %d differs from interleaving 1:\n%s", sp.Name, seed, strings.Join(diff, "\n"))
			}
		}
	}
}
