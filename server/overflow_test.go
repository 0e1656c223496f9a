package server

import (
	"strings"
	"testing"
	"time"

	"github.com/pheromone-go/pheromone/engine"
)

const boundedApp = `
app: bounded
sources:
  - name: in
    topic: in
    partitions: 1
    schema: [{name: id, type: int64}]
    bucket: held
buckets:
  - {name: held, max_objects: 5}
triggers:
  - {name: five, bucket: held, primitive: by_batch_size, count: 5, function: total, incremental: false}
functions:
  - name: total
    kind: aggregate
    aggregates: [{name: n, op: count}]
    outputs: [out]
sinks:
  - {name: out, topic: out}
`

// TestBucketBoundsOverflowToDeadLetters pins the overflow policy: a put that
// would take a bucket partition past max_objects is refused whole, its
// objects go to the dead-letter topic with reason bucket_full, and later
// puts that fit are still accepted.
func TestBucketBoundsOverflowToDeadLetters(t *testing.T) {
	brokers := cluster(t)
	n := startNode(t, boundedApp, brokers, engine.NewManualClock(time.Unix(0, 0)), t.TempDir())
	produce(t, brokers, "in", 0, `{"id":1}`, `{"id":2}`, `{"id":3}`)
	waitFor(t, 10*time.Second, "first put held", func() bool {
		return scrape(t, n.info.HTTPAddr, `pheromone_bucket_objects{app="bounded",bucket="held",partition="0"}`) == "3"
	})
	produce(t, brokers, "in", 0, `{"id":4}`, `{"id":5}`, `{"id":6}`) // 6 > 5: refused
	dead := consume(t, brokers, "bounded.dlq", 3, 200*time.Millisecond)
	equalLines(t, "refused objects", values(dead), []string{`{"id":4}`, `{"id":5}`, `{"id":6}`})
	for _, r := range dead {
		if header(r, engine.HeaderReason) != engine.ReasonBucket || !strings.Contains(header(r, engine.HeaderError), `bucket "held" partition 0 is full`) {
			t.Errorf("headers %v", r.Headers)
		}
	}
	produce(t, brokers, "in", 0, `{"id":7}`, `{"id":8}`) // fits: 5, and fires
	out := consume(t, brokers, "out", 1, 200*time.Millisecond)
	equalLines(t, "batch of the objects that fit", values(out), []string{`{"n":5}`})
	waitFor(t, 10*time.Second, "bucket emptied after the firing", func() bool {
		return scrape(t, n.info.HTTPAddr, `pheromone_bucket_objects{app="bounded",bucket="held",partition="0"}`) == "0"
	})
	if got := scrape(t, n.info.HTTPAddr, `pheromone_dead_letters_total{app="bounded",reason="bucket_full"}`); got != "3" {
		t.Errorf("bucket_full dead letters = %s, want 3", got)
	}
}

const sessionBoundApp = `
app: sbound
sources:
  - name: parts
    topic: parts
    partitions: 1
    schema: [{name: req, type: string}, {name: key, type: string}, {name: n, type: int64}]
    key: key
    bucket: parts
buckets: [{name: parts, session: req, max_objects_per_session: 2}]
triggers: [{name: join, bucket: parts, primitive: dynamic_join, count_column: n, function: pass}]
functions: [{name: pass, kind: emit, outputs: [out]}]
sinks: [{name: out, topic: out}]
`

// TestSessionBoundOverflow: a session may hold max_objects_per_session
// objects; the excess goes to the dead-letter topic with reason
// session_full, other sessions and the announcement are unaffected.
func TestSessionBoundOverflow(t *testing.T) {
	brokers := cluster(t)
	startNode(t, sessionBoundApp, brokers, engine.NewManualClock(time.Unix(0, 0)), t.TempDir())
	produce(t, brokers, "parts", 0,
		`{"req":"r1","key":"p1"}`,
		`{"req":"r1","key":"p2"}`,
		`{"req":"r1","key":"p3"}`,
		`{"req":"r2","key":"p1"}`,
		`{"req":"r1","key":"_join","n":2}`,
		`{"req":"r2","key":"_join","n":1}`)
	equalLines(t, "joined", values(consume(t, brokers, "out", 3, 200*time.Millisecond)), []string{
		`{"req":"r1","key":"p1","n":null}`,
		`{"req":"r1","key":"p2","n":null}`,
		`{"req":"r2","key":"p1","n":null}`,
	})
	dead := consume(t, brokers, "sbound.dlq", 1, 200*time.Millisecond)
	equalLines(t, "refused", values(dead), []string{`{"req":"r1","key":"p3","n":null}`})
	if len(dead) == 1 && header(dead[0], engine.HeaderReason) != engine.ReasonSessionFull {
		t.Errorf("reason %q", header(dead[0], engine.HeaderReason))
	}
}
