package server

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/memory"

	"github.com/pheromone-go/pheromone/engine"
	"github.com/pheromone-go/pheromone/engine/fn"
)

type failing struct {
	calls atomic.Int64
	panic bool
}

func (f *failing) Invoke(context.Context, fn.Input, fn.Output) error {
	f.calls.Add(1)
	if f.panic {
		panic("boom")
	}
	return errors.New("downstream service unavailable")
}

// TestFunctionFailureGoesToDeadLetters pins that a function that keeps
// failing (or panicking) is retried `retries` times, then its inputs go to
// the dead-letter topic with the error, and the node keeps processing.
func TestFunctionFailureGoesToDeadLetters(t *testing.T) {
	for _, panics := range []bool{false, true} {
		name := "error"
		if panics {
			name = "panic"
		}
		t.Run(name, func(t *testing.T) {
			brokers := cluster(t)
			clock := engine.NewManualClock(time.Date(2026, 1, 1, 0, 0, 2, 0, time.UTC))
			bad := &failing{panic: panics}
			n := startNode(t, ordersApp, brokers, clock, t.TempDir(), map[string]fn.Function{"batch_total": bad})
			produce(t, brokers, "orders", 0, order(1, "ann", 10), order(2, "bob", 20), order(3, "cat", 30))
			// The backoff between attempts (10, 20, 40 ms) runs on the clock.
			advanceUntil(t, clock, 10*time.Millisecond, "1 + 3 attempts", func() bool { return bad.calls.Load() == 4 })

			dead := consume(t, brokers, "orders.dlq", 3, 200*time.Millisecond)
			equalLines(t, "dead-lettered inputs", values(dead), []string{
				`{"id":1,"user":"ann","amount":10}`, `{"id":2,"user":"bob","amount":20}`, `{"id":3,"user":"cat","amount":30}`,
			})
			wantErr := "downstream service unavailable"
			if panics {
				wantErr = "function panicked: boom"
			}
			for _, r := range dead {
				if !strings.Contains(header(r, engine.HeaderError), wantErr) || header(r, engine.HeaderFunction) != "batch_total" ||
					header(r, engine.HeaderReason) != engine.ReasonFunction || header(r, engine.HeaderTrigger) != "every3" {
					t.Errorf("dead letter headers: %v", r.Headers)
				}
			}
			if got := bad.calls.Load(); got != 4 {
				t.Errorf("function called %d times, want 1 + 3 retries", got)
			}
			// The node keeps going: the window still fires with the same objects.
			clock.Advance(8 * time.Second)
			w := consume(t, brokers, "window-totals", 3, 200*time.Millisecond)
			if len(w) != 3 {
				t.Fatalf("window totals after a failing function: %q", values(w))
			}
			addr := n.info.HTTPAddr
			for prefix, want := range map[string]string{
				`pheromone_function_errors_total{app="orders",function="batch_total"}`: "4",
				`pheromone_dead_letters_total{app="orders",reason="function"}`:         "3",
			} {
				if got := scrape(t, addr, prefix); got != want {
					t.Errorf("%s = %s, want %s", prefix, got, want)
				}
			}
		})
	}
}

const goSchemaApp = `
app: gs
sources:
  - {name: in, topic: in, partitions: 1, schema: [{name: id, type: int64}], bucket: in}
buckets: [{name: in}]
triggers: [{name: each, bucket: in, primitive: immediate, function: score}]
functions:
  - {name: score, kind: go, schema: [{name: id, type: int64}, {name: score, type: float64}], outputs: [out]}
sinks: [{name: out, topic: out}]
`

// TestGoFunctionSchemaIsChecked: a Go function that emits a column of
// another type than its declared schema says (here score as a string) is a
// function error naming the column — retried, then its input is
// dead-lettered — instead of a record the encoders and buckets downstream
// cannot read; a conforming emit flows on.
func TestGoFunctionSchemaIsChecked(t *testing.T) {
	brokers := cluster(t)
	wrong := arrow.NewSchema([]arrow.Field{{Name: "id", Type: arrow.PrimitiveTypes.Int64, Nullable: true}, {Name: "score", Type: arrow.BinaryTypes.String, Nullable: true}}, nil)
	right := arrow.NewSchema([]arrow.Field{{Name: "id", Type: arrow.PrimitiveTypes.Int64, Nullable: true}, {Name: "score", Type: arrow.PrimitiveTypes.Float64, Nullable: true}}, nil)
	score := fn.Func(func(_ context.Context, in fn.Input, out fn.Output) error {
		for _, rec := range in.Records {
			ids := rec.Column(0).(*array.Int64)
			for i := 0; i < ids.Len(); i++ {
				schema := right
				if ids.Value(i) == 2 {
					schema = wrong
				}
				b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
				b.Field(0).(*array.Int64Builder).Append(ids.Value(i))
				if schema == wrong {
					b.Field(1).(*array.StringBuilder).Append("high")
				} else {
					b.Field(1).(*array.Float64Builder).Append(float64(ids.Value(i)) / 10)
				}
				r := b.NewRecord()
				b.Release()
				if err := out.Emit(r); err != nil {
					return err
				}
			}
		}
		return nil
	})
	clock := engine.NewManualClock(time.Unix(0, 0))
	n := startNode(t, goSchemaApp, brokers, clock, t.TempDir(), map[string]fn.Function{"score": score})
	produce(t, brokers, "in", 0, `{"id":1}`)
	consume(t, brokers, "out", 1, 0)
	produce(t, brokers, "in", 0, `{"id":2}`)
	advanceUntil(t, clock, 10*time.Millisecond, "the dead letter", func() bool {
		return scrape(t, n.info.HTTPAddr, `pheromone_dead_letters_total{app="gs",reason="function"}`) == "1"
	})
	dead := consume(t, brokers, "gs.dlq", 1, 100*time.Millisecond)
	if len(dead) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dead))
	}
	if got := header(dead[0], engine.HeaderError); !strings.Contains(got, `column "score" is utf8, declared float64`) || string(dead[0].Value) != `{"id":2}` {
		t.Fatalf("dead letter %s: error %q", dead[0].Value, got)
	}
	produce(t, brokers, "in", 0, `{"id":3}`)
	equalLines(t, "outputs", values(consume(t, brokers, "out", 2, 200*time.Millisecond)), []string{`{"id":1,"score":0.1}`, `{"id":3,"score":0.3}`})
}
