// Package expr compiles the expressions of the app file (filters, computed
// columns) and evaluates them over whole Arrow record batches.
//
// Parsing is done by github.com/expr-lang/expr, so the syntax is that
// library's ("duration_ms > 1000 and page startsWith '/cart'"). The parsed
// tree is type-checked against the input schema and turned into a tree of
// column kernels: each node computes one vector for the whole batch, so the
// cost per row is a few machine operations and no allocation.
//
// Supported: column names; int, float, string and bool literals; + - * / %;
// == != < <= > >=; and or not (&& || !); unary -; `in [...]` with literal
// lists; contains, startsWith, endsWith, matches (literal pattern);
// cond ? a : b; and the functions len, abs, lower, upper, int, float.
// Anything else is refused at compile time with the construct named.
package expr

import (
	"fmt"
	"math"
	"regexp"
	"strings"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/parser"
)

// Kind is the type of an expression's value.
type Kind uint8

// The kinds of values an expression can have.
const (
	Bool Kind = iota + 1
	Int
	Float
	String
)

func (k Kind) String() string {
	switch k {
	case Bool:
		return "bool"
	case Int:
		return "int64"
	case Float:
		return "float64"
	case String:
		return "string"
	}
	return "unknown"
}

// KindOf maps an Arrow type to an expression kind; ok is false for types
// expressions cannot read. Timestamps read as Int milliseconds.
func KindOf(t arrow.DataType) (Kind, bool) {
	switch t.ID() {
	case arrow.BOOL:
		return Bool, true
	case arrow.INT64, arrow.TIMESTAMP:
		return Int, true
	case arrow.FLOAT64:
		return Float, true
	case arrow.STRING:
		return String, true
	}
	return 0, false
}

// Vector is the value of an expression over one batch. Exactly one of the
// slices matching Kind is set. Valid is nil when every row is valid.
// A Vector is owned by the caller of Eval and valid until it is discarded.
type Vector struct {
	Kind  Kind
	B     []bool
	I     []int64
	F     []float64
	S     []string
	Valid []bool
}

// IsValid reports whether row i has a value.
func (v *Vector) IsValid(i int) bool { return v.Valid == nil || v.Valid[i] }

// Expr is a compiled expression. It is immutable and safe for concurrent use.
type Expr struct {
	src  string
	kind Kind
	root node
	cols []string
}

// Kind is the type of the expression's value.
func (e *Expr) Kind() Kind { return e.kind }

// Columns lists the input columns the expression reads.
func (e *Expr) Columns() []string { return e.cols }

// String returns the source text.
func (e *Expr) String() string { return e.src }

// Compile parses src and type-checks it against schema.
func Compile(src string, schema *arrow.Schema) (*Expr, error) {
	tree, err := parser.Parse(src)
	if err != nil {
		msg := err.Error()
		if i := strings.IndexByte(msg, '\n'); i > 0 {
			msg = msg[:i]
		}
		return nil, fmt.Errorf("expr: %s", msg)
	}
	c := &compiler{schema: schema, seen: map[string]bool{}}
	root, err := c.compile(tree.Node)
	if err != nil {
		return nil, err
	}
	return &Expr{src: src, kind: root.kind(), root: root, cols: c.cols}, nil
}

// Eval computes the expression for every row of rec. The record's schema
// must hold the columns the expression was compiled against (by name).
func (e *Expr) Eval(rec arrow.Record) (Vector, error) {
	env := &env{rec: rec, n: int(rec.NumRows())}
	v, err := e.root.eval(env)
	if err != nil {
		return Vector{}, err
	}
	return materialize(v, env.n), nil
}

// env is one evaluation over one batch.
type env struct {
	rec arrow.Record
	n   int
}

// value is an intermediate result: a vector or a constant.
type value struct {
	Vector
	isConst bool
	cb      bool
	ci      int64
	cf      float64
	cs      string
}

func (v *value) valid(i int) bool { return v.isConst || v.Valid == nil || v.Valid[i] }
func (v *value) b(i int) bool {
	if v.isConst {
		return v.cb
	}
	return v.B[i]
}
func (v *value) i(i int) int64 {
	if v.isConst {
		return v.ci
	}
	return v.I[i]
}
func (v *value) f(i int) float64 {
	if v.isConst {
		if v.Kind == Int {
			return float64(v.ci)
		}
		return v.cf
	}
	if v.Kind == Int {
		return float64(v.I[i])
	}
	return v.F[i]
}
func (v *value) s(i int) string {
	if v.isConst {
		return v.cs
	}
	return v.S[i]
}

