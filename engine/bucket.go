package engine

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"strconv"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/ipc"
	"github.com/apache/arrow/go/v15/arrow/util"

	"github.com/pheromone-go/pheromone/engine/app"
	"github.com/pheromone-go/pheromone/state"
	"github.com/pheromone-go/pheromone/triggers"
)

// bucket is one partition of a bucket, owned by its task's goroutine.
// Objects are numbered densely from 0; they are stored in chunks, one per
// put, each an Arrow record. A chunk is written to the store only if some
// trigger still needs it when its cycle commits, and deleted once every
// trigger's Low has passed its end (consumption-aware GC).
type bucket struct {
	name     string
	cfg      *app.Bucket
	prefix   []byte
	next     uint64 // next sequence number
	saved    uint64 // next as last committed
	chunks   []*chunk
	triggers []*trigger
	mergers  []*trigger // triggers with merged watermarks, in header order
	objects  int64      // objects held in live chunks
	bytes    int64
}

type trigger struct {
	t          triggers.Trigger
	fn         *fnPlan
	groupCol   string
	countCol   string
	lateBucket string
	dropped    uint64 // Dropped() as last reported to the metrics
	eventTime  bool
	// merger is set for event-time triggers of a bucket with partition_by
	// (watermarks merged over the upstream partitions); mIdx is its index
	// in bucket.mergers and in the watermark header's list.
	merger triggers.Merger
	mIdx   int
	// fold keeps the partial aggregates of a folding trigger (fold.go).
	fold *fold
	// saved is the state as last written: a commit writes it again only
	// when it changed.
	saved []byte
}

type chunk struct {
	first, end uint64
	rec        arrow.Record // nil while evicted (then persisted is true)
	bytes      int64
	persisted  bool
	cycle      uint64 // the cycle whose batch persists the chunk
	// raw holds the source records of its rows, until the cycle commits
	// (pass-through; nil otherwise).
	raw []rawRec
}

// loadBucket loads a bucket partition; known, if not nil, lists its chunks
// (as a restore wrote them) instead of a scan that reads every chunk.
func loadBucket(st state.Reader, appName string, bp *bucketPlan, part int32, known map[string][]chunkRef) (*bucket, error) {
	b := &bucket{name: bp.cfg.Name, cfg: bp.cfg, prefix: bucketPrefix(appName, bp.cfg.Name, part)}
	v, err := st.Get(metaKey(b.prefix))
	switch {
	case errors.Is(err, state.ErrNotFound):
	case err != nil:
		return nil, err
	case len(v) != 8:
		return nil, fmt.Errorf("bucket %s: corrupt meta", b.name)
	default:
		b.next = binary.BigEndian.Uint64(v)
	}
	b.saved = b.next
	if known != nil {
		for _, c := range known[string(chunkPrefix(b.prefix))] {
			b.chunks = append(b.chunks, &chunk{first: c.first, end: c.end, bytes: c.bytes, persisted: true})
			b.objects += int64(c.end - c.first)
			b.bytes += c.bytes
		}
	} else if err = st.Scan(chunkPrefix(b.prefix), func(k, v []byte) error {
		first, end := ChunkRange(k)
		b.chunks = append(b.chunks, &chunk{first: first, end: end, bytes: int64(len(v)), persisted: true})
		b.objects += int64(end - first)
		b.bytes += int64(len(v))
		return nil
	}); err != nil {
		return nil, err
	}
	for _, tp := range bp.triggers {
		spec := tp.spec
		spec.Self = int(part)
		raw, err := st.Get(triggerKey(b.prefix, tp.spec.Name))
		if err != nil && !errors.Is(err, state.ErrNotFound) {
			return nil, err
		}
		if spec.Fold && raw != nil {
			// State written keeping objects (before incremental windows, or
			// restored from such a changelog) stays so until it is reset.
			if spec.Fold, err = folded(st, b.prefix, spec.Name); err != nil {
				return nil, err
			}
		}
		tr, err := triggers.New(spec, b.next)
		if err != nil {
			return nil, err
		}
		if err := tr.UnmarshalState(raw, b.next); err != nil {
			return nil, err
		}
		bt := &trigger{t: tr, fn: tp.fn, groupCol: tp.groupCol, countCol: tp.countCol, lateBucket: tp.lateBucket,
			dropped: tr.Dropped(), eventTime: spec.EventTime, saved: raw}
		if f, ok := tr.(triggers.Folding); ok && spec.Fold {
			bt.fold = newFold(tp.inc)
			if err := bt.fold.load(st, b.prefix, spec.Name); err != nil {
				return nil, err
			}
			f.SetFolder(bt.fold)
		}
		if m, ok := tr.(triggers.Merger); ok && spec.Inputs > 0 {
			bt.merger, bt.mIdx = m, len(b.mergers)
			b.mergers = append(b.mergers, bt)
		}
		b.triggers = append(b.triggers, bt)
	}
	return b, nil
}

