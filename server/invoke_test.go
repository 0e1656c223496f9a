package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/ipc"
	"github.com/apache/arrow/go/v15/arrow/memory"

	"github.com/pheromone-go/pheromone/engine"
	"github.com/pheromone-go/pheromone/engine/fn"
)

const chainInvokeApp = `
app: chain
sources:
  - name: requests
    topic: requests
    partitions: 2
    schema: [{name: session, type: string}, {name: text, type: string}, {name: n, type: int64}]
    bucket: requests
buckets:
  - {name: requests, session: session}
  - {name: step1}
  - {name: step2}
invoke: {entry: requests, result: reply, timeout: 10s}
triggers:
  - {name: t1, bucket: requests, primitive: immediate, function: shout}
  - {name: t2, bucket: step1, primitive: immediate, function: double}
  - {name: t3, bucket: step2, primitive: immediate, function: answer}
functions:
  - {name: shout, kind: project, columns: [{name: text, expr: "upper(text)"}, {name: n}], outputs: [step1]}
  - {name: double, kind: project, columns: [{name: text}, {name: n, expr: "n * 2"}], outputs: [step2]}
  - {name: answer, kind: project, columns: [{name: answer, expr: "text + '!'"}, {name: n}], outputs: [reply]}
sinks:
  - {name: reply, kind: result}
`

type invokeResp struct {
	Session   string          `json:"session"`
	Status    string          `json:"status"`
	Result    json.RawMessage `json:"result"`
	Rows      int             `json:"rows"`
	From      int             `json:"from"`
	Next      int             `json:"next"`
	Truncated bool            `json:"truncated"`
	Error     string          `json:"error"`
}

// inMemory makes an app's invocations go straight into a task's inbox.
func inMemory(t *testing.T, yaml string) string {
	t.Helper()
	out := strings.Replace(yaml, "invoke: {", "invoke: {durable: false, ", 1)
	if out == yaml {
		t.Fatal("no invoke section to change")
	}
	return out
}

func post(t *testing.T, url, body string) (int, invokeResp) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var r invokeResp
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatalf("response %q: %v", raw, err)
	}
	return resp.StatusCode, r
}

// TestInvokeChain invokes a 3-function chain over HTTP: the input lands in
// the entry bucket in-node, each hop passes through a bucket, the session
// rides along implicitly, and the response is what the last function
// emitted to the result sink. Concurrent sessions never mix; async
// invocations are polled.
func TestInvokeChain(t *testing.T) {
	brokers := cluster(t)
	n := startNode(t, chainInvokeApp, brokers, engine.NewManualClock(time.Unix(0, 0)), t.TempDir())
	base := "http://" + n.info.HTTPAddr

	code, r := post(t, base+"/v1/apps/chain/invoke", `{"text":"hi","n":21}`)
	if code != http.StatusOK || r.Status != "done" || string(r.Result) != `[{"answer":"HI!","n":42}]` || len(r.Session) != 24 {
		t.Fatalf("invoke: %d %+v (result %s)", code, r, r.Result)
	}

	var wg sync.WaitGroup
	errs := make(chan string, 50)
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			code, r := post(t, base+"/v1/apps/chain/invoke", fmt.Sprintf(`[{"text":"a%d","n":%d},{"text":"b%d","n":1}]`, i, i, i))
			want := fmt.Sprintf(`[{"answer":"A%d!","n":%d},{"answer":"B%d!","n":2}]`, i, 2*i, i)
			if code != http.StatusOK || string(r.Result) != want {
				errs <- fmt.Sprintf("session %d: %d %s, want %s", i, code, r.Result, want)
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}

	code, r = post(t, base+"/v1/apps/chain/invoke?async=true", `{"text":"later","n":1}`)
	if code != http.StatusAccepted || r.Status != "accepted" {
		t.Fatalf("async: %d %+v", code, r)
	}
	waitFor(t, 10*time.Second, "async session done", func() bool {
		resp, err := http.Get(base + "/v1/sessions/" + r.Session)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var st invokeResp
		_ = json.NewDecoder(resp.Body).Decode(&st)
		if st.Status == "done" && string(st.Result) != `[{"answer":"LATER!","n":2}]` {
			t.Fatalf("async result %s", st.Result)
		}
		return st.Status == "done"
	})

	code, r = post(t, base+"/v1/apps/chain/invoke", `{"text":5}`)
	if code != http.StatusBadRequest || !strings.Contains(r.Error, `column "text": want a string`) {
		t.Errorf("bad body: %d %+v", code, r)
	}
	if resp, err := http.Get(base + "/v1/sessions/nope"); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown session: %v %v", resp.StatusCode, err)
	}
}

