package cli

// ordersApp is a valid app file the validate tests break in known ways.
const ordersApp = `
app: orders
sources:
  - name: orders
    topic: orders
    partitions: 2
    schema:
      - {name: id, type: int64}
      - {name: user, type: string}
      - {name: amount, type: float64}
    key: user
    bucket: orders
    max_record_bytes: 200
buckets:
  - name: orders
  - name: big
triggers:
  - {name: each, bucket: orders, primitive: immediate, function: keep_big}
  - {name: every3, bucket: big, primitive: by_batch_size, count: 3, function: batch_total}
  - {name: every10s, bucket: big, primitive: by_time, window: 10s, function: per_user}
functions:
  - name: keep_big
    kind: filter
    expr: amount >= 10
    outputs: [big]
  - name: batch_total
    kind: aggregate
    aggregates:
      - {name: n, op: count}
      - {name: total, op: sum, column: amount}
      - {name: first_id, op: min, column: id}
    outputs: [batch_totals]
  - name: per_user
    kind: aggregate
    group_by: [user]
    aggregates:
      - {name: n, op: count}
      - {name: total, op: sum, column: amount}
    outputs: [window_totals]
sinks:
  - {name: batch_totals, topic: batch-totals}
  - {name: window_totals, topic: window-totals, key: user}
`
