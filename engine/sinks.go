package engine

import "fmt"

// The engine's own sinks implement the same SinkWriter contract as a
// connector's: a task has one writer per sink of the app (except the
// result sink, whose rows answer invocations — see invoke.go), and applies
// an invocation's rows to every sink the same way (task.apply). The
// engine's writers join the cycle's durability directly: a Kafka topic's
// records are the cycle's acks (or its transaction), a table's rows go into
// the cycle's state batch; so they report done at once.

// topicWriter writes a Kafka sink's rows through the task's writer.
type topicWriter struct {
	t     *task
	topic string
	rec   OutRecord // reused: the writer does not keep it past Produce
}

// Write implements SinkWriter.
func (w *topicWriter) Write(rows []SinkRow, done func(error)) {
	for _, r := range rows {
		w.rec = OutRecord{Topic: w.topic, Key: r.Key, Value: r.Value, Headers: r.Headers}
		w.t.produce(&w.rec) // among the cycle's acks
	}
	done(nil)
}

// Close implements SinkWriter.
func (w *topicWriter) Close() error { return nil }

// tableWriter keeps a table sink's rows for the cycle's state batch.
type tableWriter struct {
	t     *task
	table string
}

// Write implements SinkWriter.
func (w *tableWriter) Write(rows []SinkRow, done func(error)) {
	for _, r := range rows {
		w.t.tableWrites = append(w.t.tableWrites, tableRow{table: w.table, key: r.Key, value: r.Value})
	}
	done(nil) // durable with the cycle's state batch
}

// Close implements SinkWriter.
func (w *tableWriter) Close() error { return nil }

// openSinks opens the task's writer of every sink but the result.
func (t *task) openSinks() error {
	t.sinkWriters = map[string]SinkWriter{}
	for i := range t.n.plan.app.Sinks {
		s := &t.n.plan.app.Sinks[i]
		switch s.Kind {
		case "result":
		case "kafka":
			t.sinkWriters[s.Name] = &topicWriter{t: t, topic: s.Topic}
		case "table":
			t.sinkWriters[s.Name] = &tableWriter{t: t, table: s.Name}
		default:
			sw, err := t.n.o.SinkKinds[s.Kind].Open(s, t.part)
			if err != nil {
				return fmt.Errorf("sink %q: %w", s.Name, err)
			}
			t.sinkWriters[s.Name] = sw
		}
	}
	return nil
}
