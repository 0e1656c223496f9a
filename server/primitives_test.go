package server

import (
	"testing"
	"time"

	"github.com/pheromone-go/pheromone/engine"
)

const primitivesApp = `
app: prims
sources:
  - name: words
    topic: words
    partitions: 1
    schema: [{name: job, type: string}, {name: key, type: string}, {name: word, type: string}]
    key: key
    bucket: words
  - name: set
    topic: set
    partitions: 1
    schema: [{name: req, type: string}, {name: key, type: string}, {name: val, type: int64}]
    key: key
    bucket: set
  - name: replicas
    topic: replicas
    partitions: 1
    schema: [{name: req, type: string}, {name: key, type: string}, {name: val, type: int64}]
    bucket: replicas
  - name: join
    topic: join
    partitions: 1
    schema: [{name: req, type: string}, {name: key, type: string}, {name: val, type: int64}, {name: expect, type: int64}]
    key: key
    bucket: join
  - name: alerts
    topic: alerts
    partitions: 1
    schema: [{name: host, type: string}, {name: key, type: string}, {name: val, type: int64}]
    key: key
    bucket: alerts
buckets:
  - {name: alerts, session: host}
  - {name: words, session: job}
  - {name: set, session: req}
  - {name: replicas, session: req}
  - {name: join, session: req}
triggers:
  - {name: alarm, bucket: alerts, primitive: by_name, match: alarm, function: pass_alarm}
  - {name: shuffle, bucket: words, primitive: dynamic_group, control_key: _done, controls: 2, group_column: word, function: reduce}
  - {name: all3, bucket: set, primitive: by_set, keys: [a, b, c], function: pass_set}
  - {name: first2, bucket: replicas, primitive: redundant, k: 2, n: 3, session_timeout: 10s, function: pass_replicas}
  - {name: joined, bucket: join, primitive: dynamic_join, count_column: expect, function: sum_join}
functions:
  - name: reduce
    kind: aggregate
    group_by: [job, word]
    aggregates: [{name: n, op: count}]
    outputs: [word_counts]
  - {name: pass_set, kind: emit, outputs: [set_out]}
  - {name: pass_alarm, kind: emit, outputs: [alarms]}
  - {name: pass_replicas, kind: emit, outputs: [replicas_out]}
  - name: sum_join
    kind: aggregate
    group_by: [req]
    aggregates: [{name: n, op: count}, {name: total, op: sum, column: val}]
    outputs: [join_out]
sinks:
  - {name: alarms, topic: alarms}
  - {name: word_counts, topic: word-counts}
  - {name: set_out, topic: set-out}
  - {name: replicas_out, topic: replicas-out}
  - {name: join_out, topic: join-out}
`

