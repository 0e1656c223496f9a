// Package file is the file source and sink kinds: records read from the
// lines of a local file, rows appended as JSON lines to one — for local
// pipelines and debugging. They are written against the engine's source
// and sink contracts (engine.SourceKind with engine.Feed, engine.SinkKind)
// and are the example of adding a kind without touching the engine.
//
//	sources:
//	  - {name: orders, kind: file, options: {path: orders.jsonl}, schema: [...], bucket: orders}
//	sinks:
//	  - {name: debug, kind: file, options: {path: out.jsonl}}
package file

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/pheromone-go/pheromone/engine"
	"github.com/pheromone-go/pheromone/engine/app"
)

// Spec declares the sink kind and its options to the app file's
// validation.
var Spec = app.SinkKind{
	Name: "file",
	Doc:  "rows appended as JSON lines to a local file (one line per row, the row's JSON object)",
	Options: []app.Option{
		{Name: "path", Required: true, Doc: "the file to append to; {partition} in it is replaced by the partition number (otherwise every partition appends to the one file, whole lines each)"},
		{Name: "sync", Doc: "false: do not fsync after each write (default true: a cycle commits only once its rows are on disk)"},
	},
}

// Kind opens files for the sinks of this kind; partitions writing to the
// same path share one file. Create it with NewKind.
type Kind struct {
	mu    sync.Mutex
	files map[string]*shared
}

// NewKind returns the file sink kind.
func NewKind() *Kind { return &Kind{files: map[string]*shared{}} }

var _ engine.SinkKind = (*Kind)(nil)

type shared struct {
	mu   sync.Mutex
	f    *os.File
	w    *bufio.Writer
	refs int
}

// Open implements engine.SinkKind.
func (k *Kind) Open(s *app.Sink, part int32) (engine.SinkWriter, error) {
	path := strings.ReplaceAll(s.Options["path"], "{partition}", fmt.Sprint(part))
	sync := s.Options["sync"] != "false"
	k.mu.Lock()
	defer k.mu.Unlock()
	sh := k.files[path]
	if sh == nil {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o644)
		if err == nil {
			err = dropTornTail(f)
		}
		if err != nil {
			if f != nil {
				f.Close()
			}
			return nil, fmt.Errorf("file: sink %s: %w", s.Name, err)
		}
		sh = &shared{f: f, w: bufio.NewWriterSize(f, 64<<10)}
		k.files[path] = sh
	}
	sh.refs++
	return &writer{k: k, path: path, sh: sh, sync: sync}, nil
}

// writer is one partition task's writer of one file sink.
type writer struct {
	k    *Kind
	path string
	sh   *shared
	sync bool
}

// Write implements engine.SinkWriter: the rows are appended as whole lines
// and, unless sync is off, on disk before done is called.
func (w *writer) Write(rows []engine.SinkRow, done func(error)) {
	sh := w.sh
	sh.mu.Lock()
	var err error
	for _, r := range rows {
		if _, err = sh.w.Write(r.Value); err != nil {
			break
		}
		if err = sh.w.WriteByte('\n'); err != nil {
			break
		}
	}
	if err == nil {
		err = sh.w.Flush()
	}
	if err == nil && w.sync {
		err = sh.f.Sync()
	}
	sh.mu.Unlock()
	if err != nil {
		err = fmt.Errorf("file: %s: %w", w.path, err)
	}
	done(err)
}

// Close implements engine.SinkWriter; the file closes with its last writer.
func (w *writer) Close() error {
	w.k.mu.Lock()
	defer w.k.mu.Unlock()
	w.sh.refs--
	if w.sh.refs > 0 {
		return nil
	}
	delete(w.k.files, w.path)
	w.sh.mu.Lock()
	defer w.sh.mu.Unlock()
	err := w.sh.w.Flush()
	if cerr := w.sh.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// dropTornTail removes a last line without its newline: the write of a
// process that died in the middle of it. Its cycle was not committed, so
// the row is written again when the cycle is replayed.
func dropTornTail(f *os.File) error {
	st, err := f.Stat()
	if err != nil || st.Size() == 0 {
		return err
	}
	buf := make([]byte, 64<<10)
	end := st.Size()
	for pos := end; pos > 0; {
		n := int64(len(buf))
		if pos < n {
			n = pos
		}
		pos -= n
		if _, err := f.ReadAt(buf[:n], pos); err != nil {
			return err
		}
		if pos+n == end && buf[n-1] == '\n' {
			return nil // the file ends with a whole line
		}
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			return f.Truncate(pos + int64(i) + 1)
		}
	}
	return f.Truncate(0)
}
