package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pheromone-go/pheromone/engine"
	"github.com/pheromone-go/pheromone/engine/fn"
)

// durableApp answers four kinds of request: "direct" at once (and writes
// one side effect to a Kafka sink), "moved" through a repartition topic
// (answered on the partition its n hashes to, not the session's), "boom"
// by failing (a Go function that always errs), and "lonely" never (a
// by_batch_size of 2 that a session's one object never fills).
const durableApp = `
app: durable
kafka: {guarantee: exactly_once, commit_interval: 20ms}
sources:
  - name: requests
    topic: requests
    partitions: 4
    schema: [{name: session, type: string}, {name: kind, type: string}, {name: n, type: int64}]
    bucket: requests
buckets:
  - {name: requests, session: session}
  - {name: waiting}
  - {name: moved, partition_by: n}
  - {name: doomed}
invoke: {entry: requests, result: reply, timeout: 10s, session_timeout: 1h, session_ttl: 2h}
triggers:
  - {name: t_direct, bucket: requests, primitive: immediate, function: direct}
  - {name: t_lonely, bucket: requests, primitive: immediate, function: lonely}
  - {name: t_move, bucket: requests, primitive: immediate, function: move}
  - {name: pairs, bucket: waiting, primitive: by_batch_size, count: 2, function: pair}
  - {name: t_moved, bucket: moved, primitive: immediate, function: answer_moved}
  - {name: t_boom, bucket: requests, primitive: immediate, function: boom}
  - {name: t_doomed, bucket: doomed, primitive: immediate, function: explode}
functions:
  - {name: direct, kind: filter, expr: 'kind == "direct"', outputs: [reply, effects]}
  - {name: lonely, kind: filter, expr: 'kind == "lonely"', outputs: [waiting]}
  - {name: move, kind: filter, expr: 'kind == "moved"', outputs: [moved]}
  - {name: pair, kind: project, columns: [{name: n}], outputs: [reply]}
  - {name: boom, kind: filter, expr: 'kind == "boom"', outputs: [doomed]}
  - {name: explode, kind: go, retries: 1, schema: [{name: n, type: int64}], outputs: [reply]}
  - {name: answer_moved, kind: project, columns: [{name: kind, expr: "kind + '!'"}, {name: n, expr: "n * 10"}], outputs: [reply]}
sinks:
  - {name: reply, kind: result}
  - {name: effects, topic: effects, partitions: 1}
`

// call sends a request to url and decodes the session answer.
func call(t *testing.T, method, url, body string, hdr ...string) (int, invokeResp) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var r invokeResp
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatalf("%s %s: response %q: %v", method, url, raw, err)
	}
	return resp.StatusCode, r
}

