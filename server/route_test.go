package server

import (
	"testing"
	"time"

	"github.com/pheromone-go/pheromone/engine"
)

const routeApp = `
app: routes
sources:
  - name: tx
    topic: tx
    partitions: 1
    schema: [{name: id, type: int64}, {name: user, type: string}, {name: amount, type: float64}]
    bucket: tx
buckets: [{name: tx}, {name: small}]
triggers:
  - {name: each, bucket: tx, primitive: immediate, function: triage}
  - {name: per3, bucket: small, primitive: by_batch_size, count: 3, function: stats}
functions:
  - name: triage
    kind: route
    routes: [{when: "amount >= 1000", to: review}, {when: "amount > 0", to: small}]
    default: rejected
    outputs: [review, small, rejected]
  - name: stats
    kind: aggregate
    aggregates: [{name: users, op: count_distinct, column: user}, {name: top, op: top_k, column: user, k: 2}]
    outputs: [small_stats]
sinks:
  - {name: review, topic: review}
  - {name: rejected, topic: rejected}
  - {name: small_stats, topic: small-stats}
`

// TestRouteAndTopK: a route sends rows to two sinks and a bucket by
// condition, and the bucket's aggregate counts distinct users and the top 2.
func TestRouteAndTopK(t *testing.T) {
	brokers := cluster(t)
	startNode(t, routeApp, brokers, engine.NewManualClock(time.Unix(0, 0)), t.TempDir())
	produce(t, brokers, "tx", 0,
		`{"id":1,"user":"ann","amount":5}`,
		`{"id":2,"user":"bob","amount":5000}`,
		`{"id":3,"user":"bob","amount":7}`,
		`{"id":4,"user":"cat","amount":-1}`,
		`{"id":5,"user":"bob","amount":9}`)
	equalLines(t, "review", values(consume(t, brokers, "review", 1, 200*time.Millisecond)),
		[]string{`{"id":2,"user":"bob","amount":5000}`})
	equalLines(t, "rejected", values(consume(t, brokers, "rejected", 1, 200*time.Millisecond)),
		[]string{`{"id":4,"user":"cat","amount":-1}`})
	equalLines(t, "small stats", values(consume(t, brokers, "small-stats", 1, 200*time.Millisecond)),
		[]string{`{"users":2,"top":["bob","ann"]}`})
}
