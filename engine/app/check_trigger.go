package app

import (
	"fmt"
	"strings"
	"time"

	"github.com/apache/arrow/go/v15/arrow"
)

// trigger checks trigger i by its primitive and records which function it
// fires.
func (v *validation) trigger(i int) {
	a, c := v.a, v.c
	p := fmt.Sprintf("triggers[%d]", i)
	t := &a.Triggers[i]
	if t.Bucket == "" {
		c.add(p+".bucket", "must be set")
	} else if a.Bucket(t.Bucket) == nil {
		c.add(p+".bucket", "unknown bucket %q%s", t.Bucket, suggest(t.Bucket, keys(a.bucketIdx)))
	}
	if t.Function == "" {
		c.add(p+".function", "must be set")
	} else if a.Function(t.Function) == nil {
		c.add(p+".function", "unknown function %q%s", t.Function, suggest(t.Function, keys(a.functionIdx)))
	} else {
		v.firedBy[t.Function] = append(v.firedBy[t.Function], i)
	}
	switch t.Primitive {
	case "immediate":
	case "by_batch_size":
		if t.Count <= 0 {
			c.add(p+".count", "must be > 0 for by_batch_size")
		}
	case "by_time":
		v.byTime(p, t)
	case "by_name":
		if t.Match == "" {
			c.add(p+".match", "must be set for by_name (the key to fire on)")
		}
	case "by_set":
		if len(t.Keys) == 0 {
			c.add(p+".keys", "must list the keys by_set waits for")
		}
		seen := map[string]bool{}
		for j, k := range t.Keys {
			if seen[k] {
				c.add(fmt.Sprintf("%s.keys[%d]", p, j), "duplicate key %q", k)
			}
			seen[k] = true
		}
	case "redundant":
		if t.K <= 0 {
			c.add(p+".k", "must be > 0")
		}
		if t.N < t.K {
			c.add(p+".n", "must be >= k (%d): fire with the first k of n", t.K)
		}
	case "dynamic_join":
		if t.ControlKey == "" {
			t.ControlKey = "_join"
		}
		if t.CountColumn == "" {
			c.add(p+".count_column", "must name the int64 column of the announcement that holds how many parts to wait for")
		}
	case "dynamic_group":
		if t.ControlKey == "" {
			t.ControlKey = "_done"
		}
		if t.Controls <= 0 {
			c.add(p+".controls", "must be > 0: how many control objects close a stage")
		}
		if t.GroupColumn == "" {
			c.add(p+".group_column", "must name the column that holds an object's group")
		}
	case "":
		c.add(p+".primitive", "must be set (%s)", primitives)
	default:
		c.add(p+".primitive", "unknown primitive %q (%s)", t.Primitive, primitives)
	}
	if t.SessionTimeout != "" {
		if d, err := time.ParseDuration(t.SessionTimeout); err != nil || d <= 0 {
			c.add(p+".session_timeout", "%q is not a positive duration (try 30s, 5m)", t.SessionTimeout)
		} else {
			t.sessionTimeout = d
		}
	}
	// Keys this primitive does not take (the spec says which take what).
	checkKinds(c, "triggers[]", p, t.Primitive, t)
}

// byTime checks a by_time trigger: its window, slide or gap, and the
// event-time settings that only `time: event` takes.
func (v *validation) byTime(p string, t *Trigger) {
	a, c := v.a, v.c
	dur := func(field, v string, dst *time.Duration) {
		if v == "" {
			return
		}
		if d, err := time.ParseDuration(v); err != nil {
			c.add(p+"."+field, "%q is not a duration (try 10s, 1m, 500ms)", v)
		} else if d <= 0 {
			c.add(p+"."+field, "must be > 0")
		} else {
			*dst = d
		}
	}
	dur("window", t.Window, &t.window)
	dur("slide", t.Slide, &t.slide)
	dur("gap", t.Gap, &t.gap)
	dur("out_of_orderness", t.OutOfOrderness, &t.outOfOrderness)
	dur("allowed_lateness", t.AllowedLateness, &t.lateness)
	dur("idle_timeout", t.IdleTimeout, &t.idle)
	dur("max_future", t.MaxFuture, &t.maxFuture)
	switch {
	case t.Window == "" && t.Gap == "":
		c.add(p+".window", "must be set for by_time (a duration like 10s), or set gap for session windows")
	case t.Gap != "" && (t.Window != "" || t.Slide != ""):
		c.add(p+".gap", "session windows (gap) take no window or slide")
	case t.slide > 0 && t.window > 0 && (t.slide > t.window || t.window%t.slide != 0):
		c.add(p+".slide", "must divide the window (%s)", t.Window)
	case t.slide > 0 && t.window/t.slide > MaxWindowsPerObject:
		c.add(p+".slide", "every object would be in %d windows (window %s / slide %s); at most %d",
			t.window/t.slide, t.Window, t.Slide, MaxWindowsPerObject)
	}
	switch t.Time {
	case "", "processing":
		t.Time = "processing"
		for _, f := range [][2]string{{"out_of_orderness", t.OutOfOrderness}, {"allowed_lateness", t.AllowedLateness},
			{"idle_timeout", t.IdleTimeout}, {"max_future", t.MaxFuture}, {"late_bucket", t.LateBucket}} {
			if f[1] != "" {
				c.add(p+"."+f[0], "only event-time windows (time: event) take %s", f[0])
			}
		}
	case "event":
		if t.maxFuture == 0 {
			t.maxFuture = time.Hour
		}
		if b := a.Bucket(t.Bucket); b != nil && b.EventTime == "" {
			c.add(p+".time", "event time needs an event_time column on bucket %q (or on the source that feeds it)", t.Bucket)
		}
		if t.LateBucket != "" && a.Bucket(t.LateBucket) == nil {
			c.add(p+".late_bucket", "unknown bucket %q%s", t.LateBucket, suggest(t.LateBucket, keys(a.bucketIdx)))
		}
	default:
		c.add(p+".time", "%q: want processing or event", t.Time)
	}
}