// TestDurableInvocations: an accepted invocation is a record of the
// invocations topic, run by the partition that owns its session:
//   - a retry with the same Idempotency-Key gets the same session and
//     result, and its side effect (read_committed) happens once;
//   - chains through a repartition topic answer, on either node, and GET
//     /v1/sessions/{id} answers on either node;
//   - a session that never replies can be cancelled: its pending trigger
//     state is dropped;
//   - 10,000 sessions that never reply time out after session_timeout
//     (their held objects dropped) and are gone after session_ttl: the
//     table is empty again.
func TestDurableInvocations(t *testing.T) {
	brokers := cluster(t)
	clock := engine.NewManualClock(time.Unix(1_000_000, 0))
	explode := map[string]fn.Function{"explode": fn.Func(func(context.Context, fn.Input, fn.Output) error {
		return errors.New("exploded")
	})}
	a := startNode(t, durableApp, brokers, clock, t.TempDir(), explode)
	b := startNode(t, durableApp, brokers, clock, t.TempDir(), explode)
	waitFor(t, 30*time.Second, "two nodes share the 4 partitions", func() bool {
		return len(a.info.Node.Partitions()) > 0 && len(b.info.Node.Partitions()) > 0 &&
			len(a.info.Node.Partitions())+len(b.info.Node.Partitions()) == 4
	})
	urlA, urlB := "http://"+a.info.HTTPAddr, "http://"+b.info.HTTPAddr
	// Exactly-once transactions end by the injected clock: keep it moving
	// (twice as fast as real time) until the timeout phase steps it.
	ticking := make(chan struct{})
	tickDone := make(chan struct{})
	go func() {
		defer close(tickDone)
		for {
			select {
			case <-ticking:
				return
			case <-time.After(10 * time.Millisecond):
				clock.Advance(20 * time.Millisecond)
			}
		}
	}()
	stopTicking := sync.OnceFunc(func() { close(ticking); <-tickDone })
	defer stopTicking()

	// Idempotency: two POSTs with one key, one run.
	code, first := call(t, "POST", urlA+"/v1/apps/durable/invoke", `{"kind":"direct","n":7}`, "Idempotency-Key", "order-1")
	if code != http.StatusOK || first.Status != "done" || string(first.Result) != `[{"session":"`+first.Session+`","kind":"direct","n":7}]` {
		t.Fatalf("direct: %d %+v %s", code, first, first.Result)
	}
	code, again := call(t, "POST", urlB+"/v1/apps/durable/invoke", `{"kind":"direct","n":8}`, "Idempotency-Key", "order-1")
	if code != http.StatusOK || again.Session != first.Session || string(again.Result) != string(first.Result) {
		t.Fatalf("retry: %d %+v %s, want the first answer %s", code, again, again.Result, first.Result)
	}
	effects := newCommittedReader(t, brokers, "effects")
	effects.until(t, "one side effect", []string{`{"session":"` + first.Session + `","kind":"direct","n":7}`}, 500*time.Millisecond)

	// Through a repartition topic, from both nodes.
	moved := 0
	for i := 0; i < 12; i++ {
		url := []string{urlA, urlB}[i%2]
		code, r := call(t, "POST", url+"/v1/apps/durable/invoke", fmt.Sprintf(`{"kind":"moved","n":%d}`, i))
		if want := fmt.Sprintf(`[{"kind":"moved!","n":%d}]`, 10*i); code != http.StatusOK || string(r.Result) != want {
			t.Fatalf("moved %d: %d %+v %s, want %s", i, code, r, r.Result, want)
		}
		if engine.PartitionOf([]byte(r.Session), 4) != engine.PartitionOf(fmt.Appendf(nil, "%d", i), 4) {
			moved++
		}
		// Any node answers GET, from the owner.
		code, st := call(t, "GET", []string{urlB, urlA}[i%2]+"/v1/sessions/"+r.Session, "")
		if code != http.StatusOK || st.Status != "done" || string(st.Result) != string(r.Result) {
			t.Fatalf("GET moved %d: %d %+v", i, code, st)
		}
	}
	if moved == 0 {
		t.Fatal("no answer came from another partition than its session's: the test proves nothing")
	}

	// A failing function fails its session (its input is dead-lettered).
	code, boom := call(t, "POST", urlB+"/v1/apps/durable/invoke", `{"kind":"boom","n":1}`)
	if code != http.StatusOK || boom.Status != "failed" || !strings.Contains(boom.Error, "exploded") {
		t.Fatalf("boom: %d %+v", code, boom)
	}

	// Cancel a session that waits for a second object.
	code, lonely := call(t, "POST", urlA+"/v1/apps/durable/invoke?async=true", `{"kind":"lonely","n":1}`)
	if code != http.StatusAccepted || lonely.Status != "accepted" {
		t.Fatalf("async: %d %+v", code, lonely)
	}
	waitFor(t, 10*time.Second, "the lonely session running", func() bool {
		_, st := call(t, "GET", urlB+"/v1/sessions/"+lonely.Session, "")
		return st.Status == "running"
	})
	if held := pendingIn(t, a, b, "pairs"); held != 1 {
		t.Fatalf("before the cancel: %d objects pending in pairs, want 1", held)
	}
	if code, r := call(t, "DELETE", urlB+"/v1/sessions/"+lonely.Session, ""); code != http.StatusAccepted {
		t.Fatalf("DELETE: %d %+v", code, r)
	}
	waitFor(t, 10*time.Second, "the session cancelled", func() bool {
		_, st := call(t, "GET", urlA+"/v1/sessions/"+lonely.Session+"?wait=1s", "")
		return st.Status == "cancelled"
	})
	waitFor(t, 10*time.Second, "its pending object dropped", func() bool { return pendingIn(t, a, b, "pairs") == 0 })

	// Many sessions that never reply: timed out, then gone.
	const many = 10_000
	var wg sync.WaitGroup
	var failed atomic.Int64
	work := make(chan int)
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				if code, _ := call(t, "POST", []string{urlA, urlB}[i%2]+"/v1/apps/durable/invoke?async=true", fmt.Sprintf(`{"kind":"lonely","n":%d}`, i)); code != http.StatusAccepted {
					failed.Add(1)
				}
			}
		}()
	}
	for i := 0; i < many; i++ {
		work <- i
	}
	close(work)
	wg.Wait()
	if failed.Load() > 0 {
		t.Fatalf("%d async invocations not accepted", failed.Load())
	}
	count := func(status string) int {
		n := 0
		after := ""
		for {
			resp, err := http.Get(urlA + "/v1/sessions?limit=1000&status=" + status + "&after=" + after)
			if err != nil {
				t.Fatal(err)
			}
			var l SessionList
			err = json.NewDecoder(resp.Body).Decode(&l)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			n += len(l.Sessions)
			if l.Next == "" {
				return n
			}
			after = l.Next
		}
	}
	waitFor(t, 30*time.Second, "every lonely session running", func() bool { return count("running") == many })
	if held := pendingIn(t, a, b, "pairs"); held != many {
		t.Fatalf("%d objects pending in pairs, want %d", held, many)
	}
	// Past session_timeout (the ticking goes on: exactly-once commits end
	// by the clock), then past session_ttl.
	clock.Advance(time.Hour)
	waitFor(t, 90*time.Second, "the sessions timed out", func() bool { return count("timed_out") == many })
	if held := pendingIn(t, a, b, "pairs"); held != 0 {
		t.Errorf("after the timeout: %d objects pending in pairs, want 0", held)
	}
	clock.Advance(time.Hour)
	waitFor(t, 90*time.Second, "the sessions dropped after their TTL", func() bool { return count("") == 0 })
	if n := metricSum(t, "pheromone_durable_sessions{", a, b); n != 0 {
		t.Errorf("pheromone_durable_sessions: %v, want 0", n)
	}
	code, gone := call(t, "GET", urlB+"/v1/sessions/"+first.Session, "")
	if code != http.StatusNotFound {
		t.Errorf("a session past its TTL: %d %+v, want 404", code, gone)
	}
}