// TestSessionPrimitives runs by_name, dynamic_group (a MapReduce shuffle), by_set,
// redundant with a session timeout, and dynamic_join end to end over kfake,
// with interleaved sessions, duplicates and late announcements, and checks
// every output topic exactly.
func TestSessionPrimitives(t *testing.T) {
	brokers := cluster(t)
	clock := engine.NewManualClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	n := startNode(t, primitivesApp, brokers, clock, t.TempDir())

	produce(t, brokers, "words", 0,
		`{"job":"j1","key":"w","word":"apple"}`,
		`{"job":"j1","key":"w","word":"pear"}`,
		`{"job":"j2","key":"w","word":"apple"}`,
		`{"job":"j1","key":"w","word":"apple"}`,
		`{"job":"j1","key":"_done"}`,
		`{"job":"j2","key":"_done"}`,
		`{"job":"j1","key":"w","word":"pear"}`,
		`{"job":"j1","key":"_done"}`,
		`{"job":"j2","key":"_done"}`)
	produce(t, brokers, "set", 0,
		`{"req":"r1","key":"c","val":3}`,
		`{"req":"r2","key":"a","val":10}`,
		`{"req":"r1","key":"a","val":1}`,
		`{"req":"r1","key":"a","val":100}`,
		`{"req":"r2","key":"b","val":20}`,
		`{"req":"r1","key":"b","val":2}`,
		`{"req":"r2","key":"c","val":30}`)
	produce(t, brokers, "replicas", 0,
		`{"req":"q1","key":"x","val":1}`,
		`{"req":"q2","key":"y","val":2}`,
		`{"req":"q1","key":"z","val":3}`,
		`{"req":"q1","key":"w","val":4}`,
		`{"req":"q3","key":"v","val":5}`)
	produce(t, brokers, "join", 0,
		`{"req":"s1","key":"p1","val":5}`,
		`{"req":"s1","key":"_join","expect":2}`,
		`{"req":"s2","key":"_join","expect":1}`,
		`{"req":"s1","key":"p2","val":7}`,
		`{"req":"s2","key":"p9","val":1}`)

	produce(t, brokers, "alerts", 0,
		`{"host":"h1","key":"ok","val":0}`,
		`{"host":"h1","key":"alarm","val":1}`,
		`{"host":"h2","key":"alarm","val":2}`,
		`{"host":"h1","key":"ok","val":3}`)
	equalLines(t, "alarms (by_name)", values(consume(t, brokers, "alarms", 2, 200*time.Millisecond)), []string{
		`{"host":"h1","key":"alarm","val":1}`,
		`{"host":"h2","key":"alarm","val":2}`,
	})
	equalLines(t, "word counts (dynamic_group)", values(consume(t, brokers, "word-counts", 3, 200*time.Millisecond)), []string{
		`{"job":"j1","word":"apple","n":2}`,
		`{"job":"j1","word":"pear","n":2}`,
		`{"job":"j2","word":"apple","n":1}`,
	})
	equalLines(t, "sets in declared key order (by_set)", values(consume(t, brokers, "set-out", 6, 200*time.Millisecond)), []string{
		`{"req":"r1","key":"a","val":1}`,
		`{"req":"r1","key":"b","val":2}`,
		`{"req":"r1","key":"c","val":3}`,
		`{"req":"r2","key":"a","val":10}`,
		`{"req":"r2","key":"b","val":20}`,
		`{"req":"r2","key":"c","val":30}`,
	})
	equalLines(t, "first 2 of 3 (redundant)", values(consume(t, brokers, "replicas-out", 2, 200*time.Millisecond)), []string{
		`{"req":"q1","key":"x","val":1}`,
		`{"req":"q1","key":"z","val":3}`,
	})
	equalLines(t, "joins (dynamic_join)", values(consume(t, brokers, "join-out", 2, 200*time.Millisecond)), []string{
		`{"req":"s1","n":2,"total":12}`,
		`{"req":"s2","n":1,"total":1}`,
	})
	if dead := consume(t, brokers, "prims.dlq", 0, 200*time.Millisecond); len(dead) != 0 {
		t.Fatalf("dead letters before any timeout: %q", values(dead))
	}
	clock.Advance(10 * time.Second) // q2 and q3 never reach k=2
	dead := consume(t, brokers, "prims.dlq", 2, 200*time.Millisecond)
	equalLines(t, "timed-out sessions", values(dead), []string{
		`{"req":"q2","key":"y","val":2}`,
		`{"req":"q3","key":"v","val":5}`,
	})
	for _, r := range dead {
		if header(r, engine.HeaderReason) != engine.ReasonSessionTimeout || header(r, engine.HeaderTrigger) != "first2" {
			t.Errorf("dead letter headers %v", r.Headers)
		}
	}
	addr := n.info.HTTPAddr
	for prefix, want := range map[string]string{
		`pheromone_trigger_dropped_total{app="prims",trigger="all3"}`:           "1",
		`pheromone_trigger_dropped_total{app="prims",trigger="first2"}`:         "1",
		`pheromone_dead_letters_total{app="prims",reason="session_timeout"}`:    "2",
		`pheromone_bucket_objects{app="prims",bucket="words",partition="0"}`:    "0",
		`pheromone_bucket_objects{app="prims",bucket="set",partition="0"}`:      "0",
		`pheromone_bucket_objects{app="prims",bucket="replicas",partition="0"}`: "0",
		`pheromone_bucket_objects{app="prims",bucket="join",partition="0"}`:     "0",
		`pheromone_trigger_firings_total{app="prims",trigger="shuffle"}`:        "3",
	} {
		if got := scrape(t, addr, prefix); got != want {
			t.Errorf("%s = %s, want %s", prefix, got, want)
		}
	}
}
