package app

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/apache/arrow/go/v15/arrow"

	"github.com/pheromone-go/pheromone/engine/expr"
)

// schemas derives the functions' input and output schemas in dependency
// order, so a bucket fed by a function knows its schema before the
// triggers on it are checked.
func (v *validation) schemas() {
	a, c := v.a, v.c
	// Functions: derive schemas in dependency order, so a bucket fed by a
	// function knows its schema before the triggers on it are checked.
	checked := make([]bool, len(a.Functions))
	lateDone := make([]bool, len(a.Triggers))
	for progress := true; progress; {
		progress = false
		// A late bucket receives the objects of its trigger's bucket.
		for i, t := range a.Triggers {
			if lateDone[i] || t.LateBucket == "" || a.Bucket(t.LateBucket) == nil {
				continue
			}
			if s := v.bucketSchema[t.Bucket]; s != nil {
				v.setSchema(fmt.Sprintf("triggers[%d].late_bucket", i), t.LateBucket, s, "trigger "+t.Name+" (late objects)")
				lateDone[i], progress = true, true
			}
		}
		for i := range a.Functions {
			f := &a.Functions[i]
			if checked[i] {
				continue
			}
			in, ok := a.inputSchema(c, i, v.firedBy[f.Name], v.bucketSchema)
			if !ok {
				continue
			}
			checked[i], progress = true, true
			f.inSchema = in
			if in == nil {
				continue
			}
			windowed := false
			for _, ti := range v.firedBy[f.Name] {
				windowed = windowed || a.Triggers[ti].Primitive == "by_time"
			}
			f.outSchema = a.checkFunction(c, fmt.Sprintf("functions[%d]", i), f, in, windowed)
			if f.outSchema == nil {
				continue
			}
			for j, o := range f.Outputs {
				if a.Bucket(o) != nil {
					v.setSchema(fmt.Sprintf("functions[%d].outputs[%d]", i, j), o, f.outSchema, "function "+f.Name)
				}
			}
		}
	}
}

// functionSettings checks what every function declares beyond its schema:
// being fired, outputs, retries, order, timeout.
func (v *validation) functionSettings() {
	a, c := v.a, v.c
	for i := range a.Functions {
		f := &a.Functions[i]
		p := fmt.Sprintf("functions[%d]", i)
		if len(v.firedBy[f.Name]) == 0 && f.Name != "" {
			c.add(p, "function %q is never fired: no trigger names it", f.Name)
		}
		if len(f.Outputs) == 0 {
			c.add(p+".outputs", "must name at least one bucket or sink")
		}
		for j, o := range f.Outputs {
			if a.Bucket(o) == nil && a.Sink(o) == nil {
				c.add(fmt.Sprintf("%s.outputs[%d]", p, j), "unknown bucket or sink %q%s", o,
					suggest(o, append(keys(a.bucketIdx), keys(a.sinkIdx)...)))
			}
			if s := a.Sink(o); s != nil && s.Key != "" && f.outSchema != nil && !hasColumn(f.outSchema, s.Key) {
				c.add(fmt.Sprintf("%s.outputs[%d]", p, j), "sink %q is keyed by column %q, which function %q does not output", o, s.Key, f.Name)
			}
		}
		checkKinds(c, "functions[]", p, f.Kind, f)
		if f.Retries == 0 {
			f.Retries = DefaultRetries
		} else if f.Retries < 0 {
			c.add(p+".retries", "must be >= 0")
		}
		switch f.Order {
		case "", "firing":
			f.Order = "firing"
		case "completion":
		default:
			c.add(p+".order", "%q: want firing or completion", f.Order)
		}
		if f.Timeout == "" {
			f.timeout = DefaultTimeout
		} else if d, err := time.ParseDuration(f.Timeout); err != nil || d <= 0 {
			c.add(p+".timeout", "%q is not a positive duration (try 500ms, 30s)", f.Timeout)
		} else {
			f.timeout = d
		}
	}
}

// inputSchema returns the schema function i receives; ok is false while a
// bucket it reads has no schema yet.
func (a *App) inputSchema(c *checker, i int, triggers []int, bucketSchema map[string]*arrow.Schema) (*arrow.Schema, bool) {
	var in *arrow.Schema
	for _, ti := range triggers {
		s, ok := bucketSchema[a.Triggers[ti].Bucket]
		if !ok {
			return nil, false
		}
		if in != nil && !in.Equal(s) {
			c.add(fmt.Sprintf("triggers[%d].bucket", ti), "function %q is also fired from a bucket with another schema (%s vs %s)",
				a.Functions[i].Name, describe(s), describe(in))
			return nil, true
		}
		in = s
	}
	return in, true
}

