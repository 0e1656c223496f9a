package server

import (
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/pheromone-go/pheromone/engine"
)

// TestWordCountMatchesPlainGo runs examples/wordcount (split -> shuffle by
// dynamic_group -> count) for two interleaved jobs of 3 mappers each and
// compares the result with a plain Go word count of the same text.
func TestWordCountMatchesPlainGo(t *testing.T) {
	raw, err := os.ReadFile("../examples/wordcount/app.yaml")
	if err != nil {
		t.Fatal(err)
	}
	brokers := cluster(t)
	startNode(t, string(raw), brokers, engine.NewManualClock(time.Unix(0, 0)), t.TempDir())

	vocab := strings.Fields("the quick brown fox jumps over lazy dog pheromone bucket trigger arrow kafka pebble")
	rnd := rand.New(rand.NewPCG(7, 7))
	want := map[string]map[string]int{}
	var records []string
	for _, job := range []string{"j1", "j2"} {
		want[job] = map[string]int{}
	}
	// Mappers of both jobs write interleaved; each ends with its marker.
	for line := 0; line < 60; line++ {
		job := []string{"j1", "j2"}[line%2]
		mapper := fmt.Sprintf("m%d", line%3+1)
		var words []string
		for k := 0; k < 1+rnd.IntN(12); k++ {
			words = append(words, vocab[rnd.IntN(len(vocab))])
		}
		text := strings.Join(words, "  ")
		for _, w := range strings.Fields(text) {
			want[job][w]++
		}
		records = append(records, fmt.Sprintf(`{"job":%q,"mapper":%q,"key":"line","text":%q}`, job, mapper, text))
	}
	for _, job := range []string{"j2", "j1"} {
		for m := 1; m <= 3; m++ {
			records = append(records, fmt.Sprintf(`{"job":%q,"mapper":"m%d","key":"_done"}`, job, m))
		}
	}
	produce(t, brokers, "lines", 0, records...)

	var wantLines []string
	for job, counts := range want {
		for w, c := range counts {
			wantLines = append(wantLines, fmt.Sprintf(`{"job":%q,"word":%q,"count":%d}`, job, w, c))
		}
	}
	sort.Strings(wantLines)
	got := consume(t, brokers, "word-counts", len(wantLines), 300*time.Millisecond)
	equalLines(t, "word counts", sorted(values(got)), wantLines)
	for _, r := range got {
		var w string
		fmt.Sscanf(strings.SplitN(string(r.Value), `"word":`, 2)[1], "%q", &w)
		if string(r.Key) != w {
			t.Errorf("record %s keyed %q", r.Value, r.Key)
		}
	}
}

// TestWordCountShuffleAcrossNodes runs examples/wordcount scaled out: the
// lines topic has 4 partitions (one per mapper's lines), the words bucket is
// partition_by: word, and two nodes share the partitions. Every word's
// objects meet on the partition that owns it; each mapper's end-of-stage
// marker is broadcast to every partition after that mapper's words, so each
// partition's dynamic_group releases its groups once all 3 markers of a job
// arrived. The counts equal a plain Go word count.
func TestWordCountShuffleAcrossNodes(t *testing.T) {
	raw, err := os.ReadFile("../examples/wordcount/app.yaml")
	if err != nil {
		t.Fatal(err)
	}
	yaml := strings.Replace(string(raw), "partitions: 1 ", "partitions: 4 ", 1)
	yaml = strings.Replace(yaml, "{name: words, key: key, session: job}", "{name: words, key: key, session: job, partition_by: word}", 1)
	if !strings.Contains(yaml, "partition_by: word") || !strings.Contains(yaml, "partitions: 4") {
		t.Fatal("examples/wordcount changed: could not scale it out")
	}
	brokers := cluster(t)
	a := startNode(t, yaml, brokers, nil, t.TempDir())
	b := startNode(t, yaml, brokers, nil, t.TempDir())
	waitFor(t, 30*time.Second, "two nodes share the partitions", func() bool {
		pa, pb := len(a.info.Node.Partitions()), len(b.info.Node.Partitions())
		return pa > 0 && pb > 0 && pa+pb == 4
	})
	vocab := strings.Fields("the quick brown fox jumps over lazy dog pheromone bucket trigger arrow kafka pebble")
	rnd := rand.New(rand.NewPCG(9, 9))
	want := map[string]map[string]int{"j1": {}, "j2": {}}
	byMapper := map[int][]string{}
	for line := 0; line < 120; line++ {
		job := []string{"j1", "j2"}[line%2]
		m := line%3 + 1
		var words []string
		for k := 0; k < 1+rnd.IntN(12); k++ {
			words = append(words, vocab[rnd.IntN(len(vocab))])
		}
		for _, w := range words {
			want[job][w]++
		}
		byMapper[m] = append(byMapper[m], fmt.Sprintf(`{"job":%q,"mapper":"m%d","key":"line","text":%q}`, job, m, strings.Join(words, " ")))
	}
	// A mapper's lines and then its markers share a partition (its own).
	for m := 1; m <= 3; m++ {
		recs := byMapper[m]
		for _, job := range []string{"j1", "j2"} {
			recs = append(recs, fmt.Sprintf(`{"job":%q,"mapper":"m%d","key":"_done"}`, job, m))
		}
		produce(t, brokers, "lines", int32(m), recs...)
	}
	var wantLines []string
	for job, counts := range want {
		for w, c := range counts {
			wantLines = append(wantLines, fmt.Sprintf(`{"job":%q,"word":%q,"count":%d}`, job, w, c))
		}
	}
	sort.Strings(wantLines)
	got := consume(t, brokers, "word-counts", len(wantLines), 500*time.Millisecond)
	equalLines(t, "word counts across nodes", sorted(values(got)), wantLines)
}
