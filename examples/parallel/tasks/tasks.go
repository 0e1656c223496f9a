// Package tasks holds the Go functions of examples/parallel: fan_out and
// sleep (also used by benchmarks/parallel).
package tasks

import (
	"context"
	"fmt"
	"time"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/memory"

	"github.com/pheromone-go/pheromone/engine/fn"
)

// Functions is this binary's registry: the app file names fan_out and
// sleep.
func Functions() *fn.Registry {
	return fn.NewRegistry().Register("fan_out", fn.Func(fanOut)).Register("sleep", fn.Func(sleep))
}

// MaxTasks bounds one request's fan-out.
const MaxTasks = 100_000

var (
	str = arrow.BinaryTypes.String
	i64 = arrow.PrimitiveTypes.Int64

	taskSchema = arrow.NewSchema([]arrow.Field{{Name: "task", Type: str, Nullable: true}, {Name: "parts", Type: i64, Nullable: true},
		{Name: "sleep_ms", Type: i64, Nullable: true}, {Name: "accepted_us", Type: i64, Nullable: true}}, nil)
	doneSchema = arrow.NewSchema([]arrow.Field{{Name: "task", Type: str, Nullable: true}, {Name: "parts", Type: i64, Nullable: true},
		{Name: "accepted_us", Type: i64, Nullable: true}, {Name: "started_us", Type: i64, Nullable: true}, {Name: "ended_us", Type: i64, Nullable: true}}, nil)
)

// fanOut turns each request (tasks, sleep_ms) into its tasks t0..tN-1 and
// the announcement of N (task "_join", parts N) for the dynamic_join.
func fanOut(_ context.Context, in fn.Input, out fn.Output) error {
	now := time.Now().UnixMicro()
	for _, rec := range in.Records {
		tasks := rec.Column(rec.Schema().FieldIndices("tasks")[0]).(*array.Int64)
		sleeps := rec.Column(rec.Schema().FieldIndices("sleep_ms")[0]).(*array.Int64)
		b := array.NewRecordBuilder(memory.DefaultAllocator, taskSchema)
		for i := 0; i < int(rec.NumRows()); i++ {
			n := tasks.Value(i)
			if n < 1 || n > MaxTasks {
				b.Release()
				return fmt.Errorf("tasks: %d, want 1..%d", n, MaxTasks)
			}
			b.Reserve(int(n) + 1)
			for k := int64(0); k <= n; k++ {
				task := fmt.Sprintf("t%d", k)
				if k == n {
					task = "_join"
				}
				b.Field(0).(*array.StringBuilder).Append(task)
				b.Field(1).(*array.Int64Builder).Append(n)
				b.Field(2).(*array.Int64Builder).Append(sleeps.Value(i))
				b.Field(3).(*array.Int64Builder).Append(now)
			}
		}
		r := b.NewRecord()
		b.Release()
		if err := out.Emit(r); err != nil {
			return err
		}
	}
	return nil
}

// sleep runs one task: it sleeps sleep_ms and reports when it started and
// ended (the announcement passes through without sleeping).
func sleep(ctx context.Context, in fn.Input, out fn.Output) error {
	for _, rec := range in.Records {
		col := func(name string) arrow.Array { return rec.Column(rec.Schema().FieldIndices(name)[0]) }
		tasks, parts := col("task").(*array.String), col("parts").(*array.Int64)
		sleeps, accepted := col("sleep_ms").(*array.Int64), col("accepted_us").(*array.Int64)
		b := array.NewRecordBuilder(memory.DefaultAllocator, doneSchema)
		for i := 0; i < int(rec.NumRows()); i++ {
			start := time.Now()
			if tasks.Value(i) != "_join" && sleeps.Value(i) > 0 {
				select {
				case <-time.After(time.Duration(sleeps.Value(i)) * time.Millisecond):
				case <-ctx.Done():
					b.Release()
					return ctx.Err()
				}
			}
			b.Field(0).(*array.StringBuilder).Append(tasks.Value(i))
			b.Field(1).(*array.Int64Builder).Append(parts.Value(i))
			b.Field(2).(*array.Int64Builder).Append(accepted.Value(i))
			b.Field(3).(*array.Int64Builder).Append(start.UnixMicro())
			b.Field(4).(*array.Int64Builder).Append(time.Now().UnixMicro())
		}
		r := b.NewRecord()
		b.Release()
		if err := out.Emit(r); err != nil {
			return err
		}
	}
	return nil
}
