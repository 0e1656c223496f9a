package registry

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"

	"github.com/pheromone-go/pheromone/engine/app"
	"github.com/pheromone-go/pheromone/engine/codec"
)

// JSON Schema: a flat object whose properties are the columns. string
// (format date-time: timestamp; contentEncoding base64: bytes), integer,
// number, boolean, each optionally with null; nested objects and arrays
// are not columns and are refused.

type jsonSchemaDoc struct {
	Type       any                     `json:"type"`
	Properties map[string]jsonProperty `json:"properties"`
	Required   []string                `json:"required"`
}

type jsonProperty struct {
	Type            any    `json:"type"`
	Format          string `json:"format,omitempty"`
	ContentEncoding string `json:"contentEncoding,omitempty"`
}

// types lists a property's type names without null.
func (p jsonProperty) types() []string {
	switch t := p.Type.(type) {
	case string:
		return []string{t}
	case []any:
		var out []string
		for _, e := range t {
			if s, ok := e.(string); ok && s != "null" {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

func (p jsonProperty) column() (string, error) {
	ts := p.types()
	if len(ts) != 1 {
		return "", fmt.Errorf("type %v: want one of string, integer, number, boolean (and null)", p.Type)
	}
	switch ts[0] {
	case "string":
		switch {
		case p.Format == "date-time":
			return "timestamp", nil
		case p.ContentEncoding == "base64":
			return "bytes", nil
		}
		return "string", nil
	case "integer":
		return "int64", nil
	case "number":
		return "float64", nil
	case "boolean":
		return "bool", nil
	}
	return "", fmt.Errorf("type %s is not a column type (objects and arrays are not supported)", ts[0])
}

func parseJSONSchema(text string) (*jsonSchemaDoc, error) {
	var d jsonSchemaDoc
	if err := json.Unmarshal([]byte(text), &d); err != nil {
		return nil, fmt.Errorf("json schema: %w", err)
	}
	if t, _ := d.Type.(string); t != "object" || len(d.Properties) == 0 {
		return nil, fmt.Errorf("json schema: want an object with properties")
	}
	return &d, nil
}

// jsonSchemaColumns are the columns of a JSON schema, in name order (JSON
// objects have none of their own).
func jsonSchemaColumns(text string) ([]app.Column, error) {
	d, err := parseJSONSchema(text)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(d.Properties))
	for n := range d.Properties {
		names = append(names, n)
	}
	sort.Strings(names)
	cols := make([]app.Column, 0, len(names))
	for _, n := range names {
		t, err := d.Properties[n].column()
		if err != nil {
			return nil, fmt.Errorf("property %s: %w", n, err)
		}
		cols = append(cols, app.Column{Name: n, Type: t})
	}
	return cols, nil
}

// jsonBody decodes the JSON body of json_schema records.
type jsonBody struct {
	src *app.Source
	dec *codec.JSONDecoder
}

func newJSONBody(src *app.Source) (*jsonBody, error) {
	var req []string
	for _, c := range []string{src.Key, src.EventTime} {
		if c != "" {
			req = append(req, c)
		}
	}
	d, err := codec.NewJSONDecoder(src.ArrowSchema(), req...)
	if err != nil {
		return nil, err
	}
	return &jsonBody{src: src, dec: d}, nil
}

// fits reports whether records of a writer schema can fill the source's
// columns: a column the writer has must have its type; the writer's other
// properties are ignored, and columns it lacks are null.
func (j *jsonBody) fits(text string) error {
	cols, err := jsonSchemaColumns(text)
	if err != nil {
		return err
	}
	for _, c := range cols {
		i := slices.IndexFunc(j.src.Schema, func(s app.Column) bool { return s.Name == c.Name })
		if i >= 0 && j.src.Schema[i].Type != c.Type {
			return fmt.Errorf("property %s is %s in the record's schema, but the source's column is %s", c.Name, c.Type, j.src.Schema[i].Type)
		}
	}
	return nil
}
