package engine

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/pheromone-go/pheromone/state"
)

// The changelog replicates a partition's state: every Set and Delete a
// cycle's commit batch holds is also written, in order, to partition p of
// the compacted changelog topic (key: the state key, value: 's' + the value;
// a tombstone for a delete), followed by a marker record that closes the
// cycle. Restoring applies whole cycles only: changes after the last marker
// belong to a cycle whose producer died before it finished (at-least-once;
// read_committed never shows them), and are undone.
//
// The local checkpoint (not replicated) is the changelog offset the local
// state reflects: a node that gets a partition back whose checkpoint is the
// changelog's end restores nothing.

// Changelog record values: 's' + value sets a key; a tombstone deletes it;
// a cycle's marker is 'm' + its format version + its sequence number (see
// format.go).
// A value larger than maxChangelogValue (a big trigger state, a one-row
// chunk of a large record) is written as fragments — records under the key
// plus fragmentSuffix(i), value 'p' + part — followed by the key itself
// with 'f' + the fragment count, so no record nears the broker's 1 MB
// message limit. Restore assembles them; fragments are never stored.
const (
	changelogSet      = 's'
	changelogPart     = 'p'
	changelogFrags    = 'f'
	maxChangelogValue = 512 << 10
)

// fragmentKey is the changelog key of fragment i of key's value.
func fragmentKey(key []byte, i int) []byte {
	k := append(append(make([]byte, 0, len(key)+6), key...), 0xff, 'f')
	return binary.BigEndian.AppendUint32(k, uint32(i))
}

func markerKey(app string, part int32) []byte {
	return binary.BigEndian.AppendUint32(append(appPrefix(app), 'x', '/'), uint32(part))
}

func checkpointKey(app string, part int32) []byte {
	return binary.BigEndian.AppendUint32(append(appPrefix(app), 'k', '/'), uint32(part))
}

// loggedBatch is a commit batch whose changes also go to the changelog.
type loggedBatch struct {
	state.Batch
	t *task
}

func (b *loggedBatch) Set(key, value []byte) {
	b.Batch.Set(key, value)
	// Fragments stay under the changelog topic's record limit too.
	maxValue := min(maxChangelogValue, b.t.n.recordLimit(b.t.n.o.ChangelogTopic)-len(key)-64)
	if len(value) <= maxValue {
		v := make([]byte, 1+len(value))
		v[0] = changelogSet
		copy(v[1:], value)
		b.t.logChange(key, v)
		return
	}
	n := 0
	for off := 0; off < len(value); off += maxValue {
		part := value[off:min(off+maxValue, len(value))]
		v := make([]byte, 1+len(part))
		v[0] = changelogPart
		copy(v[1:], part)
		b.t.logChange(fragmentKey(key, n), v)
		n++
	}
	b.t.logChange(key, binary.BigEndian.AppendUint32([]byte{changelogFrags}, uint32(n)))
}

func (b *loggedBatch) Delete(key []byte) {
	b.Batch.Delete(key)
	b.t.logChange(key, nil)
}

// logChange writes one change of the current cycle to the changelog: in
// the cycle's transaction under exactly-once; at-least-once, it is kept
// with the cycle and written by the committer only once every other record
// of the cycle is acknowledged (see committer), so the changelog never
// holds a complete cycle whose outputs failed or were lost in a crash.
func (t *task) logChange(key, value []byte) {
	t.stats.ChangelogBytes += len(key) + len(value)
	r := &OutRecord{
		Topic: t.n.o.ChangelogTopic, Key: append([]byte(nil), key...), Value: value,
		Partition: t.part, ToPartition: true,
	}
	if t.txn {
		t.produceTo(r, nil)
		return
	}
	t.deferred = append(t.deferred, r)
}

// restoreProgress is what /readyz and the metrics show of a restore.
type restoreProgress struct {
	from, end, next int64
	bytes           int64
	started         time.Time
}

// RestoreStatus describes a partition that is restoring its state.
type RestoreStatus struct {
	Partition int32
	// Remaining is how many changelog records are left to read.
	Remaining int64
	Bytes     int64
	Elapsed   time.Duration
}

// Restoring lists the partitions restoring their state from the changelog.
func (n *Node) Restoring() []RestoreStatus {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []RestoreStatus
	for p, r := range n.restoring {
		rem := r.end - r.next
		if r.end < 0 {
			rem = -1
		}
		out = append(out, RestoreStatus{Partition: p, Remaining: rem, Bytes: r.bytes, Elapsed: time.Since(r.started)})
	}
	return out
}