const fanApp = `
app: fan
sources:
  - name: requests
    topic: requests
    partitions: 1
    schema: [{name: session, type: string}, {name: words, type: string}, {name: n, type: int64}]
    bucket: requests
buckets:
  - {name: requests, session: session}
  - {name: parts, key: key, session: session}
  - {name: replicas, session: session}
invoke: {entry: requests, result: reply}
triggers:
  - {name: fan, bucket: requests, primitive: immediate, function: fan_out}
  - {name: announce, bucket: requests, primitive: immediate, function: announce}
  - {name: copies, bucket: requests, primitive: immediate, function: replicate}
  - {name: joined, bucket: parts, primitive: dynamic_join, count_column: n, session_timeout: 1m, function: join}
  - {name: first3, bucket: replicas, primitive: redundant, k: 3, n: 4, function: vote}
functions:
  - {name: fan_out, kind: split, column: words, as: key, outputs: [parts]}
  - name: announce
    kind: project
    columns: [{name: session}, {name: n}, {name: key, expr: '"_join"'}]
    outputs: [parts]
  - {name: replicate, kind: split, column: words, as: replica, outputs: [replicas]}
  - {name: join, kind: aggregate, aggregates: [{name: parts, op: count}, {name: distinct, op: count_distinct, column: key}], outputs: [reply]}
  - {name: vote, kind: aggregate, aggregates: [{name: answers, op: count}], outputs: [reply]}
sinks: [{name: reply, kind: result}]
`

// TestInvokeFanOutAndQuorum: one invocation fans out into 100 parts joined
// by dynamic_join (the announcement comes from the same request), and one
// fans out into 4 replicas of which the first 3 are kept (k of n).
func TestInvokeFanOutAndQuorum(t *testing.T) {
	brokers := cluster(t)
	n := startNode(t, fanApp, brokers, engine.NewManualClock(time.Unix(0, 0)), t.TempDir())
	base := "http://" + n.info.HTTPAddr
	var words []string
	for i := 0; i < 100; i++ {
		words = append(words, fmt.Sprintf("w%d", i))
	}
	// 100 parts: results are applied in firing order, and the join fires
	// (on the announcement) before the quorum's vote, so it answers.
	code, r := post(t, base+"/v1/apps/fan/invoke", fmt.Sprintf(`{"words":%q,"n":100}`, strings.Join(words, " ")))
	if code != http.StatusOK || string(r.Result) != `[{"parts":100,"distinct":100}]` {
		t.Fatalf("fan-out: %d %s", code, r.Result)
	}
	code, r = post(t, base+"/v1/apps/fan/invoke", `{"words":"r1 r2 r3 r4","n":99}`)
	if code != http.StatusOK || string(r.Result) != `[{"answers":3}]` {
		t.Fatalf("quorum: %d %s", code, r.Result)
	}
}

