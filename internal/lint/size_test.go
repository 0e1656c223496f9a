package lint

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestEngineStaysReadable keeps the engine's files and functions small
// enough to read in one sitting: no file over 620 lines and no function
// over 120 lines in engine/ and engine/app, unless listed here with the
// reason.
func TestEngineStaysReadable(t *testing.T) {
	const maxFile, maxFunc = 620, 120
	allowed := map[string]string{
		// "engine/x.go:fn": "why it must stay whole",
	}
	for _, dir := range []string{"../../engine", "../../engine/app"} {
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil || len(files) == 0 {
			t.Fatalf("no Go files in %s: %v", dir, err)
		}
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			name := strings.TrimPrefix(f, "../../")
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if n := strings.Count(string(raw), "\n"); n > maxFile && allowed[name] == "" {
				t.Errorf("%s has %d lines (at most %d): split it by concern", name, n, maxFile)
			}
			fs := token.NewFileSet()
			af, err := parser.ParseFile(fs, f, raw, 0)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range af.Decls {
				fd, ok := d.(*ast.FuncDecl)
				if !ok || fd.Body == nil {
					continue
				}
				n := fs.Position(fd.End()).Line - fs.Position(fd.Pos()).Line
				if n > maxFunc && allowed[name+":"+fd.Name.Name] == "" {
					t.Errorf("%s: %s has %d lines (at most %d): split it", name, fd.Name.Name, n, maxFunc)
				}
			}
		}
	}
}
