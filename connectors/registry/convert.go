package registry

import (
	"context"
	"fmt"
	"os"

	"github.com/twmb/franz-go/pkg/sr"

	"github.com/pheromone-go/pheromone/engine"
	"github.com/pheromone-go/pheromone/engine/app"
	"github.com/pheromone-go/pheromone/engine/codec"
)

// Converter turns JSON objects into records of a subject's latest schema,
// the way the node's sinks write them (for `pheromone produce`).
type Converter struct {
	cols []app.Column
	dec  *codec.JSONDecoder
	enc  *encoder
}

// NewConverter converts to format on subject. A schema file, if given, is
// registered first (an identical schema keeps its id).
func NewConverter(ctx context.Context, cl *Client, format, subject, schemaFile, message string) (*Converter, error) {
	if _, ok := schemaType[format]; !ok {
		return nil, fmt.Errorf("format %q: want avro, protobuf or json_schema", format)
	}
	if schemaFile != "" {
		text, err := os.ReadFile(schemaFile)
		if err != nil {
			return nil, err
		}
		if _, err := cl.Register(ctx, subject, sr.Schema{Schema: string(text), Type: schemaType[format]}); err != nil {
			return nil, err
		}
	}
	ss, err := cl.Version(ctx, subject, 0)
	if err != nil {
		return nil, err
	}
	cols, err := columnsOf(format, ss.Schema.Schema, message)
	if err != nil {
		return nil, err
	}
	src := &app.Source{Schema: cols}
	dec, err := codec.NewJSONDecoder(src.ArrowSchema())
	if err != nil {
		return nil, err
	}
	no := false
	enc := newEncoder(cl, format, &app.Sink{Name: subject, Registry: &app.Subject{Subject: subject, Register: &no, Message: message}})
	if err := enc.Prepare(src.ArrowSchema()); err != nil {
		dec.Release()
		return nil, err
	}
	return &Converter{cols: cols, dec: dec, enc: enc}, nil
}

// NewDerivedConverter converts JSON objects of columns cols to format on
// subject, under the schema derived from the columns (registered as a sink
// registers its own): a generator source of a registry format writes
// through it.
func NewDerivedConverter(cl *Client, format, subject, name string, cols []app.Column) (*Converter, error) {
	if _, ok := schemaType[format]; !ok {
		return nil, fmt.Errorf("format %q: want avro, protobuf or json_schema", format)
	}
	src := &app.Source{Schema: cols}
	dec, err := codec.NewJSONDecoder(src.ArrowSchema())
	if err != nil {
		return nil, err
	}
	enc := newEncoder(cl, format, &app.Sink{Name: name, Registry: &app.Subject{Subject: subject}})
	if err := enc.Prepare(src.ArrowSchema()); err != nil {
		dec.Release()
		return nil, err
	}
	return &Converter{cols: cols, dec: dec, enc: enc}, nil
}

// Convert encodes JSON objects (one per element) as wire-format records.
func (c *Converter) Convert(objs [][]byte) ([][]byte, error) {
	for i, o := range objs {
		if err := c.dec.Append(o); err != nil {
			c.dec.NewRecord().Release()
			return nil, fmt.Errorf("object %d: %w", i+1, err)
		}
	}
	rec := c.dec.NewRecord()
	defer rec.Release()
	out := make([][]byte, rec.NumRows())
	for i := range out {
		v, err := c.enc.AppendRow(nil, rec, i)
		if err != nil {
			return nil, fmt.Errorf("object %d: %w", i+1, err)
		}
		out[i] = v
	}
	return out, nil
}

// Close releases the converter's builders.
func (c *Converter) Close() { c.dec.Release() }

// Reader decodes wire-format records into JSON objects with the columns of
// a subject's latest schema (for `pheromone consume`).
type Reader struct {
	dec engine.RecordDecoder
	enc codec.JSONEncoder
}

// NewReader reads format records as the columns of subject's latest schema.
func NewReader(ctx context.Context, cl *Client, format, subject, message string) (*Reader, error) {
	ss, err := cl.Version(ctx, subject, 0)
	if err != nil {
		return nil, err
	}
	cols, err := columnsOf(format, ss.Schema.Schema, message)
	if err != nil {
		return nil, err
	}
	d, err := New(cl).Wire()[format].NewDecoder(&app.Source{Name: subject, Format: format, Schema: cols, Registry: &app.Subject{Message: message}})
	if err != nil {
		return nil, err
	}
	return &Reader{dec: d}, nil
}

// Read appends the JSON object of one record to dst.
func (r *Reader) Read(dst, value []byte) ([]byte, error) {
	if err := r.dec.Append(&engine.Record{Value: value}); err != nil {
		r.dec.NewRecord().Release()
		return dst, err
	}
	rec := r.dec.NewRecord()
	defer rec.Release()
	return r.enc.AppendRow(dst, rec, 0), nil
}

// Close releases the reader's builders.
func (r *Reader) Close() { r.dec.Release() }