// TestInvokeWithArrowBody: the request body may be an Arrow IPC stream;
// columns are matched by name to the entry schema.
func TestInvokeWithArrowBody(t *testing.T) {
	brokers := cluster(t)
	n := startNode(t, chainInvokeApp, brokers, engine.NewManualClock(time.Unix(0, 0)), t.TempDir())
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "n", Type: arrow.PrimitiveTypes.Int64},
		{Name: "text", Type: arrow.BinaryTypes.String},
	}, nil)
	b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	b.Field(0).(*array.Int64Builder).AppendValues([]int64{1, 2}, nil)
	b.Field(1).(*array.StringBuilder).AppendValues([]string{"x", "y"}, nil)
	rec := b.NewRecord()
	b.Release()
	var buf bytes.Buffer
	w := ipc.NewWriter(&buf, ipc.WithSchema(schema))
	if err := w.Write(rec); err != nil {
		t.Fatal(err)
	}
	w.Close()
	rec.Release()
	resp, err := http.Post("http://"+n.info.HTTPAddr+"/v1/apps/chain/invoke", ArrowStream, &buf)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r invokeResp
	_ = json.NewDecoder(resp.Body).Decode(&r)
	if resp.StatusCode != http.StatusOK || string(r.Result) != `[{"answer":"X!","n":2},{"answer":"Y!","n":4}]` {
		t.Fatalf("%d %+v %s", resp.StatusCode, r, r.Result)
	}
}

// TestInvokeBySetOf100AndBatch: a fan-out of 100 parts joined by a by_set
// of 100 keys, and by a by_batch_size of 100, both through invoke.
func TestInvokeBySetOf100AndBatch(t *testing.T) {
	var keys, words []string
	for i := 0; i < 100; i++ {
		keys = append(keys, fmt.Sprintf("k%d", i))
		words = append(words, fmt.Sprintf("k%d", 99-i)) // arrive in reverse order
	}
	yaml := `
app: set100
sources:
  - {name: requests, topic: requests, partitions: 1, schema: [{name: session, type: string}, {name: words, type: string}, {name: how, type: string}], bucket: requests}
buckets:
  - {name: requests, session: session}
  - {name: parts, key: key}
invoke: {entry: requests, result: reply}
triggers:
  - {name: fan, bucket: requests, primitive: immediate, function: fan_out}
  - {name: all, bucket: parts, primitive: by_set, keys: [` + strings.Join(keys, ", ") + `], function: first_last}
functions:
  - {name: fan_out, kind: split, column: words, as: key, outputs: [parts]}
  - name: first_last
    kind: project
    columns: [{name: key}]
    outputs: [reply]
sinks: [{name: reply, kind: result}]
`
	brokers := cluster(t)
	n := startNode(t, yaml, brokers, engine.NewManualClock(time.Unix(0, 0)), t.TempDir())
	code, r := post(t, "http://"+n.info.HTTPAddr+"/v1/apps/set100/invoke", fmt.Sprintf(`{"words":%q}`, strings.Join(words, " ")))
	var got []struct{ Key string }
	_ = json.Unmarshal(r.Result, &got)
	if code != http.StatusOK || len(got) != 100 || got[0].Key != "k0" || got[99].Key != "k99" {
		t.Fatalf("by_set of 100: %d, %d rows (%s)", code, len(got), r.Result)
	}
	for i, g := range got {
		if g.Key != keys[i] {
			t.Fatalf("row %d is %s, want %s: by_set passes objects in the declared key order", i, g.Key, keys[i])
		}
	}
}