// put stores rec in b (taking over the reference) and queues the firings.
// Objects of a bucket without a session column inherit session (the
// session of the firing whose function emitted them).
func (t *task) put(b *bucket, rec arrow.Record, session string) {
	t.putFrom(b, rec, session, nil, nil)
}

// putFrom is put with the senders' watermarks of objects that came through
// a repartition topic (nil: this partition sends them itself).
func (t *task) putFrom(b *bucket, rec arrow.Record, session string, from *sent, raw []rawRec) {
	size := recordSize(rec)
	if !b.fits(rec.NumRows(), size) {
		t.deadRows(rec, deadLetter{reason: ReasonBucket, bucket: b.name, err: fmt.Errorf("bucket %q partition %d is full (%d objects, %d bytes; max_objects %d, max_bytes %d)",
			b.name, t.part, b.objects, b.bytes, b.cfg.MaxObjects, b.cfg.MaxBytes)})
		rec.Release()
		return
	}
	now := t.n.o.Clock.Now()
	if len(b.mergers) > 0 && from == nil {
		from = t.send(b, rec, now)
	}
	rec.Retain() // append may release it; the triggers read it below
	defer rec.Release()
	objs := b.append(rec, size, raw)
	if objs.Sessions == nil && session != "" {
		objs.Sessions = make([]string, objs.Len)
		for i := range objs.Sessions {
			objs.Sessions[i] = session
		}
	}
	out := t.firingBuf[:0] // queueFirings copies what it keeps
	defer func() { t.firingBuf = out[:0] }()
	for _, tr := range b.triggers {
		o := objs
		o.Groups = stringColumn(rec, tr.groupCol)
		o.Counts = int64Column(rec, tr.countCol)
		if tr.merger != nil && from != nil {
			o.Upstream, o.Watermarks = from.upstream, from.wms[tr.mIdx]
		}
		if tr.fold != nil {
			tr.fold.begin(rec, objs.First)
		}
		out = tr.t.Put(o, now, out[:0])
		if tr.fold != nil {
			if err := tr.fold.end(); err != nil {
				t.deadRows(rec, deadLetter{reason: ReasonFunction, trigger: tr.t.Name(), bucket: b.name, err: err})
			}
		}
		t.queueFirings(b, tr, out)
	}
}

// pending is the number of objects some trigger still needs (what the
// bucket_objects metric reports); chunks are freed whole, so objects held in
// storage can be more.
func (b *bucket) pending() int64 {
	low := b.low()
	var n int64
	for _, c := range b.chunks {
		if c.end > low {
			n += int64(c.end - max(c.first, low))
		}
	}
	return n
}

// fits reports whether n more objects of size bytes stay within the bounds.
func (b *bucket) fits(n, size int64) bool {
	return b.objects+n <= b.cfg.MaxObjects && b.bytes+size <= b.cfg.MaxBytes
}