// triggerColumns checks the columns triggers read against their bucket's
// derived schema.
func (v *validation) triggerColumns() {
	a, c := v.a, v.c
	for i, t := range a.Triggers {
		b := a.Bucket(t.Bucket)
		if b == nil {
			continue
		}
		p := fmt.Sprintf("triggers[%d]", i)
		switch t.Primitive {
		case "by_name", "by_set", "dynamic_join", "dynamic_group":
			if b.Key == "" {
				c.add(p+".bucket", "%s looks at object keys, but bucket %q has no key column (set its key, or the key of the source that feeds it)", t.Primitive, b.Name)
			}
		}
		s := v.bucketSchema[b.Name]
		if s == nil {
			continue
		}
		if t.CountColumn != "" {
			if !hasColumn(s, t.CountColumn) {
				c.add(p+".count_column", "unknown column %q%s", t.CountColumn, suggest(t.CountColumn, columnNames(s)))
			} else if s.Field(s.FieldIndices(t.CountColumn)[0]).Type.ID() != arrow.INT64 {
				c.add(p+".count_column", "column %q must be int64", t.CountColumn)
			}
		}
		if t.GroupColumn != "" && !hasColumn(s, t.GroupColumn) {
			c.add(p+".group_column", "unknown column %q%s", t.GroupColumn, suggest(t.GroupColumn, columnNames(s)))
		}
	}
}

// triggerBounds checks that no trigger waits for more objects than its
// bucket may hold.
func (v *validation) triggerBounds() {
	a, c := v.a, v.c
	for i, t := range a.Triggers {
		b := a.Bucket(t.Bucket)
		if b == nil {
			continue
		}
		if t.Primitive == "by_batch_size" && b.MaxObjects > 0 && int64(t.Count) > b.MaxObjects {
			c.add(fmt.Sprintf("triggers[%d].count", i), "%d exceeds max_objects %d of bucket %q: the trigger can never fire", t.Count, b.MaxObjects, b.Name)
		}
		if m := b.MaxObjectsPerSession; m > 0 {
			if t.Primitive == "by_batch_size" && t.Count > m {
				c.add(fmt.Sprintf("triggers[%d].count", i), "%d exceeds max_objects_per_session %d of bucket %q: the trigger can never fire", t.Count, m, b.Name)
			}
			if t.Primitive == "by_set" && len(t.Keys) > m {
				c.add(fmt.Sprintf("triggers[%d].keys", i), "%d keys exceed max_objects_per_session %d of bucket %q: the set can never complete", len(t.Keys), m, b.Name)
			}
			if t.Primitive == "redundant" && t.K > m {
				c.add(fmt.Sprintf("triggers[%d].k", i), "%d exceeds max_objects_per_session %d of bucket %q: the trigger can never fire", t.K, m, b.Name)
			}
		}
	}
}

// checkCycles refuses loops bucket -> trigger -> function -> bucket: an
// object in such a loop re-triggers itself forever, and a loop nothing else
// feeds can never fire.
func (a *App) checkCycles(c *checker, firedBy map[string][]int) {
	next := map[string][]string{} // bucket -> buckets its triggers' functions write
	for _, t := range a.Triggers {
		if t.LateBucket != "" && a.Bucket(t.LateBucket) != nil {
			next[t.Bucket] = append(next[t.Bucket], t.LateBucket)
		}
		if f := a.Function(t.Function); f != nil {
			for _, o := range f.Outputs {
				if a.Bucket(o) != nil {
					next[t.Bucket] = append(next[t.Bucket], o)
				}
			}
		}
	}
	const (
		white = iota
		grey
		black
	)
	color := map[string]int{}
	var stack []string
	reported := false
	var visit func(b string)
	visit = func(b string) {
		color[b] = grey
		stack = append(stack, b)
		for _, n := range next[b] {
			if color[n] == grey && !reported {
				i := len(stack) - 1
				for stack[i] != n {
					i--
				}
				cyc := append(append([]string{}, stack[i:]...), n)
				c.add("triggers", "cycle through buckets %s: objects would trigger themselves forever, or never fire if nothing else feeds the loop", strings.Join(cyc, " -> "))
				reported = true
			} else if color[n] == white {
				visit(n)
			}
		}
		stack = stack[:len(stack)-1]
		color[b] = black
	}
	names := keys(a.bucketIdx)
	for _, b := range names {
		if color[b] == white {
			visit(b)
		}
	}
	_ = firedBy
}
