package file

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/pheromone-go/pheromone/engine"
	"github.com/pheromone-go/pheromone/engine/app"
)

// TestPartitionsShareOneFileInWholeLines: writers of several partitions
// append to one file concurrently; every row is one whole line, none lost.
func TestPartitionsShareOneFileInWholeLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.jsonl")
	k := NewKind()
	s := &app.Sink{Name: "debug", Kind: "file", Options: map[string]string{"path": path}}
	var wg sync.WaitGroup
	var want []string
	for p := int32(0); p < 4; p++ {
		w, err := k.Open(s, p)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 50; i++ {
			want = append(want, fmt.Sprintf(`{"p":%d,"i":%d,"pad":"%s"}`, p, i, strings.Repeat("x", 1000)))
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer w.Close()
			for i := 0; i < 50; i += 5 {
				var rows []engine.SinkRow
				for j := i; j < i+5; j++ {
					rows = append(rows, engine.SinkRow{Value: fmt.Appendf(nil, `{"p":%d,"i":%d,"pad":"%s"}`, p, j, strings.Repeat("x", 1000))})
				}
				done := make(chan error, 1)
				w.Write(rows, func(err error) { done <- err })
				if err := <-done; err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n")
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("%d lines, want %d whole rows", len(got), len(want))
	}
	if len(k.files) != 0 {
		t.Fatalf("%d files still open after every writer closed", len(k.files))
	}
}

// TestPartitionPlaceholderAndRefusals: {partition} gives each partition its
// file; a path that cannot be opened fails Open with the sink's name.
func TestPartitionPlaceholderAndRefusals(t *testing.T) {
	dir := t.TempDir()
	k := NewKind()
	s := &app.Sink{Name: "debug", Kind: "file", Options: map[string]string{"path": filepath.Join(dir, "p{partition}.jsonl"), "sync": "false"}}
	for p := int32(0); p < 2; p++ {
		w, err := k.Open(s, p)
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]engine.SinkRow{{Value: fmt.Appendf(nil, `{"p":%d}`, p)}}, func(err error) {
			if err != nil {
				t.Error(err)
			}
		})
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if raw, _ := os.ReadFile(filepath.Join(dir, fmt.Sprintf("p%d.jsonl", p))); string(raw) != fmt.Sprintf("{\"p\":%d}\n", p) {
			t.Errorf("partition %d file: %q", p, raw)
		}
	}
	bad := &app.Sink{Name: "nowhere", Kind: "file", Options: map[string]string{"path": filepath.Join(dir, "missing", "x.jsonl")}}
	if _, err := k.Open(bad, 0); err == nil || !strings.Contains(err.Error(), "sink nowhere") {
		t.Fatalf("Open of an impossible path: %v", err)
	}
}

// TestTornTailIsDropped: a last line without its newline (a process killed
// in the middle of a write) is removed when the sink opens the file, so the
// rows written again after the restart start on a line of their own.
func TestTornTailIsDropped(t *testing.T) {
	for name, content := range map[string]string{
		"torn after lines": "{\"a\":1}\n{\"a\":2}\n{\"a\"",
		"torn only":        "{\"a\"",
		"whole":            "{\"a\":1}\n",
	} {
		path := filepath.Join(t.TempDir(), "out.jsonl")
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		w, err := NewKind().Open(&app.Sink{Name: "s", Kind: "file", Options: map[string]string{"path": path}}, 0)
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]engine.SinkRow{{Value: []byte(`{"a":3}`)}}, func(err error) {
			if err != nil {
				t.Error(err)
			}
		})
		w.Close()
		raw, _ := os.ReadFile(path)
		want := content[:strings.LastIndex(content, "\n")+1] + "{\"a\":3}\n"
		if string(raw) != want {
			t.Errorf("%s: %q, want %q", name, raw, want)
		}
	}
}
