package server

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pheromone-go/pheromone/engine"
)

const consoleYAML = `
app: cons
sources: [{name: in, topic: in, partitions: 2, schema: [{name: id, type: int64}, {name: user, type: string}], key: user, bucket: in}]
buckets: [{name: in}, {name: kept}]
triggers:
  - {name: each, bucket: in, primitive: immediate, function: keep}
  - {name: fives, bucket: kept, primitive: by_batch_size, count: 5, function: count}
functions:
  - {name: keep, kind: filter, expr: "id >= 0", outputs: [kept, out]}
  - {name: count, kind: aggregate, aggregates: [{name: n, op: count}], outputs: [counts]}
sinks:
  - {name: out, topic: out, partitions: 2}
  - {name: counts, kind: table, key: n}
`

func getBody(t *testing.T, url string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// TestConsoleEndpoints: the console's page and data are served by the
// node, small and bounded: the topology is the app's graph exactly; the
// rates become non-zero once records flow; the newest dead letter is
// listed with its reason and origin, within the asked limit; a tail
// streams a sink's new records as server-sent events; a ninth tail is
// refused; page and data together weigh well under 300 KB.
func TestConsoleEndpoints(t *testing.T) {
	brokers := cluster(t)
	n := startNode(t, consoleYAML, brokers, engine.SystemClock{}, t.TempDir())
	defer n.stop()
	base := "http://" + n.info.HTTPAddr

	code, page := getBody(t, base+"/")
	if code != http.StatusOK || !strings.Contains(string(page), "/console/console.js") {
		t.Fatalf("GET / = %d\n%s", code, page)
	}
	weight := len(page)
	for _, f := range []string{"/console/console.js", "/console/console.css"} {
		code, b := getBody(t, base+f)
		if code != http.StatusOK || len(b) == 0 {
			t.Fatalf("GET %s = %d", f, code)
		}
		weight += len(b)
	}

	_, raw := getBody(t, base+"/v1/console/topology")
	var topo struct {
		Nodes []struct{ ID, Kind string }
		Edges []struct{ From, To string }
	}
	if err := json.Unmarshal(raw, &topo); err != nil {
		t.Fatal(err)
	}
	var ids, edges []string
	for _, x := range topo.Nodes {
		ids = append(ids, x.ID)
	}
	for _, e := range topo.Edges {
		edges = append(edges, e.From+">"+e.To)
	}
	equalLines(t, "topology nodes", sorted(ids), []string{"bucket:in", "bucket:kept", "function:count", "function:keep",
		"sink:counts", "sink:out", "source:in", "trigger:each", "trigger:fives"})
	equalLines(t, "topology edges", sorted(edges), []string{"bucket:in>trigger:each", "bucket:kept>trigger:fives",
		"function:count>sink:counts", "function:keep>bucket:kept", "function:keep>sink:out", "source:in>bucket:in",
		"trigger:each>function:keep", "trigger:fives>function:count"})

	// A tail of the sink, opened before the records.
	resp, err := http.Get(base + "/v1/console/tail?sink=out")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("tail: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	events := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				events <- d
			}
		}
	}()
	var tails []*http.Response
	for range maxTails - 1 {
		r, err := http.Get(base + "/v1/console/tail?bucket=in")
		if err != nil {
			t.Fatal(err)
		}
		tails = append(tails, r)
	}
	if code, _ := getBody(t, base+"/v1/console/tail?bucket=in"); code != http.StatusTooManyRequests {
		t.Fatalf("a tail beyond %d: %d", maxTails, code)
	}
	for _, r := range tails {
		r.Body.Close()
	}

	var in []string
	for i := range 40 {
		in = append(in, fmt.Sprintf(`{"id":%d,"user":"u%d"}`, i, i%4))
	}
	produce(t, brokers, "in", 0, append(in, "not json")...)
	waitFor(t, 10*time.Second, "a tailed record", func() bool {
		select {
		case d := <-events:
			return strings.Contains(d, `\"user\":\"u`)
		default:
			return false
		}
	})
	waitFor(t, 10*time.Second, "a non-zero rate of the source", func() bool {
		_, raw := getBody(t, base+"/v1/console/stats?series=0")
		var st struct{ Sources map[string]float64 }
		return json.Unmarshal(raw, &st) == nil && st.Sources["in"] > 0
	})
	var dl struct {
		Records []struct{ Reason, Origin, Value string }
	}
	waitFor(t, 10*time.Second, "the dead letter", func() bool {
		_, raw := getBody(t, base+"/v1/console/deadletters?limit=1")
		return json.Unmarshal(raw, &dl) == nil && len(dl.Records) == 1
	})
	if r := dl.Records[0]; r.Reason != "decode" || r.Origin != "in[0]@40" || r.Value != "not json" {
		t.Fatalf("dead letter %+v", r)
	}
	var parts struct {
		Nodes []nodeJSON
	}
	_, raw = getBody(t, base+"/v1/console/partitions")
	if err := json.Unmarshal(raw, &parts); err != nil || len(parts.Nodes) != 1 || len(parts.Nodes[0].Partitions) != 2 {
		t.Fatalf("partitions: %v %s", err, raw)
	}
	if !slices.ContainsFunc(parts.Nodes[0].Partitions, func(p partJSON) bool { return len(p.Buckets) == 2 }) {
		t.Fatalf("partitions without their buckets: %s", raw)
	}
	for _, u := range []string{"/v1/console/stats", "/v1/console/topology", "/v1/console/partitions", "/v1/console/deadletters"} {
		_, b := getBody(t, base+u)
		weight += len(b)
	}
	if weight > 300<<10 {
		t.Fatalf("the console weighs %d KB with its data", weight>>10)
	}
	t.Logf("the console weighs %d KB with its data", weight>>10)
}
