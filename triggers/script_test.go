package triggers

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The scripts under testdata drive one trigger through puts, clock advances
// and restarts. Each command is followed by "----" and the firings (or state)
// it must produce. Commands:
//
//	new primitive=P [count=N] [window=D] [name=K] [keys=a,b] [k=K n=N]
//	    [control=C] [controls=N] [timeout=D]  builds trigger "t" (next seq 0)
//	    [time=event] [slide=D] [gap=D] [bound=D] [lateness=D] [idle=D] [future=D]
//	put [n=N] [key=K] [session=S] [group=G] [count=C] [ts=D (event time)]
//	                                        puts N objects (default 1) with those
//	                                        attributes at the current time
//	advance by=D                            moves the clock and calls Tick
//	clock by=D                              moves the clock without a Tick
//	restart                                 marshals state and rebuilds the trigger
//	state                                   prints low, pending and next tick
//	caughtup [off]                          the engine reports the input caught up
//	                                        with its log end now (off: not caught up)
//	watermark                               prints the watermark, idleness, oldest window
//
// Merged watermarks (new ... inputs=N self=I, a bucket with partition_by):
//
//	put ... from=I wm=D                     objects sent by upstream I whose
//	                                        watermark was D before them
//	send ts=D                               this partition sends an object: prints
//	                                        its watermark before it
//	publish                                 prints this partition's watermark if changed
//	observe from=I wm=D                     upstream I published watermark D
//
// Times print as offsets from the script's epoch (1970-01-01).
func TestScripts(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scripts: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) { runScript(t, f) })
	}
}

type scriptEnv struct {
	spec Spec
	tr   Trigger
	now  time.Time
	next uint64
}