func (a *App) checkFunction(c *checker, p string, f *Function, in *arrow.Schema, windowed bool) *arrow.Schema {
	switch f.Kind {
	case "filter":
		return a.checkFilter(c, p, f, in)
	case "emit":
		return in
	case "lookup":
		return a.checkLookup(c, p, f, in)
	case "route":
		return a.checkRoute(c, p, f, in)
	case "sort":
		return a.checkSort(c, p, f, in)
	case "go":
		return a.checkGoFunction(c, p, f, in)
	case "split":
		return a.checkSplit(c, p, f, in)
	case "project":
		return a.checkProject(c, p, f, in)
	case "aggregate":
		return a.checkAggregate(c, p, f, in, windowed)
	case "":
		c.add(p+".kind", "must be set (filter, project, aggregate, split, route, lookup, sort, emit, go)")
	default:
		c.add(p+".kind", "unknown function kind %q (filter, project, aggregate, split, route, lookup, sort, emit, go)", f.Kind)
	}
	return nil
}

// checkFilter checks a filter: a boolean expression over its input.
func (a *App) checkFilter(c *checker, p string, f *Function, in *arrow.Schema) *arrow.Schema {
	if f.Expr == "" {
		c.add(p+".expr", "a filter needs a boolean expression")
		return nil
	}
	e, err := expr.Compile(f.Expr, in)
	if err != nil {
		c.add(p+".expr", "%v", strings.TrimPrefix(err.Error(), "expr: "))
		return nil
	}
	if e.Kind() != expr.Bool {
		c.add(p+".expr", "is %s; a filter needs a bool", e.Kind())
		return nil
	}
	return in
}

// checkLookup checks a lookup and returns its input with the table columns it adds.
func (a *App) checkLookup(c *checker, p string, f *Function, in *arrow.Schema) *arrow.Schema {
	tb := a.Table(f.Table)
	if tb == nil {
		c.add(p+".table", "unknown table %q", f.Table)
		return nil
	}
	idx := in.FieldIndices(f.On)
	if len(idx) == 0 {
		c.add(p+".on", "unknown column %q%s", f.On, suggest(f.On, columnNames(in)))
		return nil
	}
	if id := in.Field(idx[0]).Type.ID(); id != arrow.STRING && id != arrow.INT64 {
		c.add(p+".on", "column %q must be a string or int64", f.On)
		return nil
	}
	ts := tb.ArrowSchema()
	cols := f.TableColumns
	if len(cols) == 0 {
		for _, col := range tb.Schema {
			if col.Name != tb.Key {
				cols = append(cols, col.Name)
			}
		}
		f.TableColumns = cols
	}
	fields := slices.Clone(in.Fields())
	for j, name := range cols {
		ti := ts.FieldIndices(name)
		if len(ti) == 0 {
			c.add(fmt.Sprintf("%s.table_columns[%d]", p, j), "table %q has no column %q", tb.Name, name)
			return nil
		}
		if hasColumn(in, name) {
			c.add(fmt.Sprintf("%s.table_columns[%d]", p, j), "the input already has a column %q", name)
			return nil
		}
		fields = append(fields, arrow.Field{Name: name, Type: ts.Field(ti[0]).Type, Nullable: true})
	}
	return arrow.NewSchema(fields, nil)
}

// checkRoute checks a route: the column it routes by and the outputs it routes to.
// checkSort checks a sort: its rows ordered by one column (by).
func (a *App) checkSort(c *checker, p string, f *Function, in *arrow.Schema) *arrow.Schema {
	if f.By == "" {
		c.add(p+".by", "a sort needs by: the column its rows are ordered by")
		return nil
	}
	idx := in.FieldIndices(f.By)
	if len(idx) == 0 {
		c.add(p+".by", "unknown column %q%s", f.By, suggest(f.By, columnNames(in)))
		return nil
	}
	switch in.Field(idx[0]).Type.ID() {
	case arrow.STRING, arrow.BINARY, arrow.INT64, arrow.FLOAT64, arrow.TIMESTAMP:
		return in
	}
	c.add(p+".by", "column %q is %s: sort takes string, bytes, int64, float64 and timestamp columns", f.By, in.Field(idx[0]).Type)
	return nil
}

