package server

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/pheromone-go/pheromone/connectors/kafka"
	"github.com/pheromone-go/pheromone/connectors/prom"
	"github.com/pheromone-go/pheromone/engine"
	"github.com/pheromone-go/pheromone/engine/app"
)

// checkCopartitioned refuses to start when a topic a partition task joins
// (the changelog, a repartition topic) exists with fewer partitions than
// the app's sources: some partitions would have no state to restore.
func checkCopartitioned(ctx context.Context, a *app.App, conn kafka.Conn) error {
	var topics []string
	if a.Kafka.ChangelogEnabled() {
		topics = append(topics, a.Kafka.ChangelogTopic)
	}
	for _, b := range a.Buckets {
		if b.PartitionBy != "" {
			topics = append(topics, a.RepartitionTopic(b.Name))
		}
	}
	if a.DurableInvoke() {
		topics = append(topics, a.InvocationsTopic())
	}
	if len(topics) == 0 {
		return nil
	}
	parts, err := kafka.TopicPartitions(ctx, conn, topics...)
	if err != nil {
		return err
	}
	var bad []string
	for _, t := range topics {
		if n, ok := parts[t]; ok && n != a.Partitions() {
			bad = append(bad, fmt.Sprintf("topic %s has %d partitions, the app's sources have %d", t, n, a.Partitions()))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("topics are not co-partitioned with the sources (delete them or match the partition counts): %s", strings.Join(bad, "; "))
	}
	return nil
}

// handler serves a node's HTTP API: /healthz, /readyz, /metrics, the
// invocation API and the live queries (routed to the owning node through
// rt; a nil rt answers from this node only), and the console (cons).
func handler(a *app.App, node *engine.Node, prod engine.Producer, m *prom.Metrics, rt *router, cons *console) http.Handler {
	mux := http.NewServeMux()
	(&apiHandler{app: a, node: node, producer: prod, metrics: m, router: rt}).register(mux)
	if cons != nil {
		cons.register(mux)
	}
	mux.HandleFunc("GET /v1/app", func(w http.ResponseWriter, _ *http.Request) {
		// The app as this node's state sees it: what a joining node of
		// another version compares its own with.
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(engine.Canonical(a))
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if rs := node.Restoring(); len(rs) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			for _, r := range rs {
				fmt.Fprintf(w, "not ready: partition %d restoring from the changelog: %d records left, %.1f MB applied in %s\n",
					r.Partition, r.Remaining, float64(r.Bytes)/1e6, r.Elapsed.Round(time.Millisecond))
			}
			return
		}
		if why := node.DiskPaused(); why != "" {
			http.Error(w, "not ready: "+why, http.StatusServiceUnavailable)
			return
		}
		if st := node.Stopped(); len(st) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			for p, why := range st {
				fmt.Fprintf(w, "not ready: partition %d stopped: %s\n", p, why)
			}
			return
		}
		if rt := node.Retrying(); len(rt) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			for p, why := range rt {
				fmt.Fprintf(w, "not ready: partition %d retrying from its last commit: %s\n", p, why)
			}
			return
		}
		if !node.Ready() {
			http.Error(w, "not ready: waiting for partition assignment", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, "ready: partitions %v\n", node.Partitions())
		if sb := node.Standbys(); len(sb) > 0 {
			fmt.Fprintf(w, "standby replicas of partitions %v\n", sb)
		}
	})
	mux.Handle("/metrics", m.Handler())
	return mux
}

// progress prints a one-line summary every second: a live line on a
// terminal, a log line every 10 s otherwise.
func progress(ctx context.Context, node *engine.Node, w io.Writer) {
	if !isTerminal(w) {
		w = &progressLines{w: w}
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	prev, prevT := node.Stats(), time.Now()
	for {
		select {
		case <-ctx.Done():
			if _, ok := w.(*progressLines); !ok {
				fmt.Fprintln(w)
			}
			return
		case now := <-t.C:
			s := node.Stats()
			dt := now.Sub(prevT).Seconds()
			line := fmt.Sprintf("in %d (%.0f/s)  out %d (%.0f/s)  firings %d (%.0f/s)  dead-letters %d",
				s.RecordsIn, float64(s.RecordsIn-prev.RecordsIn)/dt,
				s.RecordsOut, float64(s.RecordsOut-prev.RecordsOut)/dt,
				s.Firings, float64(s.Firings-prev.Firings)/dt, s.DeadLetters)
			if pl, ok := w.(*progressLines); ok {
				pl.line(now, line)
			} else {
				fmt.Fprintf(w, "\r\033[K%s", line)
			}
			prev, prevT = s, now
		}
	}
}

// progressLines prints the summary as a log line every 10 s when stdout is
// not a terminal.
type progressLines struct {
	w    io.Writer
	last time.Time
}

func (p *progressLines) Write(b []byte) (int, error) { return p.w.Write(b) }

func (p *progressLines) line(now time.Time, s string) {
	if now.Sub(p.last) >= 10*time.Second {
		p.last = now
		fmt.Fprintln(p.w, s)
	}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// loadTableFile reads a table from a file of JSON lines.
func loadTableFile(node *engine.Node, tb *app.Table) error {
	raw, err := os.ReadFile(tb.File)
	if err != nil {
		return fmt.Errorf("table %s: %w", tb.Name, err)
	}
	for i, line := range bytes.Split(raw, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		if err := node.UpsertTable(tb.Name, nil, line); err != nil {
			return fmt.Errorf("%s:%d: %w", tb.File, i+1, err)
		}
	}
	return nil
}
