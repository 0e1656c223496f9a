package app

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"
)

// positionsOf records the position of every key and list item under n.
func positionsOf(n *yaml.Node, path string, m map[string]Position) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			positionsOf(c, path, m)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := k.Value
			if path != "" {
				p = path + "." + k.Value
			}
			m[p] = Position{k.Line, k.Column}
			positionsOf(v, p, m)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			m[p] = Position{c.Line, c.Column}
			positionsOf(c, p, m)
		}
	}
}

// Load reads, parses and validates the app file at path.
func Load(path string) (*App, error) { return LoadWith(path, Connectors{}) }

// LoadWith is Load for a binary that wires connectors' source and sink
// kinds.
func LoadWith(path string, kinds Connectors) (*App, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("app: %w", err)
	}
	a, err := Parse(raw)
	if err != nil {
		return nil, err
	}
	if err := a.ValidateWith(kinds); err != nil {
		return nil, err
	}
	return a, nil
}

// Parse decodes an app file without validating it. Unknown fields are errors.
func Parse(raw []byte) (*App, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(raw, &root); err != nil {
		return nil, Problems{{Msg: "not a valid app file: " + strings.TrimPrefix(err.Error(), "yaml: ")}}
	}
	if root.Kind == 0 || (root.Kind == yaml.DocumentNode && len(root.Content) == 0) {
		return nil, Problems{{Msg: "the file is empty: an app file needs at least app, sources, buckets, triggers and functions (see docs/app-format.md)"}}
	}
	// Every unknown key, with its path and line, and every type error at
	// once (yaml's KnownFields stops at the first unknown key).
	var ps Problems
	unknownKeys(&root, reflect.TypeOf(App{}), "", &ps)
	var a App
	if err := root.Decode(&a); err != nil {
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			return nil, append(ps, Problem{Msg: "not a valid app file: " + strings.TrimPrefix(err.Error(), "yaml: ")})
		}
		for _, e := range te.Errors {
			ps = append(ps, Problem{Msg: strings.TrimPrefix(e, "yaml: ")})
		}
	}
	if len(ps) > 0 {
		return nil, ps
	}
	a.positions = map[string]Position{}
	positionsOf(&root, "", a.positions)
	return &a, nil
}

// unknownKeys adds a problem for every mapping key of n that t (the Go type
// the node decodes into) has no yaml field for, recursively.
func unknownKeys(n *yaml.Node, t reflect.Type, path string, ps *Problems) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			unknownKeys(c, t, path, ps)
		}
	case yaml.MappingNode:
		switch t.Kind() {
		case reflect.Struct:
			fields := map[string]reflect.Type{}
			var names []string
			for i := 0; i < t.NumField(); i++ {
				f := t.Field(i)
				name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
				if name == "" || name == "-" || !f.IsExported() {
					continue
				}
				fields[name] = f.Type
				names = append(names, name)
			}
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				p := k.Value
				if path != "" {
					p = path + "." + k.Value
				}
				ft, ok := fields[k.Value]
				if !ok {
					*ps = append(*ps, Problem{Path: p, Msg: "unknown key" + suggest(k.Value, names), At: Position{k.Line, k.Column}})
					continue
				}
				unknownKeys(v, ft, p, ps)
			}
		case reflect.Map:
			for i := 0; i+1 < len(n.Content); i += 2 {
				unknownKeys(n.Content[i+1], t.Elem(), path+"."+n.Content[i].Value, ps)
			}
		}
	case yaml.SequenceNode:
		if t.Kind() == reflect.Slice || t.Kind() == reflect.Array {
			for i, c := range n.Content {
				unknownKeys(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i), ps)
			}
		}
	}
}