// restore brings partition part's local state up to the changelog's end.
// It returns the keys of an unfinished cycle found at the end of the log,
// which the task's first commit writes again with their restored values,
// and, for a restore from offset 0, the chunks it wrote (for newTask).
//
// With a transactional writer (txn) the log holds committed transactions
// only, each ending on this partition with a marker and then the commit
// control record: a marker just before the end is the end.
func (n *Node) restore(ctx context.Context, part int32, txn bool) (unfinished [][]byte, chunks map[string][]chunkRef, err error) {
	if n.o.ChangelogReader == nil || n.o.ChangelogTopic == "" {
		return nil, nil, nil
	}
	n.stopStandby(part)
	from, err := n.checkpoint(part)
	if err != nil {
		return nil, nil, err
	}
	pr := &restoreProgress{from: from, end: -1, next: from, started: time.Now()}
	n.mu.Lock()
	n.restoring[part] = pr
	n.mu.Unlock()
	defer func() {
		n.mu.Lock()
		delete(n.restoring, part)
		n.mu.Unlock()
		n.o.Metrics.Restore(part, 0, 0)
	}()

	ap := n.newApplier(part)
	ap.quit, ap.group = ctx.Done(), true
	if from == 0 {
		ap.index = map[string]int64{} // the whole state comes from the log
	}
	defer ap.close()
	var reported int64
	lastReport := time.Now()
	err = n.o.ChangelogReader.Read(ctx, part, from,
		func(end int64) {
			n.mu.Lock()
			pr.end = end
			n.mu.Unlock()
		},
		func(off int64, key, value []byte) error {
			closed, err := ap.apply(off, key, value)
			if err != nil {
				return err
			}
			if closed && txn && pr.end >= 0 && off+2 >= pr.end {
				return ErrRestoreDone
			}
			if time.Since(lastReport) > 100*time.Millisecond {
				n.mu.Lock()
				pr.next, pr.bytes = off+1, ap.bytes
				rem := pr.end - pr.next
				n.mu.Unlock()
				n.o.Metrics.Restore(part, int(ap.bytes-reported), rem)
				reported, lastReport = ap.bytes, time.Now()
			}
			return nil
		})
	if err != nil {
		return nil, nil, fmt.Errorf("engine: restore partition %d: %w", part, err)
	}
	n.o.Metrics.Restore(part, int(ap.bytes-reported), 0)
	if err := ap.sync(); err != nil {
		return nil, nil, err
	}
	for k := range ap.tail {
		unfinished = append(unfinished, []byte(k))
	}
	more, err := n.checkRestored(part)
	if err != nil {
		return nil, nil, err
	}
	unfinished = append(unfinished, more...)
	if ap.index != nil && len(more) <= 1 { // nothing reset: the index holds
		chunks = ap.chunkIndex()
	}
	if ap.bytes > 0 {
		n.log.Info("partition state restored from the changelog", "partition", part, "from_offset", from,
			"bytes", ap.bytes, "unfinished_cycle_keys", len(unfinished), "elapsed", time.Since(pr.started).Round(time.Millisecond))
	}
	return unfinished, chunks, nil
}

// checkpoint returns the changelog offset partition part's local state
// reflects; without one the local state is wiped (it predates the
// changelog, or comes from a run without one) and restore starts at 0.
func (n *Node) checkpoint(part int32) (int64, error) {
	switch v, err := n.o.Store.Get(checkpointKey(n.plan.app.Name, part)); {
	case err == nil && len(v) == 8:
		return int64(binary.BigEndian.Uint64(v)), nil
	case err == nil || errors.Is(err, state.ErrNotFound):
		return 0, n.wipe(part)
	default:
		return 0, err
	}
}

// applier applies changelog records to the store, one cycle per batch.
type applier struct {
	n      *Node
	part   int32
	batch  state.Batch
	prefix []byte
	marker []byte
	ck     []byte
	tail   map[string]bool   // keys of the cycle not closed yet
	cur    int64             // bytes of the open cycle so far
	last   int64             // bytes of the last closed cycle: the next batch's preallocation
	frags  map[string][]byte // fragments read, by fragment key, until their value is assembled
	bytes  int64
	quit   <-chan struct{} // abandons a write waiting for disk space

	// group (restores) gathers closed cycles — the last value of each key
	// — and writes them together once pending bytes reach
	// restoreBatchBytes (and at sync): ingested as a file by a store that
	// can, else in one batch. The open cycle is staged apart until its
	// marker, so what is written only ever holds whole cycles.
	group   bool
	staged  []stagedOp
	closed  map[string][]byte // nil value: a delete
	pending int64
	// index (a restore from offset 0) follows the chunk keys written and
	// their sizes, so the task that takes the partition need not read
	// every chunk back to list them (loadBucket).
	index    map[string]int64
	chunkPfx [][]byte // the chunk prefixes of the partition's buckets
}

