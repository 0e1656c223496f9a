package app

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParseValidate: whatever a user writes in an app file, Parse and
// Validate answer with problems, never a panic.
func FuzzParseValidate(f *testing.F) {
	f.Add([]byte(good))
	f.Add([]byte(""))
	f.Add([]byte("app: x\nsources: 3\n"))
	files, _ := filepath.Glob("../../examples/*/app.yaml")
	for _, p := range files {
		if raw, err := os.ReadFile(p); err == nil {
			f.Add(raw)
		}
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		a, err := Parse(raw)
		if err != nil {
			if _, ok := err.(Problems); !ok {
				t.Fatalf("Parse error of type %T: %v", err, err)
			}
			return
		}
		if err := a.Validate(); err != nil {
			if _, ok := err.(Problems); !ok {
				t.Fatalf("Validate error of type %T: %v", err, err)
			}
			return
		}
		_ = a.Caveats()
		_ = a.Topics()
	})
}

// TestEmptyFile: an empty file said "EOF" (issue 11).
func TestEmptyFile(t *testing.T) {
	if _, err := Parse(nil); err == nil || !strings.Contains(err.Error(), "the file is empty") {
		t.Errorf("empty file: %v", err)
	}
}
