package file

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/pheromone-go/pheromone/engine"
	"github.com/pheromone-go/pheromone/engine/app"
)

// SourceSpec declares the file source kind to the app file's validation.
var SourceSpec = app.SourceKind{
	Name: "file",
	Doc:  "the lines of a local file, one record per line, read as it grows (like tail -f); for local runs on one node",
	Options: []app.Option{
		{Name: "path", Required: true, Doc: "the file to read; its line number is the record's offset"},
	},
}

// Source is the file source kind: a source's one partition is the file,
// and a record's offset is its line number (from 0), so the node resumes
// after the last line its state committed, and a file that shrinks below
// it is an offset loss (kafka.on_offset_loss). Every node that runs the
// app reads the file: it is for local runs on one node.
type Source struct {
	// Poll is how often a file with no new line is looked at again;
	// default 100ms.
	Poll time.Duration
}

var _ engine.SourceKind = Source{}

// Run implements engine.SourceKind.
func (fs Source) Run(ctx context.Context, s *app.Source, feed engine.Feed) error {
	poll := fs.Poll
	if poll <= 0 {
		poll = 100 * time.Millisecond
	}
	tp := engine.TopicPartition{Topic: s.Topic, Partition: 0}
	if err := feed.Assign([]engine.TopicPartition{tp}); err != nil {
		return err
	}
	defer feed.Revoke([]engine.TopicPartition{tp})
	next, _ := feed.StartOffset(tp)
	// A line longer than max_record_bytes is kept only up to one byte past
	// it: the node dead-letters it (too_large) and memory stays bounded.
	r := &lineReader{path: s.Options["path"], limit: s.MaxRecordBytes + 1}
	defer r.close()
	if err := r.seek(next); err != nil {
		return fmt.Errorf("file: source %s: %w", s.Name, err)
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-feed.RewindRequested():
			if off, ok := feed.TakeRewinds()[tp]; ok {
				if err := r.seek(off); err != nil {
					return fmt.Errorf("file: source %s: %w", s.Name, err)
				}
			}
			continue
		case <-timer.C:
		}
		look := feed.StartLook()
		recs, err := r.read(500)
		if err != nil {
			return fmt.Errorf("file: source %s: %w", s.Name, err)
		}
		if len(recs) > 0 {
			end := r.next // the file's end, unless the batch was cut short
			if len(recs) == 500 {
				end = -1
			}
			if err := feed.DeliverFetch(ctx, tp.Topic, 0, recs, r.next, end); err != nil {
				return nil // ctx ended
			}
			timer.Reset(0)
			continue
		}
		// Nothing new: report where the file ends, so the partition counts
		// as caught up (idleness) and a file cut below the state's offset
		// is noticed.
		feed.ObserveLogEnds(map[engine.TopicPartition]engine.LogRange{tp: {Start: 0, End: r.lines}}, look)
		timer.Reset(poll)
	}
}

// lineReader reads whole lines of a growing file.
type lineReader struct {
	path  string
	f     *os.File
	br    *bufio.Reader
	next  int64  // offset (line number) of the next record
	lines int64  // whole lines seen so far
	part  []byte // a last line still without its newline
	limit int    // bytes of a line kept at most (0: all)
}

// keep appends b to the line being read, up to limit bytes.
func (r *lineReader) keep(b []byte) {
	if r.limit > 0 && len(r.part)+len(b) > r.limit {
		b = b[:max(0, r.limit-len(r.part))]
	}
	r.part = append(r.part, b...)
}

// seek positions the reader before line off (reopening the file).
func (r *lineReader) seek(off int64) error {
	r.close()
	f, err := os.Open(r.path)
	if err != nil {
		return err
	}
	r.f, r.br, r.next, r.lines, r.part = f, bufio.NewReaderSize(f, 64<<10), 0, 0, nil
	for r.next < off {
		line, err := r.br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			continue // a long line: keep reading it
		}
		if err == io.EOF {
			// Fewer lines than the state's offset: the node sees the
			// file's end below its position (an offset loss).
			r.keep(line)
			return nil
		}
		if err != nil {
			return err
		}
		r.next++
		r.lines++
	}
	return nil
}

// read returns up to max whole new lines as records.
func (r *lineReader) read(max int) ([]engine.Record, error) {
	var recs []engine.Record
	for len(recs) < max {
		line, err := r.br.ReadSlice('\n') // a view of the reader's buffer
		r.keep(line)
		if err == bufio.ErrBufferFull {
			continue // a line longer than the buffer: keep reading it
		}
		if err == io.EOF {
			return recs, nil // a partial line waits for its newline
		}
		if err != nil {
			return recs, err
		}
		v := bytes.TrimSuffix(r.part, []byte("\n"))
		recs = append(recs, engine.Record{Offset: r.next, Value: bytes.Clone(v)})
		r.part = r.part[:0]
		r.next++
		r.lines++
	}
	return recs, nil
}

func (r *lineReader) close() {
	if r.f != nil {
		r.f.Close()
		r.f = nil
	}
}
