package cli

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
	raw, err := os.ReadFile("../../../examples/wordcount/app.yaml")
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