// stagedOp is a change of the open cycle (value nil: a delete).
type stagedOp struct{ key, value []byte }

// restoreBatchBytes is how many bytes of closed cycles a restore gathers
// before it writes them: one sorted file ingested (or one batch) instead of
// a batch per cycle, and each key written once however often the cycles
// rewrote it.
var restoreBatchBytes int64 = 32 << 20

// set stages or writes one change. A staged key and value are kept as
// they are (ChangelogReader.Read's stay valid).
func (ap *applier) set(key, value []byte, del bool) {
	switch {
	case !ap.group && del:
		ap.batch.Delete(key)
	case !ap.group:
		ap.batch.Set(key, value)
	case del:
		ap.staged = append(ap.staged, stagedOp{key: key})
	default:
		if value == nil {
			value = []byte{}
		}
		ap.staged = append(ap.staged, stagedOp{key: key, value: value})
	}
}

func (n *Node) newApplier(part int32) *applier {
	a := n.plan.app.Name
	return &applier{n: n, part: part, batch: n.o.Store.NewBatch(), prefix: appPrefix(a),
		marker: markerKey(a, part), ck: checkpointKey(a, part), tail: map[string]bool{}}
}

// apply adds one record to the current cycle; closed reports that the
// record was the cycle's marker and the cycle is committed (not synced).
func (ap *applier) apply(off int64, key, value []byte) (closed bool, err error) {
	if !bytes.HasPrefix(key, ap.prefix) {
		return false, nil // not this app's state (a shared topic)
	}
	ap.bytes += int64(len(key) + len(value))
	ap.cur += int64(len(key) + len(value))
	if bytes.Equal(key, ap.marker) {
		ver, seq, err := parseMarker(value)
		if err == nil && ver > FormatVersion {
			err = fmt.Errorf("%w: the changelog holds cycles in format version %d, and this binary reads versions up to %d: run a newer pheromone", ErrFormat, ver, FormatVersion)
		}
		if err != nil {
			return false, fmt.Errorf("engine: changelog partition %d offset %d: %w", ap.part, off, err)
		}
		// Version 1 is the only one yet: nothing of the cycle to convert.
		ap.set(key, binary.BigEndian.AppendUint64(nil, seq), false)
		return ap.closeCycle(off)
	}
	switch {
	case value == nil:
		ap.set(key, nil, true)
	case value[0] == changelogSet:
		ap.set(key, value[1:], false)
	case value[0] == changelogPart:
		if ap.frags == nil {
			ap.frags = map[string][]byte{}
		}
		ap.frags[string(key)] = append([]byte(nil), value[1:]...)
		return false, nil
	case value[0] == changelogFrags && len(value) == 5:
		n := int(binary.BigEndian.Uint32(value[1:]))
		var full []byte
		for i := 0; i < n; i++ {
			fk := string(fragmentKey(key, i))
			part, ok := ap.frags[fk]
			if !ok {
				return false, fmt.Errorf("engine: changelog partition %d offset %d: fragment %d of %d of a value is missing", ap.part, off, i, n)
			}
			full = append(full, part...)
			delete(ap.frags, fk)
		}
		ap.set(key, full, false)
	default:
		return false, fmt.Errorf("engine: changelog partition %d offset %d: unknown record format %q", ap.part, off, value[0])
	}
	ap.tail[string(key)] = true
	return false, nil
}

// closeCycle commits the cycle its marker at offset off closed.
func (ap *applier) closeCycle(off int64) (closed bool, err error) {
	ck := binary.BigEndian.AppendUint64(nil, uint64(off+1))
	ap.last, ap.cur = max(ap.cur, ap.last/2), 0
	clear(ap.tail)
	if !ap.group {
		ap.batch.Set(ap.ck, ck)
		return true, ap.commit()
	}
	if ap.closed == nil {
		ap.closed = map[string][]byte{}
	}
	for i, op := range ap.staged {
		ap.closed[string(op.key)] = op.value // a delete stays nil
		if ap.index != nil && ap.isChunkKey(op.key) {
			if op.value == nil {
				delete(ap.index, string(op.key))
			} else {
				ap.index[string(op.key)] = int64(len(op.value))
			}
		}
		ap.pending += int64(len(op.key) + len(op.value))
		ap.staged[i] = stagedOp{}
	}
	ap.staged = ap.staged[:0]
	ap.closed[string(ap.ck)] = ck
	if ap.pending < restoreBatchBytes {
		return true, nil
	}
	return true, ap.commit()
}

