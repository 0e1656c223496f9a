package engine

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/pheromone-go/pheromone/engine/app"
	"github.com/pheromone-go/pheromone/state/pebblestore"
)

// BenchmarkRestoreApply applies changelog cycles (20 objects of 1 KB and a
// marker each, as a bucket of large objects writes them) into a Pebble
// store, as a restore does after reading them: the rate to compare with a
// raw read of the changelog (benchmarks/scaleout).
func BenchmarkRestoreApply(b *testing.B) {
	st, err := pebblestore.Open(b.TempDir(), pebblestore.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	n := &Node{o: Options{Store: st}, plan: &plan{app: &app.App{Name: "r"}}, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ap := n.newApplier(0)
	ap.group = true
	defer ap.close()
	value := append([]byte{changelogSet}, make([]byte, 1024)...)
	prefix := bucketPrefix("r", "b", 0)
	const perCycle = 20
	b.SetBytes(int64(perCycle * (len(value) + len(chunkKey(prefix, 0, 1)))))
	b.ReportAllocs()
	off := int64(0)
	for i := 0; i < b.N; i++ {
		for j := 0; j < perCycle; j++ {
			seq := uint64(i*perCycle + j)
			v := bytes.Clone(value) // a reader's records are not reused
			binary.BigEndian.PutUint64(v[1:], seq)
			if _, err := ap.apply(off, chunkKey(prefix, seq, seq+1), v); err != nil {
				b.Fatal(err)
			}
			off++
		}
		if _, err := ap.apply(off, markerKey("r", 0), markerValue(uint64(i))); err != nil {
			b.Fatal(err)
		}
		off++
	}
	if err := ap.sync(); err != nil {
		b.Fatal(err)
	}
}

// TestGroupedRestoreMatchesPerCycle: a restore that gathers cycles and
// ingests them as files (with a small threshold here, so it ingests many)
// leaves exactly the state a cycle-by-cycle apply leaves — overwrites,
// deletes of keys written by earlier files, an unfinished last cycle.
func TestGroupedRestoreMatchesPerCycle(t *testing.T) {
	defer func(n int64) { restoreBatchBytes = n }(restoreBatchBytes)
	restoreBatchBytes = 4 << 10
	rnd := rand.New(rand.NewPCG(16, 3))
	type rec struct{ key, value []byte }
	var log []rec
	prefix := bucketPrefix("r", "b", 0)
	for c := 0; c < 300; c++ {
		for j := rnd.IntN(12); j >= 0; j-- {
			k := chunkKey(prefix, uint64(rnd.IntN(200)), 0)
			var v []byte
			if rnd.IntN(4) > 0 {
				v = append([]byte{changelogSet}, bytes.Repeat([]byte{byte(c)}, rnd.IntN(300))...)
			}
			log = append(log, rec{k, v})
		}
		log = append(log, rec{markerKey("r", 0), markerValue(uint64(c))})
	}
	log = append(log, rec{chunkKey(prefix, 9999, 0), []byte{changelogSet, 1}}) // unfinished
	dump := func(group bool) string {
		st, err := pebblestore.Open(t.TempDir(), pebblestore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		n := &Node{o: Options{Store: st}, plan: &plan{app: &app.App{Name: "r"}, buckets: map[string]*bucketPlan{"b": {}}},
			log: slog.New(slog.NewTextHandler(io.Discard, nil))}
		ap := n.newApplier(0)
		ap.group = group
		if group {
			ap.index = map[string]int64{}
		}
		defer ap.close()
		for off, r := range log {
			if _, err := ap.apply(int64(off), r.key, r.value); err != nil {
				t.Fatal(err)
			}
		}
		if err := ap.sync(); err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		var scanned []chunkRef
		if err := st.Scan([]byte("a/r/"), func(k, v []byte) error {
			fmt.Fprintf(&b, "%x=%x\n", k, v)
			if bytes.HasPrefix(k, chunkPrefix(prefix)) {
				first, end := ChunkRange(k)
				scanned = append(scanned, chunkRef{first: first, end: end, bytes: int64(len(v))})
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		// The chunk list the restore hands the task is what a scan finds.
		if idx := ap.chunkIndex()[string(chunkPrefix(prefix))]; group && fmt.Sprint(idx) != fmt.Sprint(scanned) {
			t.Errorf("chunk index %v, scan %v", idx, scanned)
		}
		return b.String()
	}
	per, grouped := dump(false), dump(true)
	if per != grouped {
		t.Fatalf("grouped restore differs:\n%s\nper cycle:\n%s", grouped, per)
	}
	if strings.Count(per, "\n") < 50 {
		t.Fatalf("only %d keys: the log does not exercise much", strings.Count(per, "\n"))
	}
}
