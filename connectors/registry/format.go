package registry

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/memory"
	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/sr"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/pheromone-go/pheromone/engine"
	"github.com/pheromone-go/pheromone/engine/app"
	"github.com/pheromone-go/pheromone/engine/codec"
)

// The registry formats.
const (
	Avro       = "avro"
	Protobuf   = "protobuf"
	JSONSchema = "json_schema"
)

// schemaType is the registry's name of a format's schemas.
var schemaType = map[string]sr.SchemaType{Avro: sr.TypeAvro, Protobuf: sr.TypeProtobuf, JSONSchema: sr.TypeJSON}

// Kinds declares the registry formats for validation. client returns the
// registry an app uses, or an error saying why there is none (the
// embedded registry exists only once `pheromone run` starts): then a
// source's columns come from its schema_file or its schema.
func Kinds(client func(a *app.App) (*Client, error)) []app.FormatKind {
	var out []app.FormatKind
	for _, name := range []string{Avro, Protobuf, JSONSchema} {
		out = append(out, app.FormatKind{Name: name, Sinks: true, Doc: "Confluent wire format, schema from the registry",
			Columns: func(a *app.App, s *app.Source) ([]app.Column, error) {
				text, err := sourceSchema(a, s, client)
				if err != nil {
					return nil, err
				}
				return columnsOf(name, text, s.Registry.Message)
			}})
	}
	return out
}

// sourceSchema is the text of a source's schema: its schema file, else its
// subject's version in the registry.
func sourceSchema(a *app.App, s *app.Source, client func(*app.App) (*Client, error)) (string, error) {
	if f := s.Registry.SchemaFile; f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", fmt.Errorf("schema_file: %w", err)
		}
		return string(b), nil
	}
	cl, err := client(a)
	if err != nil {
		return "", fmt.Errorf("its columns come from the registry: %v; or give registry.schema_file or the source's schema", err)
	}
	ss, err := cl.Version(context.Background(), s.Registry.Name(s.Topic), s.Registry.Version)
	if err != nil {
		return "", err
	}
	if ss.Type != schemaType[s.Format] {
		return "", fmt.Errorf("subject %q holds a %s schema, not %s", s.Registry.Name(s.Topic), ss.Type, s.Format)
	}
	return ss.Schema.Schema, nil
}

// columnsOf are the columns of a schema text of format.
func columnsOf(format, text, message string) ([]app.Column, error) {
	switch format {
	case Avro:
		s, err := parseAvro(text)
		if err != nil {
			return nil, fmt.Errorf("avro schema: %w", err)
		}
		return avroColumns(s)
	case JSONSchema:
		return jsonSchemaColumns(text)
	case Protobuf:
		return protoColumns(text, message)
	}
	return nil, fmt.Errorf("format %s: no schema parser", format)
}

// Formats are the registry formats of a running node, on one registry.
type Formats struct{ cl *Client }

// New serves the registry formats from cl.
func New(cl *Client) *Formats { return &Formats{cl: cl} }

// Wire are the formats for engine.Options.Formats.
func (f *Formats) Wire() map[string]engine.WireFormat {
	return map[string]engine.WireFormat{Avro: wire{f, Avro}, Protobuf: wire{f, Protobuf}, JSONSchema: wire{f, JSONSchema}}
}

// RegisterSchemaFiles registers each registry source's schema file under
// its subject when the subject has no version yet (as a producer would), so
// the records a test or an example writes find their schema.
func (f *Formats) RegisterSchemaFiles(ctx context.Context, a *app.App) error {
	for _, s := range a.Sources {
		if s.Registry == nil || s.Registry.SchemaFile == "" {
			continue
		}
		subject := s.Registry.Name(s.Topic)
		_, err := f.cl.Version(ctx, subject, 0)
		if err == nil {
			continue
		}
		if !errors.Is(err, ErrNotFound) {
			return err
		}
		text, err := os.ReadFile(s.Registry.SchemaFile)
		if err != nil {
			return err
		}
		if _, err := f.cl.Register(ctx, subject, sr.Schema{Schema: string(text), Type: schemaType[s.Format]}); err != nil {
			return fmt.Errorf("registering %s under %q: %w", filepath.Base(s.Registry.SchemaFile), subject, err)
		}
	}
	return nil
}

type wire struct {
	f      *Formats
	format string
}

func (w wire) NewDecoder(src *app.Source) (engine.RecordDecoder, error) {
	d := &decoder{cl: w.f.cl, format: w.format, src: src, cols: map[string]int{}, progs: map[int]*prog{}, protoPlans: map[string]*protoPlan{}}
	for i, c := range src.Schema {
		d.cols[c.Name] = i
		d.types = append(d.types, c.Type)
	}
	for _, name := range []string{src.Key, src.EventTime} {
		if name != "" {
			d.required = append(d.required, d.cols[name])
		}
	}
	d.rd.vals = make([]value, len(src.Schema))
	d.dataPerRow = make([]float64, len(src.Schema))
	d.bld = array.NewRecordBuilder(memory.DefaultAllocator, src.ArrowSchema())
	if w.format == JSONSchema {
		var err error
		if d.json, err = newJSONBody(src); err != nil {
			d.bld.Release()
			return nil, err
		}
	}
	return d, nil
}

func (w wire) NewEncoder(sink *app.Sink) (engine.RecordEncoder, error) {
	return newEncoder(w.f.cl, w.format, sink), nil
}

// prog is how records of one schema id decode (or why they cannot).
type prog struct {
	ops   []op                        // avro
	proto protoreflect.FileDescriptor // protobuf
	bad   *engine.BadRecord
}

