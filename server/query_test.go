package server

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow/go/v15/arrow/ipc"

	"github.com/pheromone-go/pheromone/engine"
	"github.com/pheromone-go/pheromone/engine/codec"
)

const queryApp = `
app: q
sources:
  - name: parts
    topic: parts
    partitions: 1
    schema: [{name: req, type: string}, {name: key, type: string}, {name: v, type: int64}]
    key: key
    bucket: parts
buckets: [{name: parts, session: req}]
triggers: [{name: all3, bucket: parts, primitive: by_set, keys: [a, b, c], function: pass}]
functions: [{name: pass, kind: emit, outputs: [out]}]
sinks: [{name: out, topic: out}]
`

func query(t *testing.T, url string) engine.BucketView {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d", url, resp.StatusCode)
	}
	var v engine.BucketView
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// TestQueryPendingState: GET /v1/apps/{app}/buckets/{bucket} shows the
// objects held and how close each session's set is, exactly, before and
// after the set completes.
func TestQueryPendingState(t *testing.T) {
	brokers := cluster(t)
	n := startNode(t, queryApp, brokers, engine.NewManualClock(time.Unix(0, 0)), t.TempDir())
	url := "http://" + n.info.HTTPAddr + "/v1/apps/q/buckets/parts"
	produce(t, brokers, "parts", 0, `{"req":"r1","key":"a","v":1}`, `{"req":"r2","key":"c","v":2}`, `{"req":"r1","key":"b","v":3}`)
	waitFor(t, 10*time.Second, "3 objects held", func() bool {
		v := query(t, url)
		return len(v.Partitions) == 1 && v.Partitions[0].Held == 3
	})
	v := query(t, url+"?session=r1")
	p := v.Partitions[0]
	if len(p.Objects) != 2 || string(p.Objects[0]) != `{"req":"r1","key":"a","v":1}` || string(p.Objects[1]) != `{"req":"r1","key":"b","v":3}` {
		t.Errorf("r1 objects: %s", p.Objects)
	}
	tr := p.Triggers[0]
	if tr.Name != "all3" || tr.Primitive != "by_set" || tr.Pending != 3 || len(tr.Progress) != 1 {
		t.Fatalf("trigger view %+v", tr)
	}
	if pr := tr.Progress[0]; pr.Session != "r1" || pr.Have != 2 || pr.Need != 3 || len(pr.Missing) != 1 || pr.Missing[0] != "c" {
		t.Errorf("r1 progress %+v", pr)
	}
	if v := query(t, url+"?key=c"); len(v.Partitions[0].Objects) != 1 {
		t.Errorf("key filter: %s", v.Partitions[0].Objects)
	}

	produce(t, brokers, "parts", 0, `{"req":"r1","key":"c","v":4}`)
	waitFor(t, 10*time.Second, "r1 fired", func() bool { return query(t, url).Partitions[0].Held == 1 })
	p = query(t, url).Partitions[0]
	if len(p.Objects) != 1 || string(p.Objects[0]) != `{"req":"r2","key":"c","v":2}` {
		t.Errorf("after firing: %s", p.Objects)
	}
	if pr := p.Triggers[0].Progress; len(pr) != 1 || pr[0].Session != "r2" || pr[0].Have != 1 {
		t.Errorf("after firing: progress %+v", pr)
	}
	if resp, _ := http.Get("http://" + n.info.HTTPAddr + "/v1/apps/q/buckets/nope"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown bucket: %d", resp.StatusCode)
	}
}

const tableApp = `
app: tbl
sources:
  - name: clicks
    topic: clicks
    partitions: 1
    schema: [{name: user, type: string}, {name: ms, type: int64}]
    bucket: clicks
buckets: [{name: clicks}]
triggers: [{name: pairs, bucket: clicks, primitive: by_batch_size, count: 2, function: per_user}]
functions:
  - name: per_user
    kind: aggregate
    group_by: [user]
    aggregates: [{name: n, op: count}, {name: total, op: sum, column: ms}]
    outputs: [latest]
sinks: [{name: latest, kind: table, key: user}]
`

