package server

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

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
