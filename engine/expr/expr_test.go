package expr

import (
	"fmt"
	"strings"
	"testing"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/memory"
)

func batch(t *testing.T) arrow.Record {
	t.Helper()
	s := arrow.NewSchema([]arrow.Field{
		{Name: "n", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
		{Name: "x", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
		{Name: "s", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "b", Type: arrow.FixedWidthTypes.Boolean, Nullable: true},
	}, nil)
	bld := array.NewRecordBuilder(memory.DefaultAllocator, s)
	defer bld.Release()
	bld.Field(0).(*array.Int64Builder).AppendValues([]int64{1, 2, 3, 0}, []bool{true, true, true, false})
	bld.Field(1).(*array.Float64Builder).AppendValues([]float64{0.5, 2, -3, 4}, nil)
	bld.Field(2).(*array.StringBuilder).AppendValues([]string{"/cart", "/home", "Cart", ""}, []bool{true, true, true, false})
	bld.Field(3).(*array.BooleanBuilder).AppendValues([]bool{true, false, true, false}, nil)
	return bld.NewRecord()
}

func show(v Vector) string {
	var out []string
	for i := range max(len(v.B), len(v.I), len(v.F), len(v.S)) {
		if !v.IsValid(i) {
			out = append(out, "null")
			continue
		}
		switch v.Kind {
		case Bool:
			out = append(out, fmt.Sprint(v.B[i]))
		case Int:
			out = append(out, fmt.Sprint(v.I[i]))
		case Float:
			out = append(out, fmt.Sprint(v.F[i]))
		case String:
			out = append(out, fmt.Sprintf("%q", v.S[i]))
		}
	}
	return strings.Join(out, " ")
}

func TestEval(t *testing.T) {
	rec := batch(t)
	defer rec.Release()
	for _, tc := range []struct{ src, want string }{
		{"n > 1", "false true true null"},
		{"n * 2 + 1", "3 5 7 null"},
		{"n / 2", "0.5 1 1.5 null"},
		{"x + n", "1.5 4 0 null"},
		{"n % 2 == 1", "true false true null"},
		{"s startsWith '/'", "true true false null"},
		{"lower(s) contains 'cart'", "true false true null"},
		{"s in ['/home', 'Cart']", "false true true null"},
		{"n not in [1]", "false true true null"},
		{"not b", "false true false true"},
		{"b and n > 5", "false false false false"},
		{"b or n > 5", "true false true null"},
		{"n > 1 ? 'big' : 'small'", `"small" "big" "big" "small"`},
		{"abs(x)", "0.5 2 3 4"},
		{"-x", "-0.5 -2 3 -4"},
		{"len(s)", "5 5 4 null"},
		{"s matches '^/[a-z]+$'", "true true false null"},
		{"x / 0", "null null null null"},
		{"1 + 2", "3 3 3 3"},
		{"s + '!'", `"/cart!" "/home!" "Cart!" null`},
	} {
		e, err := Compile(tc.src, rec.Schema())
		if err != nil {
			t.Errorf("%s: %v", tc.src, err)
			continue
		}
		v, err := e.Eval(rec)
		if err != nil {
			t.Errorf("%s: %v", tc.src, err)
			continue
		}
		if got := show(v); got != tc.want {
			t.Errorf("%s = %s, want %s", tc.src, got, tc.want)
		}
	}
}

func TestCompileErrors(t *testing.T) {
	rec := batch(t)
	defer rec.Release()
	for src, want := range map[string]string{
		"nope > 1":       `unknown column "nope"`,
		"s > 1":          "cannot compare string and int64",
		"n and b":        "and needs bools",
		"s % 2":          "% needs numbers",
		"foo(n)":         `unsupported function "foo"`,
		"n >":            "expr: unexpected token",
		"s matches n":    "matches needs a string and a literal pattern",
		"b ? 1 : 's'":    "branches of ?: differ",
		"[1,2]":          "unsupported construct",
		"n in [b]":       "in needs literal values",
		"s matches '(' ": "matches: error parsing regexp",
		"upper(n)":       "upper needs a string",
	} {
		_, err := Compile(src, rec.Schema())
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want %q", src, err, want)
		}
	}
}

func BenchmarkFilter(b *testing.B) {
	rec := func() arrow.Record {
		s := arrow.NewSchema([]arrow.Field{{Name: "n", Type: arrow.PrimitiveTypes.Int64}, {Name: "s", Type: arrow.BinaryTypes.String}}, nil)
		bld := array.NewRecordBuilder(memory.DefaultAllocator, s)
		defer bld.Release()
		for i := 0; i < 4096; i++ {
			bld.Field(0).(*array.Int64Builder).Append(int64(i))
			bld.Field(1).(*array.StringBuilder).Append("view")
		}
		return bld.NewRecord()
	}()
	defer rec.Release()
	e, err := Compile(`s == "view" and n >= 1000`, rec.Schema())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(4096) // rows, reported as "MB/s" = M rows/s
	for i := 0; i < b.N; i++ {
		if _, err := e.Eval(rec); err != nil {
			b.Fatal(err)
		}
	}
}
