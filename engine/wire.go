package engine

import (
	"errors"

	"github.com/apache/arrow/go/v15/arrow"

	"github.com/pheromone-go/pheromone/engine/app"
)

// A WireFormat is a record format beyond the engine's own json and raw,
// provided by a connector: the schema-registry formats avro, protobuf and
// json_schema (connectors/registry). The engine hands it the records of a
// source and the rows of a sink; it never sees a schema registry.
type WireFormat interface {
	// NewDecoder returns the decoder of one partition task for src, whose
	// columns (src.Schema) were set by validation.
	NewDecoder(src *app.Source) (RecordDecoder, error)
	// NewEncoder returns the encoder of sink's records. It is shared by
	// the executor's goroutines and must be safe for concurrent use.
	NewEncoder(sink *app.Sink) (RecordEncoder, error)
}

// A RecordDecoder turns record payloads into rows of its source's Arrow
// schema, appended to reserved builders. A record that cannot be decoded
// leaves no partial row behind. It is used by one task goroutine.
type RecordDecoder interface {
	Reserve(n int)
	// Append decodes r into a row. Its error is a *BadRecord (the record
	// goes to the dead-letter topic with its reason), or wraps
	// ErrUnavailable: what the decoder depends on cannot be reached, and
	// the partition restarts from its last commit (with backoff) instead of
	// dead-lettering a good record.
	Append(r *Record) error
	// NewRecord returns the rows appended since the last call.
	NewRecord() arrow.Record
	Release()
}

// A RecordEncoder encodes one row of a batch as a sink record value.
type RecordEncoder interface {
	// Prepare readies the encoder for batches of schema s (a registry
	// format registers or finds its schema). Its error fails the function's
	// attempt, which is retried, then dead-lettered.
	Prepare(s *arrow.Schema) error
	// AppendRow appends the encoding of row i of rec, whose schema was
	// prepared, to dst. An error dead-letters the invocation's inputs.
	AppendRow(dst []byte, rec arrow.Record, i int) ([]byte, error)
}

// ErrUnavailable marks a failure of something outside the record (a
// schema registry that does not answer): worth retrying, not a bad record.
var ErrUnavailable = errors.New("unavailable")

// BadRecord says why a decoder refused a record: the dead letter's reason
// (ReasonDecode, ReasonSchema) and the error it carries.
type BadRecord struct {
	Reason string
	Err    error
}

func (e *BadRecord) Error() string { return e.Err.Error() }
func (e *BadRecord) Unwrap() error { return e.Err }