func materialize(v value, n int) Vector {
	if !v.isConst {
		return v.Vector
	}
	out := Vector{Kind: v.Kind}
	switch v.Kind {
	case Bool:
		out.B = make([]bool, n)
		for i := range out.B {
			out.B[i] = v.cb
		}
	case Int:
		out.I = make([]int64, n)
		for i := range out.I {
			out.I[i] = v.ci
		}
	case Float:
		out.F = make([]float64, n)
		for i := range out.F {
			out.F[i] = v.cf
		}
	case String:
		out.S = make([]string, n)
		for i := range out.S {
			out.S[i] = v.cs
		}
	}
	return out
}

type node interface {
	kind() Kind
	eval(*env) (value, error)
}

type compiler struct {
	schema *arrow.Schema
	cols   []string
	seen   map[string]bool
}

func (c *compiler) compile(n ast.Node) (node, error) {
	switch n := n.(type) {
	case *ast.IntegerNode:
		return constNode{value{Vector: Vector{Kind: Int}, isConst: true, ci: int64(n.Value)}}, nil
	case *ast.FloatNode:
		return constNode{value{Vector: Vector{Kind: Float}, isConst: true, cf: n.Value}}, nil
	case *ast.StringNode:
		return constNode{value{Vector: Vector{Kind: String}, isConst: true, cs: n.Value}}, nil
	case *ast.BoolNode:
		return constNode{value{Vector: Vector{Kind: Bool}, isConst: true, cb: n.Value}}, nil
	case *ast.IdentifierNode:
		idx := c.schema.FieldIndices(n.Value)
		if len(idx) == 0 {
			return nil, fmt.Errorf("expr: unknown column %q", n.Value)
		}
		f := c.schema.Field(idx[0])
		k, ok := KindOf(f.Type)
		if !ok {
			return nil, fmt.Errorf("expr: column %q has type %s, which expressions cannot read", n.Value, f.Type)
		}
		if !c.seen[n.Value] {
			c.seen[n.Value] = true
			c.cols = append(c.cols, n.Value)
		}
		return &colNode{name: n.Value, k: k}, nil
	case *ast.UnaryNode:
		x, err := c.compile(n.Node)
		if err != nil {
			return nil, err
		}
		switch n.Operator {
		case "not", "!":
			if x.kind() != Bool {
				return nil, fmt.Errorf("expr: %s needs a bool, got %s", n.Operator, x.kind())
			}
			return &notNode{x: x}, nil
		case "-":
			if x.kind() != Int && x.kind() != Float {
				return nil, fmt.Errorf("expr: unary - needs a number, got %s", x.kind())
			}
			return &negNode{x: x}, nil
		case "+":
			return x, nil
		}
		return nil, fmt.Errorf("expr: unsupported unary operator %q", n.Operator)
	case *ast.BinaryNode:
		return c.binary(n)
	case *ast.ConditionalNode:
		cond, err := c.compile(n.Cond)
		if err != nil {
			return nil, err
		}
		if cond.kind() != Bool {
			return nil, fmt.Errorf("expr: condition must be bool, got %s", cond.kind())
		}
		a, err := c.compile(n.Exp1)
		if err != nil {
			return nil, err
		}
		b, err := c.compile(n.Exp2)
		if err != nil {
			return nil, err
		}
		k, err := unify(a.kind(), b.kind())
		if err != nil {
			return nil, fmt.Errorf("expr: branches of ?: differ: %w", err)
		}
		return &condNode{c: cond, a: a, b: b, k: k}, nil
	case *ast.BuiltinNode:
		return c.builtin(n.Name, n.Arguments)
	case *ast.CallNode:
		if id, ok := n.Callee.(*ast.IdentifierNode); ok {
			return c.builtin(id.Value, n.Arguments)
		}
	}
	return nil, fmt.Errorf("expr: unsupported construct %T", n)
}

func unify(a, b Kind) (Kind, error) {
	if a == b {
		return a, nil
	}
	if (a == Int && b == Float) || (a == Float && b == Int) {
		return Float, nil
	}
	return 0, fmt.Errorf("%s and %s", a, b)
}