// append stores rec as a new chunk (taking over the caller's reference) and
// returns the objects' descriptor with their keys and sessions.
func (b *bucket) append(rec arrow.Record, size int64, raw []rawRec) triggers.Objects {
	if raw != nil && len(raw) != int(rec.NumRows()) {
		raw = nil
	}
	n := uint64(rec.NumRows())
	first := b.next
	if parts := uint64((size + maxChunkBytes - 1) / maxChunkBytes); parts > 1 && n > 1 {
		// Large puts become several chunks: a chunk is one changelog record,
		// which must stay well under the broker's message size limit.
		parts = min(parts, n)
		for i := uint64(0); i < parts; i++ {
			from, to := n*i/parts, n*(i+1)/parts
			c := &chunk{first: first + from, end: first + to,
				rec: rec.NewSlice(int64(from), int64(to)), bytes: size * int64(to-from) / int64(n)}
			if raw != nil {
				c.raw = raw[from:to]
			}
			b.chunks = append(b.chunks, c)
		}
		defer rec.Release() // the slices keep the buffers
	} else {
		b.chunks = append(b.chunks, &chunk{first: first, end: first + n, rec: rec, bytes: size, raw: raw})
	}
	b.next += n
	b.objects += int64(n)
	b.bytes += size
	return triggers.Objects{
		First:      first,
		Len:        int(n),
		Keys:       stringColumn(rec, b.cfg.Key),
		Sessions:   stringColumn(rec, b.cfg.Session),
		EventTimes: millisColumn(rec, b.cfg.EventTime),
	}
}

// millisColumn reads a timestamp (milliseconds) or int64 column as unix
// milliseconds (nil when not set or absent).
func millisColumn(rec arrow.Record, name string) []int64 {
	if name == "" {
		return nil
	}
	idx := rec.Schema().FieldIndices(name)
	if len(idx) == 0 {
		return nil
	}
	switch a := rec.Column(idx[0]).(type) {
	case *array.Int64:
		return a.Int64Values()
	case *array.Timestamp:
		out := make([]int64, a.Len())
		for i, v := range a.TimestampValues() {
			out[i] = int64(v)
		}
		return out
	}
	return nil
}

// stringColumn reads column name of rec as strings (nil when the column is
// not set or absent). Strings point into rec's buffers; int64 values are
// formatted in decimal. Nulls read as "".
func stringColumn(rec arrow.Record, name string) []string {
	if name == "" {
		return nil
	}
	idx := rec.Schema().FieldIndices(name)
	if len(idx) == 0 {
		return nil
	}
	col := rec.Column(idx[0])
	out := make([]string, rec.NumRows())
	for i := range out {
		if col.IsNull(i) {
			continue
		}
		switch a := col.(type) {
		case *array.String:
			out[i] = a.Value(i)
		case *array.Binary:
			out[i] = string(a.Value(i))
		case *array.Int64:
			out[i] = strconv.FormatInt(a.Value(i), 10)
		}
	}
	return out
}

// int64Column reads column name of rec (nil when not set or absent).
func int64Column(rec arrow.Record, name string) []int64 {
	if name == "" {
		return nil
	}
	idx := rec.Schema().FieldIndices(name)
	if len(idx) == 0 {
		return nil
	}
	if a, ok := rec.Column(idx[0]).(*array.Int64); ok {
		return a.Int64Values()
	}
	return nil
}

// recordSize is the bytes rec's rows take: for a slice of a larger batch,
// its rows' share (a count of the whole buffers would charge every slice
// the batch — a repartition puts its local rows as many small slices).
func recordSize(rec arrow.Record) int64 {
	var n int64
	for _, col := range rec.Columns() {
		rows := int64(col.Len())
		n += (rows + 7) / 8 // validity
		switch a := col.(type) {
		case *array.String:
			n += int64(len(a.ValueBytes())) + 4*(rows+1)
		case *array.Binary:
			n += int64(len(a.ValueBytes())) + 4*(rows+1)
		default:
			if fw, ok := col.DataType().(arrow.FixedWidthDataType); ok {
				n += (int64(fw.BitWidth())*rows + 7) / 8
			} else {
				n += util.TotalArraySize(col)
			}
		}
	}
	return n
}

// maxChunkBytes bounds the in-memory size of one chunk; larger puts are
// split (see append).
const maxChunkBytes = 256 << 10

// low is the smallest sequence number some trigger still needs. A bucket
// without triggers keeps everything (within its bounds).
func (b *bucket) low() uint64 {
	if len(b.triggers) == 0 {
		return 0
	}
	low := b.next
	for _, t := range b.triggers {
		if l := t.t.Low(); l < low {
			low = l
		}
	}
	return low
}

