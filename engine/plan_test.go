package engine_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/pheromone-go/pheromone/engine"
)

const planApp = `
app: plan
sources: [{name: in, topic: in, partitions: 1, schema: [{name: k, type: string}, {name: v, type: int64}], bucket: in}]
buckets: [{name: in}]
triggers:
  - {name: win, bucket: in, primitive: by_time, window: 10s, function: totals}
  - {name: each, bucket: in, primitive: immediate, function: big}
functions:
  - {name: totals, kind: aggregate, group_by: [k], aggregates: [{name: n, op: count}], outputs: [out]}
  - {name: big, kind: filter, expr: "v > 10", outputs: [out]}
sinks: [{name: out, topic: out, partitions: 1}]
`

// TestPlanOfIncrementalWindows: a window firing a built-in aggregate keeps
// partial aggregates, so what they are is state: turning incremental off
// or on, or changing the aggregates, is refused (with the trigger to
// reset); with incremental: false the aggregates are a function like any.
func TestPlanOfIncrementalWindows(t *testing.T) {
	old := parseApp(t, planApp)
	for _, tc := range []struct {
		name, from, to string
		want           []string
	}{
		{"a filter", `"v > 10"`, `"v > 20"`, []string{"keep function big: changed"}},
		{"incremental off", "window: 10s,", "window: 10s, incremental: false,", []string{"refused trigger win: incremental: true → false"}},
		{"incremental: true said", "window: 10s,", "window: 10s, incremental: true,", nil},
		{"an aggregate added", "[{name: n, op: count}]", "[{name: n, op: count}, {name: s, op: sum, column: v}]",
			[]string{"refused trigger win: partial aggregates: totals by (k): n=count() → totals by (k): n=count(), s=sum(v)", "keep function totals: changed"}},
	} {
		cur := parseApp(t, strings.Replace(planApp, tc.from, tc.to, 1))
		var got []string
		for _, it := range engine.Plan(old, cur, nil, false) {
			got = append(got, fmt.Sprintf("%s %s: %s", it.Action, it.Item, it.Change))
		}
		if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
			t.Errorf("%s:\n got %q\nwant %q", tc.name, got, tc.want)
		}
	}
	// Without partials, the aggregates are only a function.
	off := parseApp(t, strings.Replace(planApp, "window: 10s,", "window: 10s, incremental: false,", 1))
	cur := parseApp(t, strings.Replace(strings.Replace(planApp, "window: 10s,", "window: 10s, incremental: false,", 1),
		"[{name: n, op: count}]", "[{name: n, op: count}, {name: s, op: sum, column: v}]", 1))
	for _, it := range engine.Plan(off, cur, nil, false) {
		if it.Action != engine.Keep {
			t.Errorf("incremental: false, an aggregate added: %s %s: %s", it.Action, it.Item, it.Change)
		}
	}
}