func (c *compiler) builtin(name string, args []ast.Node) (node, error) {
	if len(args) != 1 {
		return nil, fmt.Errorf("expr: unsupported function %s with %d arguments", name, len(args))
	}
	x, err := c.compile(args[0])
	if err != nil {
		return nil, err
	}
	k := x.kind()
	switch name {
	case "len":
		if k != String {
			return nil, fmt.Errorf("expr: len needs a string, got %s", k)
		}
		return &mapNode{x: x, out: Int, name: name}, nil
	case "lower", "upper":
		if k != String {
			return nil, fmt.Errorf("expr: %s needs a string, got %s", name, k)
		}
		return &mapNode{x: x, out: String, name: name}, nil
	case "abs":
		if k != Int && k != Float {
			return nil, fmt.Errorf("expr: abs needs a number, got %s", k)
		}
		return &mapNode{x: x, out: k, name: name}, nil
	case "int", "float":
		if k != Int && k != Float {
			return nil, fmt.Errorf("expr: %s needs a number, got %s", name, k)
		}
		out := Int
		if name == "float" {
			out = Float
		}
		return &mapNode{x: x, out: out, name: name}, nil
	}
	return nil, fmt.Errorf("expr: unsupported function %q", name)
}

func (c *compiler) binary(n *ast.BinaryNode) (node, error) {
	op := n.Operator
	if op == "in" || op == "not in" {
		return c.in(n)
	}
	l, err := c.compile(n.Left)
	if err != nil {
		return nil, err
	}
	if op == "matches" {
		s, ok := n.Right.(*ast.StringNode)
		if !ok || l.kind() != String {
			return nil, fmt.Errorf("expr: matches needs a string and a literal pattern")
		}
		re, err := regexp.Compile(s.Value)
		if err != nil {
			return nil, fmt.Errorf("expr: matches: %w", err)
		}
		return &matchNode{x: l, re: re}, nil
	}
	r, err := c.compile(n.Right)
	if err != nil {
		return nil, err
	}
	lk, rk := l.kind(), r.kind()
	switch op {
	case "and", "&&", "or", "||":
		if lk != Bool || rk != Bool {
			return nil, fmt.Errorf("expr: %s needs bools, got %s and %s", op, lk, rk)
		}
		return &logicNode{l: l, r: r, and: op == "and" || op == "&&"}, nil
	case "==", "!=", "<", "<=", ">", ">=":
		k, err := unify(lk, rk)
		if err != nil {
			return nil, fmt.Errorf("expr: cannot compare %w", err)
		}
		if k == Bool && op != "==" && op != "!=" {
			return nil, fmt.Errorf("expr: %s does not order bools", op)
		}
		return &cmpNode{l: l, r: r, op: op, k: k}, nil
	case "+", "-", "*", "/", "%":
		if op == "+" && lk == String && rk == String {
			return &arithNode{l: l, r: r, op: op, k: String}, nil
		}
		k, err := unify(lk, rk)
		if err != nil || (k != Int && k != Float) {
			return nil, fmt.Errorf("expr: %s needs numbers, got %s and %s", op, lk, rk)
		}
		if op == "/" {
			k = Float
		}
		if op == "%" && k != Int {
			return nil, fmt.Errorf("expr: %% needs integers")
		}
		return &arithNode{l: l, r: r, op: op, k: k}, nil
	case "contains", "startsWith", "endsWith":
		if lk != String || rk != String {
			return nil, fmt.Errorf("expr: %s needs strings, got %s and %s", op, lk, rk)
		}
		return &strNode{l: l, r: r, op: op}, nil
	}
	return nil, fmt.Errorf("expr: unsupported operator %q", op)
}

