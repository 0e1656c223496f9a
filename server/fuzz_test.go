package server

import (
	"bytes"
	"testing"

	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/ipc"
	"github.com/apache/arrow/go/v15/arrow/memory"

	"github.com/pheromone-go/pheromone/engine/app"
)

// FuzzInvokeBody: an invocation body — JSON or an Arrow IPC stream — is
// decoded into rows or refused with an error, never a panic.
func FuzzInvokeBody(f *testing.F) {
	a, err := app.Parse([]byte(chainInvokeApp))
	if err != nil {
		f.Fatal(err)
	}
	if err := a.Validate(); err != nil {
		f.Fatal(err)
	}
	h := &apiHandler{app: a}
	f.Add(false, []byte(`{"text":"hi","n":21}`))
	f.Add(false, []byte(`[{"text":"a","n":1},{"text":"b","n":2}]`))
	f.Add(false, []byte(`[]`))
	f.Add(false, []byte(`{"text":"\u0000","n":1e400}`))
	// A valid Arrow stream of the entry schema.
	schema := a.EntrySource().ArrowSchema()
	b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	for _, fb := range b.Fields() {
		fb.AppendNull()
	}
	rec := b.NewRecord()
	var buf bytes.Buffer
	w := ipc.NewWriter(&buf, ipc.WithSchema(schema))
	if err := w.Write(rec); err != nil {
		f.Fatal(err)
	}
	w.Close()
	rec.Release()
	b.Release()
	f.Add(true, buf.Bytes())
	f.Fuzz(func(t *testing.T, arrowBody bool, body []byte) {
		decode := h.decode
		if arrowBody {
			decode = h.decodeArrow
		}
		rec, err := decode(body, "s0123456789")
		if err == nil {
			rec.Release()
		}
	})
}
