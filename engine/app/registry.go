package app

import (
	"slices"
	"strings"
)

// SchemaRegistry is where the registry formats (avro, protobuf,
// json_schema) find and register schemas: a Confluent-compatible schema
// registry. Secrets are never in the app file.
type SchemaRegistry struct {
	// URL of the registry; default: the registry `pheromone run` serves
	// beside its embedded broker.
	URL string `yaml:"url"`
	// Username and the environment variable holding the password, for
	// HTTP basic authentication.
	Username    string `yaml:"username"`
	PasswordEnv string `yaml:"password_env"`
	TLS         *TLS   `yaml:"tls"`
}

// Subject says which registry subject a source reads or a sink writes,
// and where its schema comes from.
type Subject struct {
	// Subject is the subject's name; default by Strategy.
	Subject string `yaml:"subject"`
	// Strategy names the subject: topic_name (<topic>-value, default),
	// record_name (<record>) or topic_record_name (<topic>-<record>).
	Strategy string `yaml:"strategy"`
	// Record is the fully qualified record (or message) name, for the
	// record strategies.
	Record string `yaml:"record"`
	// Version is a source's reader version; 0: the latest.
	Version int `yaml:"version"`
	// SchemaFile holds the schema (.avsc, .proto, .json): a source's
	// columns come from it, and it is registered under the subject when the
	// subject has no version yet. Default: the subject's schema in the
	// registry.
	SchemaFile string `yaml:"schema_file"`
	// Message is the Protobuf message a source decodes (default the first
	// of the schema).
	Message string `yaml:"message"`
	// Register (sinks): register the schema derived from the function's
	// output (default true); false: use the subject's latest schema, which
	// must have the output's columns.
	Register *bool `yaml:"register"`
}

// Subject strategies.
const (
	TopicName       = "topic_name"
	RecordName      = "record_name"
	TopicRecordName = "topic_record_name"
)

// Name is the subject of topic's values.
func (s *Subject) Name(topic string) string {
	switch {
	case s.Subject != "":
		return s.Subject
	case s.Strategy == RecordName:
		return s.Record
	case s.Strategy == TopicRecordName:
		return topic + "-" + s.Record
	}
	return topic + "-value"
}

// Registers reports whether a sink registers its schema.
func (s *Subject) Registers() bool { return s.Register == nil || *s.Register }

// FormatKind declares a record format a connector provides beyond json and
// raw (the registry formats), for sources, sinks or both.
type FormatKind struct {
	Name string
	Doc  string
	// Columns are the columns of a source of this format, from its schema
	// file or its registry subject; called when the source names none.
	Columns func(a *App, s *Source) ([]Column, error)
	// Sinks reports whether sinks may use the format.
	Sinks bool
}

// format is the connector's format named name, or nil.
func (v *validation) format(name string) *FormatKind {
	i := slices.IndexFunc(v.connectors.Formats, func(f FormatKind) bool { return f.Name == name })
	if i < 0 {
		return nil
	}
	return &v.connectors.Formats[i]
}

// formats lists the formats a source (or sink) may have.
func (v *validation) formats(sink bool) string {
	known := []string{"json"}
	if !sink {
		known = append(known, "raw")
	}
	for _, f := range v.connectors.Formats {
		if !sink || f.Sinks {
			known = append(known, f.Name)
		}
	}
	return strings.Join(known, ", ")
}

// subject checks a source's or sink's registry section at p, filling its
// defaults.
func (v *validation) subject(p string, s **Subject, sink bool) {
	if *s == nil {
		*s = &Subject{}
	}
	r, c := *s, v.c
	switch r.Strategy {
	case "":
		r.Strategy = TopicName
	case TopicName:
	case RecordName, TopicRecordName:
		if r.Record == "" && r.Subject == "" {
			c.add(p+".record", "must be set for strategy %s (the fully qualified record name)", r.Strategy)
		}
	default:
		c.add(p+".strategy", "%q: want topic_name, record_name or topic_record_name", r.Strategy)
	}
	if r.Version < 0 {
		c.add(p+".version", "must be >= 1 (0: the latest)")
	}
	if sink && r.Version != 0 {
		c.add(p+".version", "only sources take a version; a sink registers its schema or uses the latest")
	}
	if !sink && r.Register != nil {
		c.add(p+".register", "only sinks register schemas")
	}
}

// schemaRegistry checks the top-level schema_registry section.
func (v *validation) schemaRegistry() {
	r := v.a.SchemaRegistry
	if r == nil {
		return
	}
	if r.URL != "" && !strings.HasPrefix(r.URL, "http://") && !strings.HasPrefix(r.URL, "https://") {
		v.c.add("schema_registry.url", "%q: want http:// or https://", r.URL)
	}
	if (r.Username == "") != (r.PasswordEnv == "") {
		v.c.add("schema_registry", "username and password_env go together (basic authentication)")
	}
	if t := r.TLS; t != nil && (t.CertFile == "") != (t.KeyFile == "") {
		v.c.add("schema_registry.tls", "cert_file and key_file go together (the client's certificate and its key)")
	}
}

// UsesRegistry reports whether a source or sink of the app has a registry
// format (valid after Validate).
func (a *App) UsesRegistry() bool {
	for _, s := range a.Sources {
		if s.Registry != nil {
			return true
		}
	}
	for _, s := range a.Sinks {
		if s.Registry != nil {
			return true
		}
	}
	for _, t := range a.Tables {
		if t.Registry != nil {
			return true
		}
	}
	return false
}

// tableFormat checks a table's format and registry section; a table of a
// registry format without a schema takes its columns from it.
func (v *validation) tableFormat(p string, tb *Table) {
	c := v.c
	switch f := v.format(tb.Format); {
	case tb.Format == "" || tb.Format == "json":
		tb.Format = "json"
		if tb.Registry != nil {
			c.add(p+".registry", "only the registry formats take registry")
		}
	case f == nil:
		c.add(p+".format", "unknown table format %q (%s)", tb.Format, v.formats(true))
	case tb.File != "":
		c.add(p+".format", "a table file holds JSON lines; only a topic's rows take format %s", tb.Format)
	default:
		v.subject(p+".registry", &tb.Registry, false)
		if len(tb.Schema) > 0 || f.Columns == nil {
			return
		}
		cols, err := f.Columns(v.a, tb.Source())
		if err != nil {
			c.add(p+".registry", "%v", err)
			return
		}
		tb.Schema = cols
	}
}

// Source is the table's topic as a source, for the formats' decoders.
func (t *Table) Source() *Source {
	return &Source{Name: t.Name, Topic: t.Topic, Format: t.Format, Registry: t.Registry, Schema: t.Schema, Key: t.Key,
		MaxRecordBytes: DefaultMaxRecordBytes}
}