func (c *compiler) in(n *ast.BinaryNode) (node, error) {
	l, err := c.compile(n.Left)
	if err != nil {
		return nil, err
	}
	arr, ok := n.Right.(*ast.ArrayNode)
	if !ok {
		return nil, fmt.Errorf("expr: in needs a literal list")
	}
	set := &inNode{x: l, not: n.Operator == "not in", ints: map[int64]bool{}, strs: map[string]bool{}, floats: map[float64]bool{}}
	for _, e := range arr.Nodes {
		switch v := e.(type) {
		case *ast.IntegerNode:
			set.ints[int64(v.Value)] = true
			set.floats[float64(v.Value)] = true
		case *ast.FloatNode:
			set.floats[v.Value] = true
			if v.Value == math.Trunc(v.Value) {
				set.ints[int64(v.Value)] = true
			}
		case *ast.StringNode:
			set.strs[v.Value] = true
		default:
			return nil, fmt.Errorf("expr: in needs literal values, got %T", e)
		}
	}
	if l.kind() == Bool {
		return nil, fmt.Errorf("expr: in does not take bools")
	}
	return set, nil
}

// evalPair evaluates the two operands of a binary node.
func evalPair(e *env, a, b node) (value, value, error) {
	l, err := a.eval(e)
	if err != nil {
		return l, l, err
	}
	r, err := b.eval(e)
	return l, r, err
}

type constNode struct{ v value }

func (n constNode) kind() Kind               { return n.v.Kind }
func (n constNode) eval(*env) (value, error) { return n.v, nil }

type colNode struct {
	name string
	k    Kind
}

func (n *colNode) kind() Kind { return n.k }
func (n *colNode) eval(e *env) (value, error) {
	idx := e.rec.Schema().FieldIndices(n.name)
	if len(idx) == 0 {
		return value{}, fmt.Errorf("expr: batch has no column %q", n.name)
	}
	col := e.rec.Column(idx[0])
	v := value{Vector: Vector{Kind: n.k}}
	if col.NullN() > 0 {
		v.Valid = make([]bool, e.n)
		for i := range v.Valid {
			v.Valid[i] = col.IsValid(i)
		}
	}
	switch a := col.(type) {
	case *array.Int64:
		v.I = a.Int64Values()
	case *array.Timestamp:
		ts := a.TimestampValues()
		v.I = make([]int64, len(ts))
		for i, t := range ts {
			v.I[i] = int64(t)
		}
	case *array.Float64:
		v.F = a.Float64Values()
	case *array.Boolean:
		v.B = make([]bool, e.n)
		for i := range v.B {
			v.B[i] = a.Value(i)
		}
	case *array.String:
		v.S = make([]string, e.n)
		for i := range v.S {
			v.S[i] = a.Value(i)
		}
	default:
		return value{}, fmt.Errorf("expr: column %q has type %s, expected %s", n.name, col.DataType(), n.k)
	}
	return v, nil
}

// validity combines the validity of two operands.
func validity(n int, a, b *value) []bool {
	if (a.isConst || a.Valid == nil) && (b.isConst || b.Valid == nil) {
		return nil
	}
	out := make([]bool, n)
	for i := range out {
		out[i] = a.valid(i) && b.valid(i)
	}
	return out
}

type notNode struct{ x node }

func (n *notNode) kind() Kind { return Bool }
func (n *notNode) eval(e *env) (value, error) {
	x, err := n.x.eval(e)
	if err != nil || x.isConst {
		x.cb = !x.cb
		return x, err
	}
	out := value{Vector: Vector{Kind: Bool, B: make([]bool, e.n), Valid: x.Valid}}
	for i, b := range x.B {
		out.B[i] = !b
	}
	return out, nil
}

type negNode struct{ x node }

func (n *negNode) kind() Kind { return n.x.kind() }
func (n *negNode) eval(e *env) (value, error) {
	x, err := n.x.eval(e)
	if err != nil {
		return x, err
	}
	if x.isConst {
		x.ci, x.cf = -x.ci, -x.cf
		return x, nil
	}
	out := value{Vector: Vector{Kind: x.Kind, Valid: x.Valid}}
	if x.Kind == Int {
		out.I = make([]int64, e.n)
		for i, v := range x.I {
			out.I[i] = -v
		}
	} else {
		out.F = make([]float64, e.n)
		for i, v := range x.F {
			out.F[i] = -v
		}
	}
	return out, nil
}

type logicNode struct {
	l, r node
	and  bool
}

func (n *logicNode) kind() Kind { return Bool }

