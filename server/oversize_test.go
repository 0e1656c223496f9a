package server

import (
	"strings"
	"testing"
	"time"

	"github.com/pheromone-go/pheromone/engine"
)

const oversizeApp = `
app: big
sources:
  - name: in
    topic: in
    partitions: 1
    max_record_bytes: 1000000
    schema: [{name: id, type: int64}, {name: pad, type: string}]
    bucket: in
buckets: [{name: in}]
triggers: [{name: each, bucket: in, primitive: immediate, function: pass}]
functions:
  - name: pass
    kind: project
    retries: 1
    columns: [{name: id}, {name: pad}, {name: copy, from: pad}]
    outputs: [out]
sinks: [{name: out, topic: out}]
`

// TestOversizeSinkOutputIsDeadLettered pins issue 11's first loss: a sink
// record over the broker's limit (there, an 800 KB bytes value that became
// 1.07 MB of base64; here, a 600 KB string a function copies) was refused
// by Kafka, the node exited and the input was lost. Now the
// output is checked against the topic's limit before it is sent: the
// function fails (after its retries), its input goes to the dead-letter
// topic with reason too_large, and the records around it flow on — also
// those of the same invocation: a row-wise function's input is split until
// the failing rows are alone.
func TestOversizeSinkOutputIsDeadLettered(t *testing.T) {
	brokers := cluster(t)
	clock := engine.NewManualClock(time.Unix(0, 0))
	n := startNode(t, oversizeApp, brokers, clock, t.TempDir())
	big := strings.Repeat("x", 600_000)
	produce(t, brokers, "in", 0, `{"id":1,"pad":"a"}`)
	consume(t, brokers, "out", 1, 0)
	// In one fetch, so (most likely) one invocation: the row-wise function
	// is split to find the failing row, and only it is dead-lettered.
	produce(t, brokers, "in", 0, `{"id":2,"pad":"`+big+`"}`, `{"id":3,"pad":"c"}`)
	advanceUntil(t, clock, 10*time.Millisecond, "the retry", func() bool {
		return scrape(t, n.info.HTTPAddr, `pheromone_dead_letters_total{app="big",reason="too_large"}`) == "1"
	})
	out := consume(t, brokers, "out", 2, 300*time.Millisecond)
	equalLines(t, "outputs around the oversize one", values(out), []string{`{"id":1,"pad":"a","copy":"a"}`, `{"id":3,"pad":"c","copy":"c"}`})
	dead := consume(t, brokers, "big.dlq", 1, 300*time.Millisecond)
	if len(dead) != 1 {
		t.Fatalf("dead letters: %d, want 1", len(dead))
	}
	d := dead[0]
	original := `{"id":2,"pad":"` + big + `"}`
	for k, want := range map[string]string{
		engine.HeaderReason: engine.ReasonTooLarge,
	} {
		if got := header(d, k); got != want {
			t.Errorf("dead letter header %s = %q, want %q", k, got, want)
		}
	}
	if !strings.Contains(header(d, engine.HeaderError), "exceeds its limit") || string(d.Value) != original {
		t.Errorf("dead letter: error %q, value of %d bytes (a prefix of the original: %v)", header(d, engine.HeaderError), len(d.Value), strings.HasPrefix(original, string(d.Value)))
	}
	waitFor(t, 10*time.Second, "offsets past every input", func() bool {
		return n.info.Node.Committed()[engine.TopicPartition{Topic: "in", Partition: 0}] == 3
	})
	produce(t, brokers, "in", 0, `{"id":4,"pad":"d"}`)
	out = consume(t, brokers, "out", 3, 300*time.Millisecond)
	if len(out) != 3 {
		t.Errorf("the node stopped serving: %q", values(out))
	}
}

// TestOversizeWindowResultIsDeadLettered: a batch that keeps only its
// running aggregate (no objects) whose result is too large for its sink
// dead-letters the result row itself — there are no inputs to send — and
// the next batch flows on.
func TestOversizeWindowResultIsDeadLettered(t *testing.T) {
	const app = `
app: bigagg
sources:
  - {name: in, topic: in, partitions: 1, max_record_bytes: 1000000, schema: [{name: id, type: int64}, {name: pad, type: string}], bucket: in}
buckets: [{name: in}]
triggers: [{name: pairs, bucket: in, primitive: by_batch_size, count: 2, function: agg}]
functions:
  - name: agg
    kind: aggregate
    retries: 1
    aggregates: [{name: n, op: count}, {name: hi, op: max, column: pad}, {name: hi2, op: max, column: pad}]
    outputs: [out]
sinks: [{name: out, topic: out}]
`
	brokers := cluster(t)
	clock := engine.NewManualClock(time.Unix(0, 0))
	n := startNode(t, app, brokers, clock, t.TempDir())
	big := strings.Repeat("x", 600_000)
	produce(t, brokers, "in", 0, `{"id":1,"pad":"`+big+`"}`, `{"id":2,"pad":"b"}`)
	advanceUntil(t, clock, 10*time.Millisecond, "the retry", func() bool {
		return scrape(t, n.info.HTTPAddr, `pheromone_dead_letters_total{app="bigagg",reason="too_large"}`) == "1"
	})
	dead := consume(t, brokers, "bigagg.dlq", 1, 300*time.Millisecond)
	// The row, cut to the dead-letter topic's limit as any dead letter is.
	if want := `{"n":2,"hi":"` + big + `","hi2":"` + big + `"}`; len(dead) != 1 || len(dead[0].Value) < 1000 || !strings.HasPrefix(want, string(dead[0].Value)) ||
		header(dead[0], engine.HeaderReason) != engine.ReasonTooLarge {
		t.Fatalf("dead letters: %d; want one, reason too_large, a prefix of the result row", len(dead))
	}
	produce(t, brokers, "in", 0, `{"id":3,"pad":"c"}`, `{"id":4,"pad":"d"}`)
	equalLines(t, "the next batch", values(consume(t, brokers, "out", 1, 300*time.Millisecond)), []string{`{"n":2,"hi":"d","hi2":"d"}`})
}
