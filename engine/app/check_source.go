package app

import (
	"fmt"
	"slices"
	"strings"

	"github.com/apache/arrow/go/v15/arrow"

	"github.com/pheromone-go/pheromone/engine/expr"
)

// checkSource checks source s at path p, fills its defaults and returns
// the schema of the objects it puts into its bucket (nil when unusable).
func (a *App) checkSource(v *validation, p string, s *Source) *arrow.Schema {
	c, kinds := v.c, v.connectors.Sources
	if s.Name == "" {
		c.add(p+".name", "must be set")
	}
	if s.Connector() {
		a.connectorSource(c, p, s, kinds)
	} else if len(s.Options) > 0 {
		c.add(p+".options", "only sources of a connector's kind take options")
	}
	if s.Topic == "" {
		c.add(p+".topic", "must be set")
	}
	if s.Bucket == "" {
		c.add(p+".bucket", "must be set")
	} else if a.Bucket(s.Bucket) == nil {
		c.add(p+".bucket", "unknown bucket %q%s", s.Bucket, suggest(s.Bucket, keys(a.bucketIdx)))
	}
	if s.Partitions == 0 {
		s.Partitions = DefaultPartitions
	} else if s.Partitions < 0 {
		c.add(p+".partitions", "must be > 0")
	}
	if s.MaxRecordBytes == 0 {
		s.MaxRecordBytes = DefaultMaxRecordBytes
	} else if s.MaxRecordBytes < 0 {
		c.add(p+".max_record_bytes", "must be > 0")
	}
	switch s.Kind {
	case "", "kafka":
		s.Kind = "kafka"
		if s.Generator != nil {
			c.add(p+".generator", "only a source of kind generator takes generator settings")
		}
	case "generator":
		if s.Generator == nil {
			c.add(p+".generator", "must be set for kind generator (profile, rate)")
		} else {
			g := s.Generator
			if g.Profile == "" {
				g.Profile = "clickstream"
			} else if g.Profile != "clickstream" {
				c.add(p+".generator.profile", "unknown profile %q (clickstream)", g.Profile)
			}
			if g.Rate <= 0 {
				c.add(p+".generator.rate", "must be > 0 records per second")
			}
			if g.Seed == 0 {
				g.Seed = 1
			}
			if g.Limit < 0 {
				c.add(p+".generator.limit", "must be >= 0")
			}
		}
		if len(s.Schema) > 0 {
			c.add(p+".schema", "a generator source has the fixed %s schema; remove schema", "clickstream")
		}
		s.Schema = ClickstreamSchema()
		if s.Format == "" {
			s.Format = "json"
		}
	}
	switch s.Format {
	case "", "json":
		s.Format = "json"
		if len(s.Schema) == 0 {
			c.add(p+".schema", "a json source needs a schema (name and type of each column)")
		}
	case "raw":
		if len(s.Schema) > 0 {
			c.add(p+".schema", "a raw source has the fixed columns key and value; remove schema")
		}
		s.Schema = []Column{{Name: "key", Type: "bytes"}, {Name: "value", Type: "bytes"}}
	default:
		a.registrySource(v, p, s)
	}
	if s.Registry != nil && s.Format != "" && (s.Format == "json" || s.Format == "raw") {
		c.add(p+".registry", "only the registry formats take registry")
	}
	if s.SessionHeader != "" {
		if s.Format != "json" {
			c.add(p+".session_header", "only json sources take session_header")
		}
		if s.SessionColumn == "" {
			s.SessionColumn = "session"
		}
		for _, col := range s.Schema {
			if col.Name == s.SessionColumn {
				c.add(p+".session_column", "%q is already a schema column; name the header's column differently", col.Name)
			}
		}
		s.Schema = append(s.Schema, Column{Name: s.SessionColumn, Type: "string"})
	} else if s.SessionColumn != "" {
		c.add(p+".session_column", "only a source with session_header takes session_column")
	}
	seen, ok := checkColumns(c, p+".schema", s.Schema)
	names := make([]string, 0, len(s.Schema))
	for _, col := range s.Schema {
		names = append(names, col.Name)
	}
	if s.Key != "" && !seen[s.Key] {
		c.add(p+".key", "unknown column %q%s", s.Key, suggest(s.Key, names))
	}
	if s.EventTime != "" {
		if !seen[s.EventTime] {
			c.add(p+".event_time", "unknown column %q%s", s.EventTime, suggest(s.EventTime, names))
		} else {
			for _, col := range s.Schema {
				if col.Name == s.EventTime && col.Type != "timestamp" && col.Type != "int64" {
					c.add(p+".event_time", "column %q has type %s; event time needs timestamp or int64", col.Name, col.Type)
				}
			}
		}
	}
	if !ok || len(s.Schema) == 0 {
		return nil
	}
	return s.ArrowSchema()
}

