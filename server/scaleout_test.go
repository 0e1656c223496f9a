package server

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/pheromone-go/pheromone/connectors/kafka"
	"github.com/pheromone-go/pheromone/engine"
	"github.com/pheromone-go/pheromone/engine/app"
)

// wordstream drives examples/wordstream: it produces lines of random words
// keyed by a line id and keeps the expected word totals.
type wordstream struct {
	t       *testing.T
	brokers []string
	rnd     *rand.Rand
	vocab   []string
	total   map[string]int
	next    int
}

func newWordstream(t *testing.T, brokers []string) *wordstream {
	return &wordstream{t: t, brokers: brokers, rnd: rand.New(rand.NewPCG(1, 2)), total: map[string]int{},
		vocab: strings.Fields("the quick brown fox jumps over lazy dog pheromone bucket trigger arrow kafka pebble node")}
}

// lines produces n lines (keyed by id, so they spread over the partitions).
func (w *wordstream) lines(n int) {
	w.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(w.brokers...))
	if err != nil {
		w.t.Fatal(err)
	}
	defer cl.Close()
	var recs []*kgo.Record
	for i := 0; i < n; i++ {
		var words []string
		for k := 0; k < 1+w.rnd.IntN(8); k++ {
			word := w.vocab[w.rnd.IntN(len(w.vocab))]
			words = append(words, word)
			w.total[word]++
		}
		id := fmt.Sprint(w.next)
		w.next++
		v, _ := json.Marshal(map[string]string{"id": id, "text": strings.Join(words, " ")})
		recs = append(recs, &kgo.Record{Topic: "lines", Key: []byte(id), Value: v})
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		w.t.Fatal(err)
	}
}

// want is the exact output so far: one {"word","count":10} per 10
// occurrences of a word.
func (w *wordstream) want() []string {
	var out []string
	for word, n := range w.total {
		for i := 0; i < n/10; i++ {
			out = append(out, fmt.Sprintf(`{"word":%q,"count":10}`, word))
		}
	}
	sort.Strings(out)
	return out
}

// committedReader reads a topic with read_committed from the start.
type committedReader struct {
	cl  *kgo.Client
	got []string
}

func newCommittedReader(t *testing.T, brokers []string, topic string) *committedReader {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(50*time.Millisecond),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return &committedReader{cl: cl}
}

// until reads until it holds want records, then for settle more to catch
// duplicates, and compares the sorted values with want.
func (r *committedReader) until(t *testing.T, what string, want []string, settle time.Duration) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for len(r.got) < len(want) && time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		r.cl.PollFetches(ctx).EachRecord(func(rec *kgo.Record) { r.got = append(r.got, string(rec.Value)) })
		cancel()
	}
	ctx, cancel := context.WithTimeout(context.Background(), settle)
	for ctx.Err() == nil {
		r.cl.PollFetches(ctx).EachRecord(func(rec *kgo.Record) { r.got = append(r.got, string(rec.Value)) })
	}
	cancel()
	equalLines(t, what, sorted(r.got), want)
}

// pendingOf asks node (any node) for the objects of word the words bucket
// still holds; the query is routed to the node that owns the word.
func pendingOf(t *testing.T, node *runningNode, word string) (held int64, servedBy string) {
	t.Helper()
	resp, err := http.Get("http://" + node.info.HTTPAddr + "/v1/apps/wordstream/buckets/words?key=" + word)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v engine.BucketView
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("query %s: %s", word, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatal(err)
	}
	if len(v.Partitions) != 1 {
		t.Fatalf("query %s: want the one partition that owns it, got %d", word, len(v.Partitions))
	}
	return int64(len(v.Partitions[0].Objects)), resp.Header.Get("Pheromone-Served-By")
}