func (a *App) checkRoute(c *checker, p string, f *Function, in *arrow.Schema) *arrow.Schema {
	switch {
	case f.By == "" && len(f.Routes) == 0:
		c.add(p, "a route needs by (a column naming the output) or routes (when/to)")
		return nil
	case f.By != "" && len(f.Routes) > 0:
		c.add(p, "a route takes by or routes, not both")
		return nil
	}
	if f.By != "" {
		idx := in.FieldIndices(f.By)
		if len(idx) == 0 {
			c.add(p+".by", "unknown column %q%s", f.By, suggest(f.By, columnNames(in)))
			return nil
		}
		if in.Field(idx[0]).Type.ID() != arrow.STRING {
			c.add(p+".by", "column %q must be a string (the output name)", f.By)
			return nil
		}
	}
	ok := true
	for j, r := range f.Routes {
		rp := fmt.Sprintf("%s.routes[%d]", p, j)
		if e, err := expr.Compile(r.When, in); err != nil {
			c.add(rp+".when", "%v", strings.TrimPrefix(err.Error(), "expr: "))
			ok = false
		} else if e.Kind() != expr.Bool {
			c.add(rp+".when", "is %s; a route condition needs a bool", e.Kind())
			ok = false
		}
		if !slices.Contains(f.Outputs, r.To) {
			c.add(rp+".to", "%q is not one of the function's outputs", r.To)
			ok = false
		}
	}
	if f.Default != "" && !slices.Contains(f.Outputs, f.Default) {
		c.add(p+".default", "%q is not one of the function's outputs", f.Default)
		ok = false
	}
	if !ok {
		return nil
	}
	return in
}

// checkGoFunction checks the schema a Go function declares it emits.
func (a *App) checkGoFunction(c *checker, p string, f *Function, in *arrow.Schema) *arrow.Schema {
	if len(f.Schema) == 0 {
		c.add(p+".schema", "a go function must declare the columns it emits (name and type of each)")
		return nil
	}
	if _, ok := checkColumns(c, p+".schema", f.Schema); !ok {
		return nil
	}
	return schemaOf(f.Schema)
}

// checkSplit checks a split and returns its input with the part column.
func (a *App) checkSplit(c *checker, p string, f *Function, in *arrow.Schema) *arrow.Schema {
	if f.Column == "" {
		c.add(p+".column", "a split needs the string column to split")
		return nil
	}
	idx := in.FieldIndices(f.Column)
	if len(idx) == 0 {
		c.add(p+".column", "unknown column %q%s", f.Column, suggest(f.Column, columnNames(in)))
		return nil
	}
	if in.Field(idx[0]).Type.ID() != arrow.STRING {
		c.add(p+".column", "column %q is %s; split needs a string column", f.Column, in.Field(idx[0]).Type)
		return nil
	}
	as := f.As
	if as == "" {
		as = f.Column
	}
	var fields []arrow.Field
	for _, fl := range in.Fields() {
		if fl.Name != f.Column && fl.Name != as {
			fields = append(fields, fl)
		}
	}
	return arrow.NewSchema(append(fields, arrow.Field{Name: as, Type: arrow.BinaryTypes.String, Nullable: true}), nil)
}

// checkProject checks a projection and returns the columns it makes.
func (a *App) checkProject(c *checker, p string, f *Function, in *arrow.Schema) *arrow.Schema {
	if len(f.Columns) == 0 {
		c.add(p+".columns", "a project needs at least one column")
		return nil
	}
	var fields []arrow.Field
	seen := map[string]bool{}
	ok := true
	for j, pc := range f.Columns {
		cp := fmt.Sprintf("%s.columns[%d]", p, j)
		if pc.Name == "" {
			c.add(cp+".name", "must be set")
			ok = false
			continue
		}
		if seen[pc.Name] {
			c.add(cp+".name", "duplicate output column %q", pc.Name)
			ok = false
		}
		seen[pc.Name] = true
		switch {
		case pc.From != "" && pc.Expr != "":
			c.add(cp, "set from or expr, not both")
			ok = false
		case pc.Expr != "":
			e, err := expr.Compile(pc.Expr, in)
			if err != nil {
				c.add(cp+".expr", "%v", strings.TrimPrefix(err.Error(), "expr: "))
				ok = false
				continue
			}
			fields = append(fields, arrow.Field{Name: pc.Name, Type: kindType(e.Kind()), Nullable: true})
		default:
			src := pc.From
			if src == "" {
				src = pc.Name
			}
			idx := in.FieldIndices(src)
			if len(idx) == 0 {
				field := ".name"
				if pc.From != "" {
					field = ".from"
				}
				c.add(cp+field, "unknown column %q%s", src, suggest(src, columnNames(in)))
				ok = false
				continue
			}
			fields = append(fields, arrow.Field{Name: pc.Name, Type: in.Field(idx[0]).Type, Nullable: true})
		}
	}
	if !ok {
		return nil
	}
	return arrow.NewSchema(fields, nil)
}