// metricSum adds up the values of the metric lines that start with prefix
// on every node.
func metricSum(t *testing.T, prefix string, nodes ...*runningNode) float64 {
	t.Helper()
	var sum float64
	for _, n := range nodes {
		resp, err := http.Get("http://" + n.info.HTTPAddr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, line := range strings.Split(string(body), "\n") {
			if strings.HasPrefix(line, prefix) {
				f := strings.Fields(line)
				v, _ := strconv.ParseFloat(f[len(f)-1], 64)
				sum += v
			}
		}
	}
	return sum
}

// pendingIn sums the objects trigger holds over both nodes' partitions.
func pendingIn(t *testing.T, a, b *runningNode, trigger string) int {
	t.Helper()
	n := 0
	for _, node := range []*runningNode{a, b} {
		resp, err := http.Get("http://" + node.info.HTTPAddr + "/v1/apps/durable/buckets/waiting?routed=all&limit=1")
		if err != nil {
			t.Fatal(err)
		}
		var v engine.BucketView
		err = json.NewDecoder(resp.Body).Decode(&v)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range v.Partitions {
			for _, tr := range p.Triggers {
				if tr.Name == trigger {
					n += tr.Pending
				}
			}
		}
	}
	return n
}

// TestDurableInvocationBounds: a partition keeps at most max_sessions
// sessions — a finished one makes room, but when all are running a new
// invocation is refused with 429 and stored nowhere — and a node holds at
// most max_waiting requests open (429 beyond).
func TestDurableInvocationBounds(t *testing.T) {
	yaml := strings.NewReplacer("partitions: 4", "partitions: 1",
		"session_ttl: 2h}", "session_ttl: 2h, max_sessions: 3, max_waiting: 1}").Replace(durableApp)
	brokers := cluster(t)
	node := startNode(t, yaml, brokers, nil, t.TempDir(), map[string]fn.Function{"explode": fn.Func(func(context.Context, fn.Input, fn.Output) error {
		return errors.New("exploded")
	})})
	url := "http://" + node.info.HTTPAddr

	if code, r := call(t, "POST", url+"/v1/apps/durable/invoke", `{"kind":"direct","n":1}`); code != http.StatusOK || r.Status != "done" {
		t.Fatalf("direct: %d %+v", code, r)
	}

	// One request held open (a session that never replies) is the limit:
	// a second waiter is refused at once.
	ctx, cancel := context.WithCancel(context.Background())
	held := make(chan struct{})
	go func() {
		defer close(held)
		for ctx.Err() == nil { // again if it met the other request waiting
			req, _ := http.NewRequestWithContext(ctx, "POST", url+"/v1/apps/durable/invoke?session=held", strings.NewReader(`{"kind":"lonely","n":1}`))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return
			}
			resp.Body.Close()
		}
	}()
	waitFor(t, 10*time.Second, "the held session running", func() bool {
		_, st := call(t, "GET", url+"/v1/sessions/held", "")
		return st.Status == "running"
	})
	waitFor(t, 10*time.Second, "a second request refused while one waits", func() bool {
		code, r := call(t, "POST", url+"/v1/apps/durable/invoke?session=second", `{"kind":"direct","n":1}`)
		return code == http.StatusTooManyRequests && strings.Contains(r.Error, "too many requests waiting")
	})
	cancel()
	<-held

	// Sessions: direct (done), held and one more lonely are three; the
	// next lonely one makes room by dropping the finished one; with three
	// running, a new invocation is refused.
	var lonely []string
	for i := 0; i < 2; i++ {
		code, r := call(t, "POST", url+"/v1/apps/durable/invoke?async=true", `{"kind":"lonely","n":1}`)
		if code != http.StatusAccepted {
			t.Fatalf("lonely %d: %d %+v", i, code, r)
		}
		lonely = append(lonely, r.Session)
	}
	waitFor(t, 10*time.Second, "three sessions running", func() bool {
		for _, id := range append(lonely, "held") {
			if _, st := call(t, "GET", url+"/v1/sessions/"+id, ""); st.Status != "running" {
				return false
			}
		}
		return true
	})
	code, r := call(t, "POST", url+"/v1/apps/durable/invoke", `{"kind":"direct","n":2}`)
	if code != http.StatusTooManyRequests || r.Status != "refused" {
		t.Fatalf("a fourth session with three running: %d %+v, want 429", code, r)
	}
	if code, st := call(t, "GET", url+"/v1/sessions/"+r.Session, ""); code != http.StatusNotFound {
		t.Errorf("the refused session: %d %+v, want 404 (stored nowhere)", code, st)
	}
	// The refusals above, counted (the held request may have met the
	// other one waiting once more).
	if m, err := strconv.Atoi(scrape(t, node.info.HTTPAddr, "pheromone_invocations_refused_total")); err != nil || m < 2 {
		t.Errorf("refused requests counted: %d (%v), want at least 2", m, err)
	}
}