// decoder decodes one source's records for one partition task.
type decoder struct {
	cl       *Client
	format   string
	src      *app.Source
	cols     map[string]int
	types    []string
	required []int
	bld      *array.RecordBuilder
	rd       avroReader
	progs    map[int]*prog
	json     *jsonBody
	// protoPlans decode protobuf records, by schema id and message index.
	protoPlans map[string]*protoPlan
	// dataPerRow is how many string or binary bytes each column held per
	// row in the last batch, to reserve the next one's.
	dataPerRow []float64
}

func bad(reason, format string, args ...any) *engine.BadRecord {
	return &engine.BadRecord{Reason: reason, Err: fmt.Errorf(format, args...)}
}

// header splits a Confluent wire-format record into its schema id and body.
func header(b []byte) (int, []byte, error) {
	if len(b) < 5 {
		return 0, nil, bad(engine.ReasonDecode, "not in the Confluent wire format: %d bytes, fewer than its 5-byte header", len(b))
	}
	if b[0] != 0 {
		return 0, nil, bad(engine.ReasonDecode, "not in the Confluent wire format: magic byte %d (want 0)", b[0])
	}
	return int(binary.BigEndian.Uint32(b[1:5])), b[5:], nil
}

func (d *decoder) Reserve(n int) {
	if d.json != nil {
		d.json.dec.Reserve(n)
		return
	}
	// String and binary bytes too, as many per row as the last batch had.
	codec.ReserveRows(d.bld, d.dataPerRow, n)
}

func (d *decoder) Append(r *engine.Record) error {
	id, body, err := header(r.Value)
	if err != nil {
		return err
	}
	p, err := d.prog(id)
	if err != nil {
		return err
	}
	if p.bad != nil {
		return p.bad
	}
	if d.json != nil {
		if err := d.json.dec.Append(body); err != nil {
			return &engine.BadRecord{Reason: engine.ReasonDecode, Err: fmt.Errorf("%w (schema id %d)", err, id)}
		}
		return nil
	}
	rd := &d.rd
	if p.proto != nil {
		if err := d.decodeProto(id, p.proto, body); err != nil {
			return err
		}
	} else {
		clear(rd.vals)
		rd.scratch = rd.scratch[:0]
		if rd.r == nil {
			rd.r = avro.NewReader(nil, 0)
		}
		rd.r.Reset(body)
		rd.r.Error = nil
		for i := range p.ops {
			rd.run(&p.ops[i])
		}
		if err := rd.r.Error; err != nil {
			return bad(engine.ReasonDecode, "the record does not match its schema (id %d): %v", id, err)
		}
	}
	for _, c := range d.required {
		if v := rd.vals[c]; !v.set || v.null {
			return bad(engine.ReasonDecode, "column %q is missing or null (schema id %d)", d.src.Schema[c].Name, id)
		}
	}
	d.commit()
	return nil
}

// prog compiles (once) how records of schema id decode into the columns.
func (d *decoder) prog(id int) (*prog, error) {
	if p := d.progs[id]; p != nil {
		return p, nil
	}
	s, err := d.cl.SchemaByID(context.Background(), id)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			p := &prog{bad: bad(engine.ReasonSchema, "schema id %d is not in the registry", id)}
			d.progs[id] = p
			return p, nil
		}
		return nil, err
	}
	p := &prog{}
	switch {
	case s.Type != schemaType[d.format]:
		p.bad = bad(engine.ReasonSchema, "schema id %d is a %s schema; the source reads %s", id, s.Type, d.format)
	case d.format == Avro:
		w, err := parseAvro(s.Schema)
		if err == nil {
			p.ops, err = compileAvro(w, d.cols, d.types)
		}
		if err != nil {
			p.bad = bad(engine.ReasonSchema, "schema id %d does not fit the source's columns: %v", id, err)
		}
	case d.format == Protobuf:
		fd, err := compileProto(s.Schema)
		if err != nil {
			p.bad = bad(engine.ReasonSchema, "schema id %d: %v", id, err)
		}
		p.proto = fd
	case d.format == JSONSchema:
		if err := d.json.fits(s.Schema); err != nil {
			p.bad = bad(engine.ReasonSchema, "schema id %d does not fit the source's columns: %v", id, err)
		}
	}
	d.progs[id] = p
	return p, nil
}

// commit appends the decoded values as one row.
func (d *decoder) commit() {
	vals, scratch := d.rd.vals, d.rd.scratch
	for i, t := range d.types {
		b := d.bld.Field(i)
		v := vals[i]
		if !v.set || v.null {
			b.AppendNull()
			continue
		}
		switch t {
		case "string":
			b.(*array.StringBuilder).BinaryBuilder.Append(scratch[v.start:v.end])
		case "bytes":
			b.(*array.BinaryBuilder).Append(scratch[v.start:v.end])
		case "int64":
			b.(*array.Int64Builder).Append(v.i)
		case "timestamp":
			b.(*array.TimestampBuilder).Append(arrow.Timestamp(v.i))
		case "float64":
			b.(*array.Float64Builder).Append(v.f)
		case "bool":
			b.(*array.BooleanBuilder).Append(v.b)
		}
	}
}

func (d *decoder) NewRecord() arrow.Record {
	if d.json != nil {
		return d.json.dec.NewRecord()
	}
	rec := d.bld.NewRecord()
	codec.MeasureRows(rec, d.dataPerRow)
	return rec
}

func (d *decoder) Release() {
	d.bld.Release()
	if d.json != nil {
		d.json.dec.Release()
	}
}

// subjectOf is a sink's subject.
func subjectOf(s *app.Sink) string { return s.Registry.Name(s.Topic) }