// checkAggregate checks an aggregate and returns its group, window and
// aggregate columns.
func (a *App) checkAggregate(c *checker, p string, f *Function, in *arrow.Schema, windowed bool) *arrow.Schema {
	if len(f.Aggregates) == 0 {
		c.add(p+".aggregates", "an aggregate needs at least one aggregate column")
		return nil
	}
	var fields []arrow.Field
	seen := map[string]bool{}
	ok := true
	for j, g := range f.GroupBy {
		idx := in.FieldIndices(g)
		if len(idx) == 0 {
			c.add(fmt.Sprintf("%s.group_by[%d]", p, j), "unknown column %q%s", g, suggest(g, columnNames(in)))
			ok = false
			continue
		}
		seen[g] = true
		fields = append(fields, arrow.Field{Name: g, Type: in.Field(idx[0]).Type, Nullable: true})
	}
	if windowed {
		fields = append(fields,
			arrow.Field{Name: WindowStartColumn, Type: arrow.FixedWidthTypes.Timestamp_ms},
			arrow.Field{Name: WindowEndColumn, Type: arrow.FixedWidthTypes.Timestamp_ms})
		seen[WindowStartColumn], seen[WindowEndColumn] = true, true
	}
	for j, ag := range f.Aggregates {
		ap := fmt.Sprintf("%s.aggregates[%d]", p, j)
		if ag.Name == "" {
			c.add(ap+".name", "must be set")
			ok = false
		} else if seen[ag.Name] {
			c.add(ap+".name", "duplicate output column %q", ag.Name)
			ok = false
		}
		seen[ag.Name] = true
		var colType arrow.DataType
		if ag.Op != "count" || ag.Column != "" {
			if ag.Column == "" {
				c.add(ap+".column", "%s needs a column", ag.Op)
				ok = false
				continue
			}
			idx := in.FieldIndices(ag.Column)
			if len(idx) == 0 {
				c.add(ap+".column", "unknown column %q%s", ag.Column, suggest(ag.Column, columnNames(in)))
				ok = false
				continue
			}
			colType = in.Field(idx[0]).Type
		}
		numeric := colType != nil && (colType.ID() == arrow.INT64 || colType.ID() == arrow.FLOAT64)
		var out arrow.DataType
		switch ag.Op {
		case "count":
			out = arrow.PrimitiveTypes.Int64
		case "sum":
			if !numeric {
				c.add(ap+".column", "sum needs an int64 or float64 column, %q is %s", ag.Column, colType)
				ok = false
				continue
			}
			out = colType
		case "avg":
			if !numeric {
				c.add(ap+".column", "avg needs an int64 or float64 column, %q is %s", ag.Column, colType)
				ok = false
				continue
			}
			out = arrow.PrimitiveTypes.Float64
		case "min", "max":
			switch colType.ID() {
			case arrow.INT64, arrow.FLOAT64, arrow.STRING, arrow.TIMESTAMP:
				out = colType
			default:
				c.add(ap+".column", "%s needs an int64, float64, string or timestamp column, %q is %s", ag.Op, ag.Column, colType)
				ok = false
				continue
			}
		case "count_distinct":
			out = arrow.PrimitiveTypes.Int64
		case "top_k":
			if ag.K <= 0 {
				c.add(ap+".k", "top_k needs k > 0")
				ok = false
				continue
			}
			out = arrow.ListOf(arrow.BinaryTypes.String)
		case "":
			c.add(ap+".op", "must be set (%s)", aggregateOps)
			ok = false
			continue
		default:
			c.add(ap+".op", "unknown aggregate %q (%s)", ag.Op, aggregateOps)
			ok = false
			continue
		}
		if ag.K != 0 && ag.Op != "top_k" {
			c.add(ap+".k", "only top_k takes k")
		}
		fields = append(fields, arrow.Field{Name: ag.Name, Type: out, Nullable: true})
	}
	if !ok {
		return nil
	}
	return arrow.NewSchema(fields, nil)
}