// tableRows asks node for key's rows of a table sink (routed to the owner).
func tableRows(t *testing.T, node *runningNode, table, key string) []string {
	t.Helper()
	resp, err := http.Get("http://" + node.info.HTTPAddr + "/v1/apps/wordstream/tables/" + table + "?key=" + key)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v struct {
		Rows []engine.TableRow `json:"rows"`
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("table query %s: %s", key, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range v.Rows {
		out = append(out, string(r.Row))
	}
	return out
}

// TestScaleOut runs examples/wordstream (split → repartition by
// word → by_batch_size 10 → count) on two nodes, stops one (its partitions
// move to the other, which restores their state from the changelog), then
// adds a third node with an empty data dir. After each phase the output
// read with read_committed is exactly one record per 10 occurrences of
// each word — nothing lost, nothing twice — and every node answers a
// query for any word with the remainder, routed to the word's owner.
// Graceful leaves write no duplicates under at_least_once either; crashes
// are covered by the process test in cmd/pheromone. The incremental run
// keeps each word's running count instead of its objects (so its queries
// have no objects to list): the partials move with their partitions.
func TestScaleOut(t *testing.T) {
	raw, err := os.ReadFile("../examples/wordstream/app.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range []string{"exactly_once", "at_least_once", "exactly_once, incremental"} {
		t.Run(g, func(t *testing.T) {
			guarantee, folded := strings.CutSuffix(g, ", incremental")
			yaml := strings.Replace(string(raw), "guarantee: exactly_once", "guarantee: "+guarantee, 1)
			if yaml == string(raw) && guarantee != "exactly_once" {
				t.Fatal("example app changed: guarantee line not found")
			}
			if folded {
				if yaml = strings.Replace(yaml, "function: count, incremental: false}", "function: count}", 1); strings.Contains(yaml, "function: count, incremental") {
					t.Fatal("example app changed: incremental line not found")
				}
			}
			testScaleOut(t, yaml, folded)
		})
	}
}

func testScaleOut(t *testing.T, yaml string, folded bool) {
	brokers := cluster(t)
	ws := newWordstream(t, brokers)
	out := newCommittedReader(t, brokers, "word-tens")

	a := startNode(t, yaml, brokers, nil, t.TempDir())
	b := startNode(t, yaml, brokers, nil, t.TempDir())
	waitFor(t, 30*time.Second, "two nodes share the 4 partitions", func() bool {
		return len(a.info.Node.Partitions())+len(b.info.Node.Partitions()) == 4 && len(a.info.Node.Partitions()) > 0 && len(b.info.Node.Partitions()) > 0
	})
	ws.lines(300)
	out.until(t, "two nodes", ws.want(), 300*time.Millisecond)

	checkQueries := func(phase string, nodes ...*runningNode) {
		t.Helper()
		remote := 0
		for i, word := range ws.vocab {
			node := nodes[i%len(nodes)]
			held, by := pendingOf(t, node, word)
			if want := int64(ws.total[word] % 10); folded {
				if held != 0 {
					t.Errorf("%s: %q held %d objects, want none (its count is folded)", phase, word, held)
				}
			} else if held != want {
				t.Errorf("%s: %q held %d objects, want %d (of %d)", phase, word, held, ws.total[word]%10, ws.total[word])
			}
			if by != "" {
				remote++
			}
			// The table sink, routed the same way: the latest ten of the word.
			rows := tableRows(t, node, "tens_seen", word)
			switch {
			case ws.total[word] >= 10 && (len(rows) != 1 || rows[0] != fmt.Sprintf(`{"word":%q,"count":10}`, word)):
				t.Errorf("%s: table row of %q = %q, want its latest ten", phase, word, rows)
			case ws.total[word] < 10 && len(rows) != 0:
				t.Errorf("%s: table row of %q = %q, want none", phase, word, rows)
			}
		}
		if len(nodes) > 1 && remote == 0 {
			t.Errorf("%s: no query was routed to another node", phase)
		}
	}
	checkQueries("two nodes", a, b)

	// B leaves: A takes its partitions over and restores them from the
	// changelog (A's data dir never held them).
	if err := b.stop(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "node A owns all partitions", func() bool { return len(a.info.Node.Partitions()) == 4 })
	ws.lines(300)
	out.until(t, "after B left", ws.want(), 300*time.Millisecond)
	checkQueries("after B left", a)

	// C joins with an empty data dir and takes partitions from A.
	c := startNode(t, yaml, brokers, nil, t.TempDir())
	waitFor(t, 30*time.Second, "node C owns partitions", func() bool {
		return len(c.info.Node.Partitions()) > 0 && len(a.info.Node.Partitions())+len(c.info.Node.Partitions()) == 4
	})
	ws.lines(300)
	out.until(t, "after C joined", ws.want(), 300*time.Millisecond)
	checkQueries("after C joined", a, c)
}

// TestAbortedTransactionRestartsTask makes the broker refuse one
// transaction commit (the 4th EndTxn with commit=true answers
// INVALID_TXN_STATE). The task must abort that transaction, restart from its
// last commit — state restored, source rewound — and redo the work, so the
// read_committed output is still exactly the expected word tens, and the
// node keeps running.
func TestAbortedTransactionRestartsTask(t *testing.T) {
	raw, err := os.ReadFile("../examples/wordstream/app.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	var commits, refused atomic.Int32
	c.ControlKey(kmsg.EndTxn.Int16(), func(req kmsg.Request) (kmsg.Response, error, bool) {
		r := req.(*kmsg.EndTxnRequest)
		if !r.Commit || commits.Add(1) != 4 {
			return nil, nil, false
		}
		refused.Add(1)
		c.KeepControl() // keep counting the later commits
		resp := r.ResponseKind().(*kmsg.EndTxnResponse)
		resp.ErrorCode = kerr.InvalidTxnState.Code
		return resp, nil, true
	})
	brokers := c.ListenAddrs()
	ws := newWordstream(t, brokers)
	out := newCommittedReader(t, brokers, "word-tens")
	n := startNode(t, string(raw), brokers, nil, t.TempDir())
	for i := 0; i < 6; i++ {
		ws.lines(50)
		waitFor(t, 30*time.Second, "a transaction commit", func() bool { return commits.Load() > int32(i) })
	}
	out.until(t, "after a refused commit", ws.want(), 500*time.Millisecond)
	if refused.Load() != 1 {
		t.Fatalf("the broker refused %d commits, want 1 (the test did not exercise the abort)", refused.Load())
	}
	if got := len(n.info.Node.Partitions()); got != 4 {
		t.Errorf("node runs %d partitions after the restart, want 4", got)
	}
	for _, word := range ws.vocab {
		if held, _ := pendingOf(t, n, word); held != int64(ws.total[word]%10) {
			t.Errorf("%q: %d objects held, want %d", word, held, ws.total[word]%10)
		}
	}
}

// changelogBytes sums key and value bytes of partition part of topic.
func changelogBytes(t *testing.T, brokers []string, topic string, part int32) int64 {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {part: kgo.NewOffset().AtStart()}}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.FetchMaxWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var n int64
	for idle := 0; idle < 3; {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		got := 0
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) { n += int64(len(r.Key) + len(r.Value)); got++ })
		cancel()
		if got == 0 {
			idle++
		}
	}
	return n
}