// registrySource checks a source of a connector's format: its registry
// section, and its columns (from schema, else from the format's schema
// file or registry subject).
func (a *App) registrySource(v *validation, p string, s *Source) {
	c := v.c
	f := v.format(s.Format)
	if f == nil {
		c.add(p+".format", "unknown format %q (%s)", s.Format, v.formats(false))
		return
	}
	v.subject(p+".registry", &s.Registry, false)
	if len(s.Schema) > 0 || f.Columns == nil {
		return
	}
	cols, err := f.Columns(a, s)
	if err != nil {
		c.add(p+".registry", "%v", err)
		return
	}
	s.Schema = cols
}

// ArrowSchema is the source's schema as Arrow (valid after Validate).
func (s *Source) ArrowSchema() *arrow.Schema {
	fields := make([]arrow.Field, len(s.Schema))
	for i, col := range s.Schema {
		t, _ := ColumnType(col.Type)
		fields[i] = arrow.Field{Name: col.Name, Type: t, Nullable: true}
	}
	return arrow.NewSchema(fields, nil)
}

// ColumnType maps a schema type name to its Arrow type.
func ColumnType(name string) (arrow.DataType, bool) {
	switch name {
	case "string":
		return arrow.BinaryTypes.String, true
	case "int64":
		return arrow.PrimitiveTypes.Int64, true
	case "float64":
		return arrow.PrimitiveTypes.Float64, true
	case "bool":
		return arrow.FixedWidthTypes.Boolean, true
	case "timestamp":
		return arrow.FixedWidthTypes.Timestamp_ms, true
	case "bytes":
		return arrow.BinaryTypes.Binary, true
	}
	return nil, false
}

// ClickstreamSchema is the schema of the clickstream generator profile.
func ClickstreamSchema() []Column {
	return []Column{
		{Name: "event_id", Type: "int64"},
		{Name: "user_id", Type: "string"},
		{Name: "page", Type: "string"},
		{Name: "action", Type: "string"},
		{Name: "duration_ms", Type: "int64"},
		{Name: "country", Type: "string"},
		{Name: "ts", Type: "timestamp"},
	}
}

// checkColumns reports empty or duplicate names and unknown types of a
// declared column list at path (…schema), and whether it is usable.
func checkColumns(c *checker, path string, cols []Column) (names map[string]bool, ok bool) {
	names, ok = map[string]bool{}, true
	for j, col := range cols {
		cp := fmt.Sprintf("%s[%d]", path, j)
		if col.Name == "" {
			c.add(cp+".name", "must be set")
			ok = false
		} else if names[col.Name] {
			c.add(cp+".name", "duplicate column %q", col.Name)
			ok = false
		}
		names[col.Name] = true
		if _, known := ColumnType(col.Type); !known {
			c.add(cp+".type", "unknown type %q (string, int64, float64, bool, timestamp, bytes)", col.Type)
			ok = false
		}
	}
	return names, ok
}

// schemaOf is the Arrow schema of a checked column list.
func schemaOf(cols []Column) *arrow.Schema {
	src := Source{Schema: cols}
	return src.ArrowSchema()
}

func kindType(k expr.Kind) arrow.DataType {
	switch k {
	case expr.Bool:
		return arrow.FixedWidthTypes.Boolean
	case expr.Int:
		return arrow.PrimitiveTypes.Int64
	case expr.Float:
		return arrow.PrimitiveTypes.Float64
	}
	return arrow.BinaryTypes.String
}

// connectorSource checks a source of a connector's kind: its options
// against the kind's, no topic of its own (its records never pass through
// Kafka: it is named <kind>.<name> in the state), one partition by default.
func (a *App) connectorSource(c *checker, p string, s *Source, kinds []SourceKind) {
	i := slices.IndexFunc(kinds, func(k SourceKind) bool { return k.Name == s.Kind })
	if i < 0 {
		known := []string{"kafka", "generator"}
		for _, k := range kinds {
			known = append(known, k.Name)
		}
		c.add(p+".kind", "unknown source kind %q (%s)", s.Kind, strings.Join(known, ", "))
	} else {
		checkOptions(c, p, s.Kind+" source", kinds[i].Options, s.Options)
	}
	if s.Topic != "" {
		c.add(p+".topic", "a %s source reads no Kafka topic; remove topic", s.Kind)
	}
	if s.Generator != nil {
		c.add(p+".generator", "only a source of kind generator takes generator settings")
	}
	s.Topic = s.Kind + "." + s.Name
	if s.Partitions == 0 {
		s.Partitions = 1
	}
}
