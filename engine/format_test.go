package engine_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pheromone-go/pheromone/engine"
	"github.com/pheromone-go/pheromone/state/pebblestore"
)

const golden1 = "testdata/changelog-format1.txt"

// TestChangelogOfFormat1StaysReadable keeps state written by format
// version 1 readable by every later version: the changelog of partition 0
// of fivesApp after records 0..6 (one batch of five fired, objects 5 and 6
// pending in the bucket and the trigger) is restored into an empty data
// dir, and the node goes on from it: records 7..9 complete the batch 5..9.
// PHEROMONE_UPDATE_GOLDEN=1 writes the file again (only while the format
// is still version 1).
func TestChangelogOfFormat1StaysReadable(t *testing.T) {
	a := parseApp(t, fivesApp)
	if os.Getenv("PHEROMONE_UPDATE_GOLDEN") != "" {
		if engine.FormatVersion != 1 {
			t.Fatalf("the golden file is of format 1; this engine writes %d", engine.FormatVersion)
		}
		writeGolden1(t)
	}
	brokers, o := changelogBroker(t, a)
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	f, err := os.Open(golden1)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	n := 0
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), " ")
		key, err1 := hex.DecodeString(k)
		val, err2 := hex.DecodeString(v)
		if err1 != nil || err2 != nil {
			t.Fatalf("line %d: %v %v", n+1, err1, err2)
		}
		if v == "-" {
			val = nil
		}
		if err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: a.Kafka.ChangelogTopic, Partition: 0, Key: key, Value: val}).FirstErr(); err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n < 5 {
		t.Fatalf("the golden changelog has %d records", n)
	}
	fx := start(t, a, t.TempDir(), brokers, o)
	if err := fx.node.Assign([]engine.TopicPartition{p0}); err != nil {
		t.Fatal(err)
	}
	if got := fx.node.Committed()[p0]; got != 7 {
		t.Fatalf("restored offset %d, want 7", got)
	}
	if err := fx.node.Deliver(context.Background(), "in", 0, records(7, 10), -1); err != nil {
		t.Fatal(err)
	}
	waitCommitted(t, fx.node, 10)
	fx.stop()
	if out := readAll(t, brokers, "out", 1); len(out) != 1 || out[0] != `{"lo":5,"hi":9}` {
		t.Fatalf("outputs after the restore %q, want the batch 5..9", out)
	}
}

// writeGolden1 runs fivesApp over records 0..6 and writes partition 0 of
// its changelog to the golden file, a record per line: key and value in
// hex ("-" for a tombstone).
func writeGolden1(t *testing.T) {
	a := parseApp(t, fivesApp)
	brokers, o := changelogBroker(t, a)
	fx := start(t, a, t.TempDir(), brokers, o)
	if err := fx.node.Assign([]engine.TopicPartition{p0}); err != nil {
		t.Fatal(err)
	}
	if err := fx.node.Deliver(context.Background(), "in", 0, records(0, 7), -1); err != nil {
		t.Fatal(err)
	}
	waitCommitted(t, fx.node, 7)
	fx.stop()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(a.Kafka.ChangelogTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var b strings.Builder
	for idle := 0; idle < 3; {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		fs := cl.PollFetches(ctx)
		cancel()
		got := 0
		fs.EachRecord(func(r *kgo.Record) {
			if r.Partition != 0 {
				return
			}
			got++
			v := hex.EncodeToString(r.Value)
			if r.Value == nil {
				v = "-"
			}
			fmt.Fprintf(&b, "%s %s\n", hex.EncodeToString(r.Key), v)
		})
		if got == 0 {
			idle++
		}
	}
	if err := os.MkdirAll(filepath.Dir(golden1), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(golden1, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestLaterFormatIsRefused: a data dir or a changelog written by a later
// format version than this binary reads is refused with a message naming
// both versions, never read as if it were this one.
func TestLaterFormatIsRefused(t *testing.T) {
	a := parseApp(t, fivesApp)
	dir := t.TempDir()
	st, err := pebblestore.Open(dir, pebblestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	b := st.NewBatch()
	b.Set([]byte("a/fives/v"), binary.AppendUvarint(nil, engine.FormatVersion+98))
	if err := b.Commit(true); err != nil {
		t.Fatal(err)
	}
	_, err = engine.New(engine.Options{App: a, Store: st,
		Writers: func(int32) (engine.PartitionWriter, error) { return nil, errors.New("no writer needed") }})
	st.Close()
	want := fmt.Sprintf("format version %d, and this binary reads versions up to %d", engine.FormatVersion+98, engine.FormatVersion)
	if !errors.Is(err, engine.ErrFormat) || !strings.Contains(err.Error(), want) {
		t.Fatalf("New on a later data dir: %v", err)
	}

	// A changelog cycle of a later version: the restore stops there.
	brokers, o := changelogBroker(t, a)
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	marker := binary.AppendUvarint([]byte{'m'}, engine.FormatVersion+1)
	marker = binary.BigEndian.AppendUint64(marker, 1)
	if err := cl.ProduceSync(context.Background(),
		&kgo.Record{Topic: a.Kafka.ChangelogTopic, Partition: 0, Key: []byte("a/fives/o/in\x00\x00\x00\x00\x00"), Value: []byte("s\x00\x00\x00\x00\x00\x00\x00\x05")},
		&kgo.Record{Topic: a.Kafka.ChangelogTopic, Partition: 0, Key: []byte("a/fives/x/\x00\x00\x00\x00"), Value: marker}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	fx := start(t, a, t.TempDir(), brokers, o)
	err = fx.node.Assign([]engine.TopicPartition{p0})
	want = fmt.Sprintf("format version %d, and this binary reads versions up to %d", engine.FormatVersion+1, engine.FormatVersion)
	if !errors.Is(err, engine.ErrFormat) || !strings.Contains(err.Error(), want) {
		t.Fatalf("restore of a later changelog: %v", err)
	}
}