// TestStandbyReplicaTakesOverWarm runs two nodes with standby_replicas: 1.
// Each keeps a copy of the other's partitions; when B leaves, A takes B's
// partitions over reading only the tail of their changelog (its standby
// copy is current), and the output stays exact.
func TestStandbyReplicaTakesOverWarm(t *testing.T) {
	raw, err := os.ReadFile("../examples/wordstream/app.yaml")
	if err != nil {
		t.Fatal(err)
	}
	yaml := strings.Replace(string(raw), "commit_interval: 100ms", "commit_interval: 100ms\n  standby_replicas: 1", 1)
	brokers := cluster(t)
	ws := newWordstream(t, brokers)
	out := newCommittedReader(t, brokers, "word-tens")
	a := startNode(t, yaml, brokers, nil, t.TempDir())
	b := startNode(t, yaml, brokers, nil, t.TempDir())
	waitFor(t, 30*time.Second, "each node a standby of the other's partitions", func() bool {
		pa, pb := a.info.Node.Partitions(), b.info.Node.Partitions()
		return len(pa) > 0 && len(pb) > 0 && len(pa)+len(pb) == 4 &&
			fmt.Sprint(a.info.Node.Standbys()) == fmt.Sprint(pb) && fmt.Sprint(b.info.Node.Standbys()) == fmt.Sprint(pa)
	})
	ws.lines(600)
	out.until(t, "two nodes", ws.want(), 300*time.Millisecond)
	moved := b.info.Node.Partitions()
	if err := b.stop(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "node A owns all partitions", func() bool { return len(a.info.Node.Partitions()) == 4 })
	for _, p := range moved {
		total := changelogBytes(t, brokers, "wordstream.changelog", p)
		v := scrape(t, a.info.HTTPAddr, fmt.Sprintf(`pheromone_restored_bytes_total{app="wordstream",partition="%d"}`, p))
		restored, _ := strconv.ParseFloat(v, 64)
		if v == "absent" || restored > float64(total)/2 {
			t.Errorf("partition %d: restored %s bytes on takeover of a %d-byte changelog; the standby copy should have had most of it", p, v, total)
		}
	}
	ws.lines(300)
	out.until(t, "after B left", ws.want(), 300*time.Millisecond)
	for _, word := range ws.vocab {
		if held, _ := pendingOf(t, a, word); held != int64(ws.total[word]%10) {
			t.Errorf("%q: %d objects held, want %d", word, held, ws.total[word]%10)
		}
	}
}

// TestChangelogWithWrongPartitionCountIsRefused pins that a node does not
// start when the changelog exists with another partition count than the
// sources (some partitions could not be restored): the error names it.
func TestChangelogWithWrongPartitionCountIsRefused(t *testing.T) {
	raw, err := os.ReadFile("../examples/wordstream/app.yaml")
	if err != nil {
		t.Fatal(err)
	}
	a, err := app.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Validate(); err != nil {
		t.Fatal(err)
	}
	brokers := cluster(t)
	if err := kafka.EnsureCompactedTopics(context.Background(), kafka.Plain(brokers...), map[string]int{"wordstream.changelog": 1}); err != nil {
		t.Fatal(err)
	}
	err = Run(context.Background(), a, DataDir(t.TempDir()), Brokers(brokers...))
	if err == nil || !strings.Contains(err.Error(), "topic wordstream.changelog has 1 partitions, the app's sources have 4") {
		t.Fatalf("Run = %v, want the changelog partition count refused", err)
	}
}