// commit writes the closed cycles (not synced): the batch, or what group
// gathered.
func (ap *applier) commit() error {
	if !ap.n.space.wait(ap.quit) {
		return context.Canceled
	}
	if ap.group {
		if ing, ok := ap.n.o.Store.(state.Ingester); ok && ap.pending >= restoreBatchBytes/4 {
			kvs := make([]state.KV, 0, len(ap.closed))
			for k, v := range ap.closed {
				kvs = append(kvs, state.KV{Key: []byte(k), Value: v})
			}
			slices.SortFunc(kvs, func(a, b state.KV) int { return bytes.Compare(a.Key, b.Key) })
			if err := ing.Ingest(kvs); err != nil {
				return err
			}
			clear(ap.closed)
			ap.pending = 0
			return nil
		}
		for k, v := range ap.closed {
			if v == nil {
				ap.batch.Delete([]byte(k))
			} else {
				ap.batch.Set([]byte(k), v)
			}
		}
		clear(ap.closed)
	}
	if err := ap.batch.Commit(false); err != nil {
		return err
	}
	ap.pending = 0
	ap.batch = ap.newBatch()
	return nil
}

// newBatch starts a batch for the next cycle, preallocated for about as
// many bytes as recent cycles had (growing a batch copies it).
func (ap *applier) newBatch() state.Batch {
	size := ap.last + ap.last/4
	if sb, ok := ap.n.o.Store.(state.SizedBatcher); ok && size > 64<<10 {
		return sb.NewBatchSized(int(size))
	}
	return ap.n.o.Store.NewBatch()
}

// sync makes every closed cycle durable; the open one is dropped.
func (ap *applier) sync() error {
	if len(ap.closed) > 0 {
		if err := ap.commit(); err != nil {
			return err
		}
	}
	ap.staged = ap.staged[:0]
	ap.batch.Close()
	ap.batch = ap.n.o.Store.NewBatch()
	if v, err := ap.n.o.Store.Get(ap.ck); err == nil {
		ap.batch.Set(ap.ck, v)
	}
	err := ap.batch.Commit(!ap.n.o.NoSync)
	ap.batch = ap.n.o.Store.NewBatch()
	return err
}

func (ap *applier) close() { ap.batch.Close() }

// wipe deletes every local state key of partition part.
func (n *Node) wipe(part int32) error {
	a := n.plan.app
	st := n.o.Store
	batch := st.NewBatch()
	defer batch.Close()
	del := func(prefix []byte) error {
		return st.Scan(prefix, func(k, _ []byte) error {
			batch.Delete(k)
			return nil
		})
	}
	for topic := range n.plan.sources {
		batch.Delete(offsetKey(a.Name, topic, part))
	}
	for _, b := range a.Buckets {
		if err := del(bucketPrefix(a.Name, b.Name, part)); err != nil {
			return err
		}
	}
	for _, s := range a.Sinks {
		if s.Kind == "table" {
			if err := del(binary.BigEndian.AppendUint32(tablePrefix(a.Name, s.Name), uint32(part))); err != nil {
				return err
			}
		}
	}
	batch.Delete(markerKey(a.Name, part))
	batch.Delete(partAppKey(a.Name, part))
	if batch.Len() == 0 {
		return nil
	}
	return batch.Commit(!n.o.NoSync)
}

// producerWriter is the at-least-once PartitionWriter over a shared Producer.
type producerWriter struct{ p Producer }

func (w producerWriter) Produce(r *OutRecord, done func(int64, error)) {
	w.p.Produce(r, func(err error) { done(-1, err) })
}
func (producerWriter) Commit(context.Context) error { return nil }
func (producerWriter) Close()                       {}

// chunkRef is a chunk a restore wrote: its range and size.
type chunkRef struct {
	first, end uint64
	bytes      int64
}

// isChunkKey reports whether key is a chunk key of one of the app's
// buckets in the applier's partition.
func (ap *applier) isChunkKey(key []byte) bool {
	if ap.chunkPfx == nil {
		for name := range ap.n.plan.buckets {
			ap.chunkPfx = append(ap.chunkPfx, chunkPrefix(bucketPrefix(ap.n.plan.app.Name, name, ap.part)))
		}
	}
	for _, cp := range ap.chunkPfx {
		if len(key) == len(cp)+16 && bytes.HasPrefix(key, cp) {
			return true
		}
	}
	return false
}

// chunkIndex lists the chunks the restore wrote, by bucket chunk prefix,
// in key (sequence) order.
func (ap *applier) chunkIndex() map[string][]chunkRef {
	out := map[string][]chunkRef{}
	for k, size := range ap.index {
		first, end := ChunkRange([]byte(k))
		p := k[:len(k)-16]
		out[p] = append(out[p], chunkRef{first: first, end: end, bytes: size})
	}
	for _, refs := range out {
		slices.SortFunc(refs, func(a, b chunkRef) int { return cmp.Compare(a.first, b.first) })
	}
	return out
}