// eval uses SQL's three-valued logic: false and NULL is false, true or NULL
// is true; a filter keeps only rows that are valid and true.
func (n *logicNode) eval(e *env) (value, error) {
	l, r, err := evalPair(e, n.l, n.r)
	if err != nil {
		return value{}, err
	}
	out := value{Vector: Vector{Kind: Bool, B: make([]bool, e.n)}}
	anyNull := !(l.isConst || l.Valid == nil) || !(r.isConst || r.Valid == nil)
	if anyNull {
		out.Valid = make([]bool, e.n)
	}
	for i := 0; i < e.n; i++ {
		lv, rv := l.valid(i), r.valid(i)
		lb, rb := lv && l.b(i), rv && r.b(i)
		if n.and {
			out.B[i] = lb && rb
			if anyNull {
				out.Valid[i] = (lv && rv) || (lv && !lb) || (rv && !rb)
			}
		} else {
			out.B[i] = lb || rb
			if anyNull {
				out.Valid[i] = (lv && rv) || lb || rb
			}
		}
	}
	return out, nil
}

type cmpNode struct {
	l, r node
	op   string
	k    Kind
}

func (n *cmpNode) kind() Kind { return Bool }
func (n *cmpNode) eval(e *env) (value, error) {
	l, r, err := evalPair(e, n.l, n.r)
	if err != nil {
		return value{}, err
	}
	out := value{Vector: Vector{Kind: Bool, B: make([]bool, e.n), Valid: validity(e.n, &l, &r)}}
	b := out.B
	switch n.k {
	case Int:
		for i := range b {
			b[i] = cmpOrdered(n.op, l.i(i), r.i(i))
		}
	case Float:
		for i := range b {
			b[i] = cmpOrdered(n.op, l.f(i), r.f(i))
		}
	case String:
		for i := range b {
			b[i] = cmpOrdered(n.op, l.s(i), r.s(i))
		}
	case Bool:
		for i := range b {
			b[i] = (l.b(i) == r.b(i)) == (n.op == "==")
		}
	}
	return out, nil
}

func cmpOrdered[T int64 | float64 | string](op string, a, b T) bool {
	switch op {
	case "==":
		return a == b
	case "!=":
		return a != b
	case "<":
		return a < b
	case "<=":
		return a <= b
	case ">":
		return a > b
	default:
		return a >= b
	}
}

type arithNode struct {
	l, r node
	op   string
	k    Kind
}

func (n *arithNode) kind() Kind { return n.k }
func (n *arithNode) eval(e *env) (value, error) {
	l, r, err := evalPair(e, n.l, n.r)
	if err != nil {
		return value{}, err
	}
	out := value{Vector: Vector{Kind: n.k, Valid: validity(e.n, &l, &r)}}
	switch n.k {
	case String:
		out.S = make([]string, e.n)
		for i := range out.S {
			out.S[i] = l.s(i) + r.s(i)
		}
	case Int:
		out.I = make([]int64, e.n)
		for i := range out.I {
			a, b := l.i(i), r.i(i)
			switch n.op {
			case "+":
				out.I[i] = a + b
			case "-":
				out.I[i] = a - b
			case "*":
				out.I[i] = a * b
			case "%":
				if b == 0 {
					out.markNull(i, e.n)
					continue
				}
				out.I[i] = a % b
			}
		}
	case Float:
		out.F = make([]float64, e.n)
		for i := range out.F {
			a, b := l.f(i), r.f(i)
			switch n.op {
			case "+":
				out.F[i] = a + b
			case "-":
				out.F[i] = a - b
			case "*":
				out.F[i] = a * b
			case "/":
				if b == 0 {
					out.markNull(i, e.n)
					continue
				}
				out.F[i] = a / b
			}
		}
	}
	return out, nil
}

// markNull makes row i null (division by zero yields NULL, as in SQL).
func (v *value) markNull(i, n int) {
	if v.Valid == nil {
		v.Valid = make([]bool, n)
		for j := range v.Valid {
			v.Valid[j] = true
		}
	}
	v.Valid[i] = false
}

type strNode struct {
	l, r node
	op   string
}

func (n *strNode) kind() Kind { return Bool }
func (n *strNode) eval(e *env) (value, error) {
	l, r, err := evalPair(e, n.l, n.r)
	if err != nil {
		return value{}, err
	}
	out := value{Vector: Vector{Kind: Bool, B: make([]bool, e.n), Valid: validity(e.n, &l, &r)}}
	for i := range out.B {
		a, b := l.s(i), r.s(i)
		switch n.op {
		case "contains":
			out.B[i] = strings.Contains(a, b)
		case "startsWith":
			out.B[i] = strings.HasPrefix(a, b)
		default:
			out.B[i] = strings.HasSuffix(a, b)
		}
	}
	return out, nil
}