func runScript(t *testing.T, path string) {
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	env := &scriptEnv{now: time.Unix(0, 0).UTC()}
	lines := strings.Split(string(raw), "\n")
	for i := 0; i < len(lines); i++ {
		cmd := strings.TrimSpace(lines[i])
		if cmd == "" || strings.HasPrefix(cmd, "#") {
			continue
		}
		lineNo := i + 1
		i++
		if i >= len(lines) || strings.TrimSpace(lines[i]) != "----" {
			t.Fatalf("%s:%d: command without ---- separator", path, lineNo)
		}
		var want []string
		for i+1 < len(lines) && strings.TrimSpace(lines[i+1]) != "" {
			i++
			want = append(want, strings.TrimSpace(lines[i]))
		}
		got := env.run(t, cmd)
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s:%d: %s\n got:\n%s\nwant:\n%s", path, lineNo, cmd,
				strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
}

func (e *scriptEnv) run(t *testing.T, cmd string) []string {
	t.Helper()
	fields := strings.Fields(cmd)
	args := map[string]string{}
	for _, f := range fields[1:] {
		k, v, _ := strings.Cut(f, "=")
		args[k] = v
	}
	dur := func(k string) time.Duration {
		d, err := time.ParseDuration(args[k])
		if err != nil {
			t.Fatalf("%s: %s: %v", cmd, k, err)
		}
		return d
	}
	switch fields[0] {
	case "new":
		e.spec = Spec{Name: "t", Primitive: args["primitive"]}
		if args["count"] != "" {
			e.spec.Count, _ = strconv.Atoi(args["count"])
		}
		if args["window"] != "" {
			e.spec.Window = dur("window")
		}
		if args["timeout"] != "" {
			e.spec.SessionTimeout = dur("timeout")
		}
		e.spec.Match = args["name"]
		if args["keys"] != "" {
			e.spec.Keys = strings.Split(args["keys"], ",")
		}
		e.spec.K, _ = strconv.Atoi(args["k"])
		e.spec.N, _ = strconv.Atoi(args["n"])
		e.spec.ControlKey = args["control"]
		e.spec.EventTime = args["time"] == "event"
		for k, d := range map[string]*time.Duration{"slide": &e.spec.Slide, "gap": &e.spec.Gap, "bound": &e.spec.OutOfOrderness,
			"lateness": &e.spec.AllowedLateness, "idle": &e.spec.IdleTimeout, "future": &e.spec.MaxFuture} {
			if args[k] != "" {
				*d = dur(k)
			}
		}
		e.spec.Controls, _ = strconv.Atoi(args["controls"])
		e.spec.Inputs, _ = strconv.Atoi(args["inputs"])
		e.spec.Self, _ = strconv.Atoi(args["self"])
		e.spec.MaxPerSession, _ = strconv.Atoi(args["max"])
		if args["at"] != "" {
			e.now = time.Unix(0, 0).UTC().Add(dur("at"))
		}
		tr, err := New(e.spec, e.next)
		if err != nil {
			return []string{"error: " + err.Error()}
		}
		e.tr = tr
		return nil
	case "put":
		n := 1
		if args["n"] != "" {
			n, _ = strconv.Atoi(args["n"])
		}
		objs := Objects{First: e.next, Len: n}
		c, _ := strconv.ParseInt(args["count"], 10, 64)
		if args["ts"] != "" {
			for i := 0; i < n; i++ {
				objs.EventTimes = append(objs.EventTimes, dur("ts").Milliseconds())
			}
		}
		if args["from"] != "" {
			from, _ := strconv.Atoi(args["from"])
			for i := 0; i < n; i++ {
				objs.Upstream = append(objs.Upstream, int32(from))
				objs.Watermarks = append(objs.Watermarks, int64(dur("wm")))
			}
		}
		for i := 0; i < n; i++ {
			objs.Keys = append(objs.Keys, args["key"])
			objs.Sessions = append(objs.Sessions, args["session"])
			objs.Groups = append(objs.Groups, args["group"])
			objs.Counts = append(objs.Counts, c)
		}
		e.next += uint64(n)
		return format(e.tr.Put(objs, e.now, nil))
	case "advance":
		e.now = e.now.Add(dur("by"))
		return format(e.tr.Tick(e.now, nil))
	case "clock":
		e.now = e.now.Add(dur("by"))
		return nil
	case "restart":
		st := e.tr.MarshalState()
		tr, err := New(e.spec, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := tr.UnmarshalState(st, e.next); err != nil {
			return []string{"error: " + err.Error()}
		}
		e.tr = tr
		return nil
	case "caughtup":
		since := e.now
		if len(fields) > 1 && fields[1] == "off" {
			since = time.Time{}
		}
		e.tr.(Idler).CaughtUp(since)
		return nil
	case "watermark":
		w := e.tr.(Watermarker)
		wm, ok := w.Watermark()
		line := "watermark=none"
		if ok {
			line = "watermark=" + wm.Sub(time.Unix(0, 0)).String()
		}
		line += fmt.Sprintf(" idle=%v", w.Idle(e.now))
		if o := w.OldestWindow(); !o.IsZero() {
			line += " oldest=" + o.Sub(time.Unix(0, 0)).String()
		}
		return []string{line}
	case "send":
		return []string{"before=" + fmtWm(e.tr.(Merger).Send(dur("ts").Milliseconds(), e.now))}
	case "publish":
		wm, changed := e.tr.(Merger).Publish()
		if !changed {
			return []string{"unchanged"}
		}
		return []string{"published=" + fmtWm(wm)}
	case "observe":
		from, _ := strconv.Atoi(args["from"])
		return format(e.tr.(Merger).Observe(from, int64(dur("wm")), nil))
	case "state":
		nt := "none"
		if tk := e.tr.NextTick(); !tk.IsZero() {
			nt = tk.Sub(time.Unix(0, 0)).String()
		}
		line := fmt.Sprintf("low=%d pending=%d next_tick=%s", e.tr.Low(), e.tr.Pending(), nt)
		if d := e.tr.Dropped(); d > 0 {
			line += fmt.Sprintf(" dropped=%d", d)
		}
		return []string{line}
	}
	t.Fatalf("unknown command %q", cmd)
	return nil
}

func fmtWm(wm int64) string {
	if wm == NoWatermark {
		return "none"
	}
	return time.Duration(wm).String()
}

func format(fs []Firing) []string {
	var out []string
	epoch := time.Unix(0, 0)
	for _, f := range fs {
		s := "fire " + f.Trigger
		if f.Expired {
			s = "expire " + f.Trigger
		}
		if f.Late {
			s = "late " + f.Trigger
		}
		if f.Overflow {
			s = "overflow " + f.Trigger
		}
		if f.Session != "" {
			s += " session=" + f.Session
		}
		if f.Group != "" {
			s += " group=" + f.Group
		}
		if !f.Window.IsZero() {
			s += fmt.Sprintf(" window=[%s,%s)", f.Window.Start.Sub(epoch), f.Window.End.Sub(epoch))
		}
		for _, sp := range f.Objects {
			s += fmt.Sprintf(" [%d,%d)", sp.From, sp.To)
		}
		out = append(out, s)
	}
	return out
}

func TestProgress(t *testing.T) {
	tr, _ := New(Spec{Name: "s", Primitive: BySet, Keys: []string{"a", "b", "c"}}, 0)
	tr.Put(Objects{First: 0, Len: 3, Keys: []string{"b", "a", "c"}, Sessions: []string{"s2", "s1", "s2"}}, time.Unix(0, 0), nil)
	got := fmt.Sprintf("%+v", tr.(Progressor).Progress())
	want := "[{Session:s1 Group: Have:1 Need:3 Missing:[b c] Controls:0 WindowStart:<nil> WindowEnd:<nil>} " +
		"{Session:s2 Group: Have:2 Need:3 Missing:[a] Controls:0 WindowStart:<nil> WindowEnd:<nil>}]"
	if got != want {
		t.Errorf("progress:\n%s\nwant\n%s", got, want)
	}
}
