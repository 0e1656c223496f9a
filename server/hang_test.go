package server

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow/go/v15/arrow/array"

	"github.com/pheromone-go/pheromone/engine"
	"github.com/pheromone-go/pheromone/engine/fn"
)

const hangApp = `
app: hang
sources:
  - name: in
    topic: in
    partitions: 2
    schema: [{name: id, type: int64}]
    bucket: in
buckets: [{name: in}]
triggers: [{name: each, bucket: in, primitive: immediate, function: work}]
functions:
  - {name: work, kind: go, timeout: 2s, retries: 1, schema: [{name: id, type: int64}], outputs: [out]}
sinks: [{name: out, topic: out}]
`

// hangOn13 forwards its input, except that a batch holding id 13 hangs
// forever, ignoring its context (the worst case).
func hangOn13(_ context.Context, in fn.Input, out fn.Output) error {
	for _, r := range in.Records {
		ids := r.Column(0).(*array.Int64)
		for i := 0; i < ids.Len(); i++ {
			if ids.Value(i) == 13 {
				select {} // hang
			}
		}
	}
	for _, r := range in.Records {
		r.Retain()
		if err := out.Emit(r); err != nil {
			return err
		}
	}
	return nil
}

// TestHangingFunctionTimesOut: an attempt that does not return within the
// function's timeout fails; after its retries the input goes to the DLQ,
// the metric moves, and the other partition keeps flowing meanwhile.
func TestHangingFunctionTimesOut(t *testing.T) {
	brokers := cluster(t)
	clock := engine.NewManualClock(time.Unix(0, 0))
	n := startNode(t, hangApp, brokers, clock, t.TempDir(),
		map[string]fn.Function{"work": fn.Func(hangOn13)})
	produce(t, brokers, "in", 0, `{"id":13}`)
	produce(t, brokers, "in", 1, `{"id":1}`, `{"id":2}`)
	// Partition 1 is not held up by the hang on partition 0: it commits
	// both records while partition 0 still waits out its 2 x 2 s.
	p0 := engine.TopicPartition{Topic: "in", Partition: 0}
	p1 := engine.TopicPartition{Topic: "in", Partition: 1}
	waitFor(t, 10*time.Second, "partition 1 committed", func() bool { return n.info.Node.Committed()[p1] == 2 })
	if got := n.info.Node.Committed()[p0]; got != 0 {
		t.Fatalf("partition 0 committed %d before its function timed out", got)
	}
	// The attempts time out on real time; the backoff between them runs on
	// the clock.
	errs := `pheromone_function_errors_total{app="hang",function="work"}`
	waitFor(t, 10*time.Second, "the first attempt timed out", func() bool { return scrape(t, n.info.HTTPAddr, errs) == "1" })
	advanceUntil(t, clock, 10*time.Millisecond, "the retry timed out", func() bool { return scrape(t, n.info.HTTPAddr, errs) == "2" })
	dead := consume(t, brokers, "hang.dlq", 1, 100*time.Millisecond)
	equalLines(t, "dead letters", values(dead), []string{`{"id":13}`})
	if len(dead) == 1 && !strings.Contains(header(dead[0], engine.HeaderError), "timed out after 2s") {
		t.Errorf("error header %q", header(dead[0], engine.HeaderError))
	}
	produce(t, brokers, "in", 0, `{"id":3}`)
	out := consume(t, brokers, "out", 3, 200*time.Millisecond)
	equalLines(t, "outputs", sorted(values(out)), []string{`{"id":1}`, `{"id":2}`, `{"id":3}`})
	if got := scrape(t, n.info.HTTPAddr, `pheromone_function_errors_total{app="hang",function="work"}`); got != "2" {
		t.Errorf("function errors = %s, want 2 (1 attempt + 1 retry)", got)
	}
}