type matchNode struct {
	x  node
	re *regexp.Regexp
}

func (n *matchNode) kind() Kind { return Bool }
func (n *matchNode) eval(e *env) (value, error) {
	x, err := n.x.eval(e)
	if err != nil {
		return x, err
	}
	out := value{Vector: Vector{Kind: Bool, B: make([]bool, e.n)}}
	if !x.isConst {
		out.Valid = x.Valid
	}
	for i := range out.B {
		out.B[i] = n.re.MatchString(x.s(i))
	}
	return out, nil
}

type inNode struct {
	x      node
	not    bool
	ints   map[int64]bool
	floats map[float64]bool
	strs   map[string]bool
}

func (n *inNode) kind() Kind { return Bool }
func (n *inNode) eval(e *env) (value, error) {
	x, err := n.x.eval(e)
	if err != nil {
		return x, err
	}
	out := value{Vector: Vector{Kind: Bool, B: make([]bool, e.n)}}
	if !x.isConst {
		out.Valid = x.Valid
	}
	for i := range out.B {
		var hit bool
		switch x.Kind {
		case Int:
			hit = n.ints[x.i(i)]
		case Float:
			hit = n.floats[x.f(i)]
		case String:
			hit = n.strs[x.s(i)]
		}
		out.B[i] = hit != n.not
	}
	return out, nil
}

type condNode struct {
	c, a, b node
	k       Kind
}

func (n *condNode) kind() Kind { return n.k }
func (n *condNode) eval(e *env) (value, error) {
	c, err := n.c.eval(e)
	if err != nil {
		return c, err
	}
	a, err := n.a.eval(e)
	if err != nil {
		return a, err
	}
	b, err := n.b.eval(e)
	if err != nil {
		return b, err
	}
	out := value{Vector: Vector{Kind: n.k, Valid: make([]bool, e.n)}}
	switch n.k {
	case Bool:
		out.B = make([]bool, e.n)
	case Int:
		out.I = make([]int64, e.n)
	case Float:
		out.F = make([]float64, e.n)
	case String:
		out.S = make([]string, e.n)
	}
	for i := 0; i < e.n; i++ {
		src := &b
		if c.valid(i) && c.b(i) {
			src = &a
		}
		out.Valid[i] = src.valid(i)
		switch n.k {
		case Bool:
			out.B[i] = src.b(i)
		case Int:
			out.I[i] = src.i(i)
		case Float:
			out.F[i] = src.f(i)
		case String:
			out.S[i] = src.s(i)
		}
	}
	return out, nil
}

type mapNode struct {
	x    node
	out  Kind
	name string
}

func (n *mapNode) kind() Kind { return n.out }
func (n *mapNode) eval(e *env) (value, error) {
	x, err := n.x.eval(e)
	if err != nil {
		return x, err
	}
	if x.isConst {
		x = value{Vector: materialize(x, e.n)}
	}
	out := value{Vector: Vector{Kind: n.out, Valid: x.Valid}}
	switch n.name {
	case "len":
		out.I = make([]int64, e.n)
		for i, s := range x.S {
			out.I[i] = int64(len(s))
		}
	case "lower", "upper":
		out.S = make([]string, e.n)
		f := strings.ToLower
		if n.name == "upper" {
			f = strings.ToUpper
		}
		for i, s := range x.S {
			out.S[i] = f(s)
		}
	case "abs":
		if x.Kind == Int {
			out.I = make([]int64, e.n)
			for i, v := range x.I {
				if v < 0 {
					v = -v
				}
				out.I[i] = v
			}
		} else {
			out.F = make([]float64, e.n)
			for i, v := range x.F {
				out.F[i] = math.Abs(v)
			}
		}
	case "int":
		out.I = make([]int64, e.n)
		for i := 0; i < e.n; i++ {
			out.I[i] = int64(x.f(i))
		}
	case "float":
		out.F = make([]float64, e.n)
		for i := 0; i < e.n; i++ {
			out.F[i] = x.f(i)
		}
	}
	return out, nil
}