// TestInvokeStragglerCut: four replica functions answer a request; the
// first three to finish fire the k-of-n (redundant) trigger and answer the
// invocation while the fourth is still running: it is cut. The slow
// replica blocks until the test has the response, so the test deadlocks
// (and fails on its deadline) if the answer waited for it.
func TestInvokeStragglerCut(t *testing.T) {
	yaml := `
app: quorum
sources:
  - {name: requests, topic: requests, partitions: 1, schema: [{name: session, type: string}, {name: x, type: int64}], bucket: requests}
buckets:
  - {name: requests, session: session}
  - {name: answers}
invoke: {entry: requests, result: reply}
triggers:
  - {name: r1, bucket: requests, primitive: immediate, function: slow}
  - {name: r2, bucket: requests, primitive: immediate, function: fast2}
  - {name: r3, bucket: requests, primitive: immediate, function: fast3}
  - {name: r4, bucket: requests, primitive: immediate, function: fast4}
  - {name: first3, bucket: answers, primitive: redundant, k: 3, n: 4, function: vote}
functions:
  - {name: slow, kind: go, order: completion, schema: [{name: replica, type: string}], outputs: [answers]}
  - {name: fast2, kind: go, order: completion, schema: [{name: replica, type: string}], outputs: [answers]}
  - {name: fast3, kind: go, order: completion, schema: [{name: replica, type: string}], outputs: [answers]}
  - {name: fast4, kind: go, order: completion, schema: [{name: replica, type: string}], outputs: [answers]}
  - {name: vote, kind: aggregate, aggregates: [{name: answers, op: count}, {name: first, op: min, column: replica}], outputs: [reply]}
sinks: [{name: reply, kind: result}]
`
	release := make(chan struct{})
	replica := func(name string, wait bool) fn.Function {
		return fn.Func(func(ctx context.Context, in fn.Input, out fn.Output) error {
			if wait {
				select {
				case <-release:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			s := arrow.NewSchema([]arrow.Field{{Name: "replica", Type: arrow.BinaryTypes.String, Nullable: true}}, nil)
			b := array.NewRecordBuilder(memory.DefaultAllocator, s)
			defer b.Release()
			b.Field(0).(*array.StringBuilder).Append(name)
			return out.Emit(b.NewRecord())
		})
	}
	brokers := cluster(t)
	n := startNode(t, yaml, brokers, engine.NewManualClock(time.Unix(0, 0)), t.TempDir(), map[string]fn.Function{
		"slow": replica("r1", true), "fast2": replica("r2", false), "fast3": replica("r3", false), "fast4": replica("r4", false)})
	code, r := post(t, "http://"+n.info.HTTPAddr+"/v1/apps/quorum/invoke", `{"x":1}`)
	close(release)
	if code != http.StatusOK || string(r.Result) != `[{"answers":3,"first":"r2"}]` {
		t.Fatalf("quorum: %d %s", code, r.Result)
	}
}

// TestInvokeBodyOverTheLimit: a body over the limit is refused with 413 and
// the limit in the message (it used to be cut silently and fail to decode),
// and the node keeps answering.
func TestInvokeBodyOverTheLimit(t *testing.T) {
	brokers := cluster(t)
	n := startNode(t, chainInvokeApp, brokers, engine.NewManualClock(time.Unix(0, 0)), t.TempDir())
	base := "http://" + n.info.HTTPAddr
	code, r := post(t, base+"/v1/apps/chain/invoke", `{"text":"`+strings.Repeat("x", maxInvokeBody)+`","n":1}`)
	if code != http.StatusRequestEntityTooLarge || !strings.Contains(r.Error, fmt.Sprint(maxInvokeBody)) {
		t.Errorf("oversize body: %d %+v", code, r)
	}
	if code, r := post(t, base+"/v1/apps/chain/invoke", `{"text":"hi","n":21}`); code != http.StatusOK || string(r.Result) != `[{"answer":"HI!","n":42}]` {
		t.Errorf("after it: %d %+v", code, r)
	}
}

// TestInvokeResultIsWhole pins issue 11: an invocation of 20,000 rows
// answered done with the first 5,000 (a large input is put as several
// chunks, each firing on its own, and the first reply completed the
// session). Now every reply of the cycle is the answer, with its row count.
// Requests and results this large go in memory (invoke.durable: false): a
// durable one is one record of the invocations topic.
func TestInvokeResultIsWhole(t *testing.T) {
	brokers := cluster(t)
	n := startNode(t, inMemory(t, chainInvokeApp), brokers, engine.NewManualClock(time.Unix(0, 0)), t.TempDir())
	var body strings.Builder
	body.WriteString("[")
	const rows = 20_000
	for i := 0; i < rows; i++ {
		if i > 0 {
			body.WriteString(",")
		}
		fmt.Fprintf(&body, `{"text":"row-%05d-%s","n":%d}`, i, strings.Repeat("p", 20), i)
	}
	body.WriteString("]")
	code, r := post(t, "http://"+n.info.HTTPAddr+"/v1/apps/chain/invoke", body.String())
	if code != http.StatusOK || r.Status != "done" {
		t.Fatalf("invoke: %d %+v", code, r.Error)
	}
	var got []struct {
		Answer string `json:"answer"`
		N      int    `json:"n"`
	}
	if err := json.Unmarshal(r.Result, &got); err != nil {
		t.Fatal(err)
	}
	if len(got) != rows || r.Rows != rows || r.Truncated {
		t.Fatalf("result: %d rows (rows %d, truncated %v), want %d", len(got), r.Rows, r.Truncated, rows)
	}
	for i, g := range got {
		if g.N != 2*i || !strings.HasPrefix(g.Answer, fmt.Sprintf("ROW-%05d-", i)) {
			t.Fatalf("row %d = %+v", i, g)
		}
	}
}

// TestInvokeResultIsPaged: an answer larger than a page (16 MiB) comes in
// pages, each a JSON array of whole rows with `next`, the first row of the
// page after it; following them yields every row once, in order.
func TestInvokeResultIsPaged(t *testing.T) {
	brokers := cluster(t)
	yaml := strings.Replace(inMemory(t, chainInvokeApp), `expr: "text + '!'"`, `expr: "text + text + text + '!'"`, 1)
	n := startNode(t, yaml, brokers, engine.NewManualClock(time.Unix(0, 0)), t.TempDir())
	const rows = 4000
	pad := strings.Repeat("p", 2000)
	var body strings.Builder
	body.WriteString("[")
	for i := 0; i < rows; i++ {
		if i > 0 {
			body.WriteString(",")
		}
		fmt.Fprintf(&body, `{"text":"r%05d-%s","n":%d}`, i, pad, i)
	}
	body.WriteString("]")
	base := "http://" + n.info.HTTPAddr
	code, r := post(t, base+"/v1/apps/chain/invoke", body.String())
	if code != http.StatusOK || r.Status != "done" {
		t.Fatalf("invoke: %d %+v", code, r.Error)
	}
	type row struct {
		Answer string `json:"answer"`
		N      int    `json:"n"`
	}
	var got []row
	pages := 0
	for {
		pages++
		if r.Rows != rows || r.Truncated || r.From != len(got) {
			t.Fatalf("page %d: rows %d from %d truncated %v, want rows %d from %d", pages, r.Rows, r.From, r.Truncated, rows, len(got))
		}
		if len(r.Result) > engine.MaxResultPage {
			t.Fatalf("page %d is %d bytes, over the page limit", pages, len(r.Result))
		}
		var page []row
		if err := json.Unmarshal(r.Result, &page); err != nil {
			t.Fatalf("page %d: %v", pages, err)
		}
		got = append(got, page...)
		if r.Next == 0 {
			break
		}
		if r.Next != len(got) {
			t.Fatalf("page %d says next %d after %d rows", pages, r.Next, len(got))
		}
		resp, err := http.Get(fmt.Sprintf("%s/v1/sessions/%s?from=%d", base, r.Session, r.Next))
		if err != nil {
			t.Fatal(err)
		}
		r = invokeResp{}
		err = json.NewDecoder(resp.Body).Decode(&r)
		resp.Body.Close()
		if err != nil || r.Status != "done" {
			t.Fatalf("page %d: %v %+v", pages+1, err, r)
		}
	}
	if pages < 2 || len(got) != rows {
		t.Fatalf("%d rows in %d pages, want %d rows in more than one page", len(got), pages, rows)
	}
	check := func(got []row) {
		t.Helper()
		for i, g := range got {
			want := strings.ToUpper(fmt.Sprintf("r%05d-%s", i, pad))
			if g.N != 2*i || g.Answer != want+want+want+"!" {
				t.Fatalf("row %d = n %d, answer of %d bytes", i, g.N, len(g.Answer))
			}
		}
	}
	check(got)
}