// slices returns the objects of span as record slices (each retained; the
// caller releases them), loading evicted chunks from st.
func (b *bucket) slices(st state.Reader, sp triggers.Span, out []arrow.Record) ([]arrow.Record, error) {
	i := sort.Search(len(b.chunks), func(i int) bool { return b.chunks[i].end > sp.From })
	for ; i < len(b.chunks) && b.chunks[i].first < sp.To; i++ {
		c := b.chunks[i]
		if c.rec == nil {
			rec, err := readChunk(st, chunkKey(b.prefix, c.first, c.end))
			if err != nil {
				return out, fmt.Errorf("bucket %s: chunk [%d,%d): %w", b.name, c.first, c.end, err)
			}
			c.rec = rec
		}
		lo, hi := max(sp.From, c.first)-c.first, min(sp.To, c.end)-c.first
		if lo == 0 && hi == c.end-c.first {
			c.rec.Retain() // the whole chunk: no slice to build
			out = append(out, c.rec)
			continue
		}
		out = append(out, c.rec.NewSlice(int64(lo), int64(hi)))
	}
	return out, nil
}

// gc writes what the cycle must make durable into batch and drops the
// chunks no trigger needs any more.
func (b *bucket) gc(batch state.Batch, cycle uint64) error {
	low := b.low()
	kept := b.chunks[:0]
	for _, c := range b.chunks {
		c.raw = nil // the cycle's firings are done with it
		if c.end <= low {
			if c.persisted {
				batch.Delete(chunkKey(b.prefix, c.first, c.end))
			}
			if c.rec != nil {
				c.rec.Release()
			}
			b.objects -= int64(c.end - c.first)
			b.bytes -= c.bytes
			continue
		}
		if !c.persisted {
			v, err := encodeChunk(c.rec)
			if err != nil {
				return fmt.Errorf("bucket %s: %w", b.name, err)
			}
			batch.Set(chunkKey(b.prefix, c.first, c.end), v)
			c.persisted, c.cycle = true, cycle
		}
		kept = append(kept, c)
	}
	for i := len(kept); i < len(b.chunks); i++ {
		b.chunks[i] = nil
	}
	b.chunks = kept
	if b.next != b.saved {
		batch.Set(metaKey(b.prefix), binary.BigEndian.AppendUint64(nil, b.next))
	}
	for _, t := range b.triggers {
		if st := t.t.MarshalState(); t.saved == nil || !bytes.Equal(st, t.saved) {
			if t.saved == nil && t.fold != nil {
				batch.Set(foldKey(b.prefix, t.t.Name()), nil) // its state folds
			}
			batch.Set(triggerKey(b.prefix, t.t.Name()), st)
			t.saved = st
		}
		if t.fold != nil {
			t.fold.save(batch, b.prefix, t.t.Name())
		}
	}
	return nil
}

// evict releases decoded chunks that are durable (persisted by a batch of a
// cycle <= durable), oldest first, until at most budget bytes stay in memory.
func (b *bucket) evict(budget int64, durable uint64) {
	var inMem int64
	for _, c := range b.chunks {
		if c.rec != nil {
			inMem += c.bytes
		}
	}
	for _, c := range b.chunks {
		if inMem <= budget {
			return
		}
		if c.rec != nil && c.persisted && c.cycle <= durable {
			c.rec.Release()
			c.rec = nil
			inMem -= c.bytes
		}
	}
}

func (b *bucket) release() {
	for _, c := range b.chunks {
		if c.rec != nil {
			c.rec.Release()
			c.rec = nil
		}
	}
}

func encodeChunk(rec arrow.Record) ([]byte, error) {
	var buf bytes.Buffer
	w := ipc.NewWriter(&buf, ipc.WithSchema(rec.Schema()))
	if err := w.Write(rec); err != nil {
		return nil, fmt.Errorf("encode chunk: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("encode chunk: %w", err)
	}
	return buf.Bytes(), nil
}

func readChunk(st state.Reader, key []byte) (arrow.Record, error) {
	v, err := st.Get(key)
	if err != nil {
		return nil, err
	}
	r, err := ipc.NewReader(bytes.NewReader(v))
	if err != nil {
		return nil, err
	}
	defer r.Release()
	if !r.Next() {
		if r.Err() != nil {
			return nil, r.Err()
		}
		return nil, errors.New("empty chunk")
	}
	rec := r.Record()
	rec.Retain()
	return rec, nil
}