// TestTableKeepsLatestPerKey: a table sink keeps the latest row per key in
// Pebble; GET /v1/apps/{app}/tables/{name} serves it.
func TestTableKeepsLatestPerKey(t *testing.T) {
	brokers := cluster(t)
	n := startNode(t, tableApp, brokers, engine.NewManualClock(time.Unix(0, 0)), t.TempDir())
	produce(t, brokers, "clicks", 0, `{"user":"u1","ms":10}`, `{"user":"u1","ms":20}`)
	produce(t, brokers, "clicks", 0, `{"user":"u2","ms":5}`, `{"user":"u1","ms":1}`)
	url := "http://" + n.info.HTTPAddr + "/v1/apps/tbl/tables/latest"
	type table struct {
		Rows []engine.TableRow `json:"rows"`
	}
	get := func(u string) []string {
		resp, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var tb table
		_ = json.NewDecoder(resp.Body).Decode(&tb)
		var out []string
		for _, r := range tb.Rows {
			out = append(out, r.Key+" "+string(r.Row))
		}
		return out
	}
	waitFor(t, 10*time.Second, "both users in the table", func() bool { return len(get(url)) == 2 })
	equalLines(t, "table", get(url), []string{
		`u1 {"user":"u1","n":1,"total":1}`,
		`u2 {"user":"u2","n":1,"total":5}`,
	})
	equalLines(t, "one key", get(url+"?key=u2"), []string{`u2 {"user":"u2","n":1,"total":5}`})
}

// TestQueriesAsArrow: with Accept: application/vnd.apache.arrow.stream the
// bucket and table queries answer with Arrow IPC streams that the Arrow Go
// reader decodes, and (when the apache-arrow npm package is installed, as
// .ci/run does) so does the independent JavaScript implementation.
func TestQueriesAsArrow(t *testing.T) {
	brokers := cluster(t)
	n := startNode(t, queryApp, brokers, engine.NewManualClock(time.Unix(0, 0)), t.TempDir())
	produce(t, brokers, "parts", 0, `{"req":"r1","key":"a","v":1}`, `{"req":"r2","key":"c","v":2}`)
	url := "http://" + n.info.HTTPAddr + "/v1/apps/q/buckets/parts"
	waitFor(t, 10*time.Second, "2 objects held", func() bool { return query(t, url).Partitions[0].Held == 2 })
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Accept", ArrowStream)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != ArrowStream {
		t.Fatalf("content type %q", ct)
	}
	rd, err := ipc.NewReader(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var rows []string
	var enc codec.JSONEncoder
	for rd.Next() {
		rec := rd.Record()
		for i := 0; i < int(rec.NumRows()); i++ {
			rows = append(rows, string(enc.AppendRow(nil, rec, i)))
		}
	}
	rd.Release()
	equalLines(t, "arrow rows (Go reader)", rows, []string{`{"req":"r1","key":"a","v":1}`, `{"req":"r2","key":"c","v":2}`})

	modules := os.Getenv("PHEROMONE_ARROWJS")
	if modules == "" {
		t.Skip("independent Arrow check skipped: set PHEROMONE_ARROWJS to a node_modules dir with apache-arrow (.ci/run does)")
	}
	file := writeFile(t, t.TempDir(), "parts.arrows", string(body))
	script := `const {tableFromIPC} = require("apache-arrow"); const fs = require("fs");
const t = tableFromIPC(fs.readFileSync(process.argv[1]));
console.log(JSON.stringify(t.toArray().map(r => ({req: r.req, key: r.key, v: Number(r.v)}))));`
	cmd := exec.Command("node", "-e", script, file)
	cmd.Env = append(os.Environ(), "NODE_PATH="+modules)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node: %v\n%s", err, out)
	}
	if got := strings.TrimSpace(string(out)); got != `[{"req":"r1","key":"a","v":1},{"req":"r2","key":"c","v":2}]` {
		t.Errorf("apache-arrow (JS) read %s", got)
	}
}
