package server

import (
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/pheromone-go/pheromone/connectors/registry"
	"github.com/pheromone-go/pheromone/engine"
)

const orderV1 = `{"type":"record","name":"Order","namespace":"shop","fields":[
 {"name":"id","type":"long"},{"name":"user","type":"string"},{"name":"amount","type":"double"}]}`

// v2 adds a nullable field: compatible.
const orderV2 = `{"type":"record","name":"Order","namespace":"shop","fields":[
 {"name":"id","type":"long"},{"name":"user","type":"string"},{"name":"amount","type":"double"},
 {"name":"coupon","type":["null","string"],"default":null}]}`

// v3 removes nothing and adds another: the node has not seen it when the
// registry goes away.
const orderV3 = `{"type":"record","name":"Order","namespace":"shop","fields":[
 {"name":"id","type":"long"},{"name":"user","type":"string"},{"name":"amount","type":"double"},
 {"name":"channel","type":["null","string"],"default":null}]}`

func avroRecord(t *testing.T, id int, schema string, v map[string]any) string {
	t.Helper()
	s, err := avro.Parse(schema)
	if err != nil {
		t.Fatal(err)
	}
	body, err := avro.Marshal(s, v)
	if err != nil {
		t.Fatal(err)
	}
	return string(append(binary.BigEndian.AppendUint32([]byte{0}, uint32(id)), body...))
}

func registerSchema(t *testing.T, url, subject, text string) int {
	t.Helper()
	id, err := mustClient(t, url).Register(t.Context(), subject, sr.Schema{Schema: text, Type: sr.TypeAvro})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestAvroInAvroOut: a node reads Avro orders (its columns from a schema
// file, registered under orders-value at start), filters them and writes
// Avro (its schema derived and registered under big-value). Orders written
// with a newer compatible schema decode; a wrong magic byte, an unknown
// schema id and an incompatible schema are dead letters with their
// reasons; with the registry down, records of a schema the node has not
// seen wait (readiness says why) and flow once it is back: every good
// order arrives exactly once, decoded by an independent reader.
func TestAvroInAvroOut(t *testing.T) {
	brokers := cluster(t)
	regDir := t.TempDir()
	reg, err := registry.StartEmbedded("127.0.0.1:0", regDir)
	if err != nil {
		t.Fatal(err)
	}
	regAddr := strings.TrimPrefix(reg.URL(), "http://")
	defer func() { reg.Close() }()
	schemaFile := writeFile(t, t.TempDir(), "order.avsc", orderV1)
	yaml := `
app: avro
schema_registry: {url: "` + reg.URL() + `"}
sources:
  - {name: orders, topic: orders, partitions: 1, format: avro, registry: {schema_file: "` + schemaFile + `"}, bucket: orders}
buckets: [{name: orders}]
triggers: [{name: each, bucket: orders, primitive: immediate, function: big}]
functions:
  - {name: big, kind: filter, expr: "amount >= 10", outputs: [big]}
sinks: [{name: big, topic: big, partitions: 1, format: avro}]
`
	n := startNode(t, yaml, brokers, engine.SystemClock{}, t.TempDir())
	defer n.stop()
	id1 := registerSchema(t, reg.URL(), "orders-value", orderV1) // registered by the node: the same id
	id2 := registerSchema(t, reg.URL(), "orders-value", orderV2)
	idBad := registerSchema(t, reg.URL(), "other-value", `{"type":"record","name":"X","fields":[{"name":"amount","type":"string"}]}`)
	if id1 == id2 {
		t.Fatal("v2 got v1's id")
	}
	var want []string
	var in []string
	for i := range 20 {
		amount := float64(i * 2)
		v := map[string]any{"id": int64(i), "user": fmt.Sprintf("u%d", i%3), "amount": amount}
		if i%2 == 0 {
			in = append(in, avroRecord(t, id1, orderV1, v))
		} else {
			v["coupon"] = "C"
			in = append(in, avroRecord(t, id2, orderV2, v))
		}
		if amount >= 10 {
			want = append(want, fmt.Sprintf("%d %s %g", i, v["user"], amount))
		}
	}
	good := in[3]
	in = append(in, "\x01"+good[1:], // wrong magic byte
		string([]byte{0, 0, 0, 0x7f, 0x7f})+good[5:], // unknown id
		avroRecord(t, idBad, `{"type":"record","name":"X","fields":[{"name":"amount","type":"string"}]}`, map[string]any{"amount": "12"}))
	produce(t, brokers, "orders", 0, in...)

	dead := consume(t, brokers, "avro.dlq", 3, 200*time.Millisecond)
	var reasons []string
	for _, r := range dead {
		reasons = append(reasons, header(r, engine.HeaderReason)+": "+header(r, engine.HeaderError))
	}
	sort.Strings(reasons)
	wantReasons := []string{"decode: not in the Confluent wire format: magic byte 1 (want 0)",
		fmt.Sprintf("schema: schema id %d does not fit the source's columns: field amount is string in the record's schema, but the source's column is float64", idBad),
		"schema: schema id 32639 is not in the registry"}
	equalLines(t, "dead letters", reasons, wantReasons)

	// The registry goes away; orders of a schema the node has not seen
	// wait instead of being dead-lettered.
	id3 := registerSchema(t, reg.URL(), "orders-value", orderV3)
	reg.Close()
	var late []string
	for i := 20; i < 25; i++ {
		v := map[string]any{"id": int64(i), "user": "late", "amount": float64(100 + i), "channel": "web"}
		late = append(late, avroRecord(t, id3, orderV3, v))
		want = append(want, fmt.Sprintf("%d late %g", i, float64(100+i)))
	}
	produce(t, brokers, "orders", 0, late...)
	waitFor(t, 20*time.Second, "readiness to say the partition retries", func() bool {
		code, body := readyz(n.info.HTTPAddr)
		return code == http.StatusServiceUnavailable && strings.Contains(body, "retrying") && strings.Contains(body, "unavailable")
	})
	reg, err = registry.StartEmbedded(regAddr, regDir) // the same schemas, from its file
	if err != nil {
		t.Fatal(err)
	}

	out := consume(t, brokers, "big", len(want), 300*time.Millisecond)
	ss, err := mustClient(t, reg.URL()).Version(t.Context(), "big-value", 0)
	if err != nil {
		t.Fatal(err)
	}
	reader, err := avro.Parse(ss.Schema.Schema)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range out {
		if id := int(binary.BigEndian.Uint32(r.Value[1:5])); id != ss.ID {
			t.Fatalf("output with schema id %d, want %d", id, ss.ID)
		}
		var m map[string]any
		if err := avro.Unmarshal(reader, r.Value[5:], &m); err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%v %v %v", m["id"], m["user"], m["amount"]))
	}
	equalLines(t, "outputs", sorted(got), sorted(want))
	if len(consume(t, brokers, "avro.dlq", 3, 300*time.Millisecond)) != 3 {
		t.Fatal("a good order was dead-lettered while the registry was down")
	}
}

func mustClient(t *testing.T, url string) *registry.Client {
	t.Helper()
	cl, err := registry.NewClient(url, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// TestRegistryDownAtStart: a node whose registry does not answer when it
// starts still starts (its schema file cannot be registered yet), says on
// /readyz that its partition retries once records need a schema, and
// decodes them all when the registry comes back.
func TestRegistryDownAtStart(t *testing.T) {
	brokers := cluster(t)
	regDir := t.TempDir()
	reg, err := registry.StartEmbedded("127.0.0.1:0", regDir)
	if err != nil {
		t.Fatal(err)
	}
	regAddr := strings.TrimPrefix(reg.URL(), "http://")
	id := registerSchema(t, reg.URL(), "orders-value", orderV1)
	reg.Close()
	schemaFile := writeFile(t, t.TempDir(), "order.avsc", orderV1)
	n := startNode(t, `
app: avrodown
schema_registry: {url: "http://`+regAddr+`"}
sources:
  - {name: orders, topic: orders, partitions: 1, format: avro, registry: {schema_file: "`+schemaFile+`"}, bucket: orders}
buckets: [{name: orders}]
triggers: [{name: each, bucket: orders, primitive: immediate, function: all}]
functions: [{name: all, kind: emit, outputs: [copy]}]
sinks: [{name: copy, topic: copy, partitions: 1}]
`, brokers, engine.SystemClock{}, t.TempDir())
	defer n.stop()
	var in, want []string
	for i := range 10 {
		in = append(in, avroRecord(t, id, orderV1, map[string]any{"id": int64(i), "user": "u", "amount": float64(i)}))
		want = append(want, fmt.Sprintf(`{"id":%d,"user":"u","amount":%d}`, i, i))
	}
	produce(t, brokers, "orders", 0, in...)
	waitFor(t, 20*time.Second, "readiness to say the partition retries", func() bool {
		code, body := readyz(n.info.HTTPAddr)
		return code == http.StatusServiceUnavailable && strings.Contains(body, "retrying")
	})
	if reg, err = registry.StartEmbedded(regAddr, regDir); err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	equalLines(t, "outputs", sorted(values(consume(t, brokers, "copy", len(want), 300*time.Millisecond))), sorted(want))
	waitFor(t, 20*time.Second, "ready again", func() bool {
		code, _ := readyz(n.info.HTTPAddr)
		return code == http.StatusOK
	})
}

// TestAvroTableLookup: a reference table read from a compacted topic of
// Avro rows (its columns from the subject) joins an Avro source.
func TestAvroTableLookup(t *testing.T) {
	brokers := cluster(t)
	reg, err := registry.StartEmbedded("127.0.0.1:0", "")
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	const userSchema = `{"type":"record","name":"User","fields":[{"name":"user","type":"string"},{"name":"country","type":"string"}]}`
	uid := registerSchema(t, reg.URL(), "users-value", userSchema)
	oid := registerSchema(t, reg.URL(), "orders-value", orderV1)
	n := startNode(t, `
app: avrotable
schema_registry: {url: "`+reg.URL()+`"}
tables:
  - {name: users, topic: users, format: avro, key: user}
sources:
  - {name: orders, topic: orders, partitions: 1, format: avro, bucket: orders}
buckets: [{name: orders}]
triggers: [{name: each, bucket: orders, primitive: immediate, function: where}]
functions:
  - {name: where, kind: lookup, table: users, on: user, table_columns: [country], outputs: [located]}
sinks: [{name: located, topic: located, partitions: 1}]
`, brokers, engine.SystemClock{}, t.TempDir())
	defer n.stop()
	produce(t, brokers, "users", 0, avroRecord(t, uid, userSchema, map[string]any{"user": "ann", "country": "NO"}),
		avroRecord(t, uid, userSchema, map[string]any{"user": "bob", "country": "IT"}))
	waitFor(t, 20*time.Second, "the table's rows", func() bool { return n.info.Node.TableSize("users") == 2 })
	produce(t, brokers, "orders", 0, avroRecord(t, oid, orderV1, map[string]any{"id": int64(1), "user": "bob", "amount": 5.0}),
		avroRecord(t, oid, orderV1, map[string]any{"id": int64(2), "user": "ann", "amount": 7.5}))
	equalLines(t, "located", sorted(values(consume(t, brokers, "located", 2, 200*time.Millisecond))),
		[]string{`{"id":1,"user":"bob","amount":5,"country":"IT"}`, `{"id":2,"user":"ann","amount":7.5,"country":"NO"}`})
}

// readyz is the node's /readyz status and body (0 if it does not answer).
func readyz(addr string) (int, string) {
	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestEachSinkRegistersItsOwnSchema: two functions with a registry sink
// each register only their own output's schema, each under its own subject
// (an aggregate's output once registered itself under the other
// function's sink too).
func TestEachSinkRegistersItsOwnSchema(t *testing.T) {
	brokers := cluster(t)
	reg, err := registry.StartEmbedded("127.0.0.1:0", "")
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	schemaFile := writeFile(t, t.TempDir(), "order.avsc", orderV1)
	n := startNode(t, `
app: twosinks
schema_registry: {url: "`+reg.URL()+`"}
sources:
  - {name: orders, topic: orders, partitions: 1, format: avro, registry: {schema_file: "`+schemaFile+`"}, bucket: orders}
buckets: [{name: orders}]
triggers:
  - {name: each, bucket: orders, primitive: immediate, function: big}
  - {name: all, bucket: orders, primitive: immediate, function: per_user}
functions:
  - {name: big, kind: filter, expr: "amount >= 10", outputs: [big]}
  - {name: per_user, kind: aggregate, group_by: [user], aggregates: [{name: n, op: count}], outputs: [counts]}
sinks:
  - {name: big, topic: big, partitions: 1, format: avro}
  - {name: counts, topic: counts, partitions: 1, format: protobuf}
`, brokers, engine.SystemClock{}, t.TempDir())
	defer n.stop()
	id := registerSchema(t, reg.URL(), "orders-value", orderV1)
	produce(t, brokers, "orders", 0, avroRecord(t, id, orderV1, map[string]any{"id": int64(1), "user": "ann", "amount": 50.0}))
	consume(t, brokers, "big", 1, 0)
	consume(t, brokers, "counts", 1, 0)
	cl := mustClient(t, reg.URL())
	for subject, want := range map[string][]string{"big-value": {"id", "user", "amount"}, "counts-value": {"user", "n"}} {
		ss, err := cl.Version(t.Context(), subject, 0)
		if err != nil {
			t.Fatal(err)
		}
		if ss.Version != 1 {
			t.Errorf("%s has %d versions", subject, ss.Version)
		}
		for _, f := range want {
			if !strings.Contains(ss.Schema.Schema, f) {
				t.Errorf("%s: %s lacks %s", subject, ss.Schema.Schema, f)
			}
		}
		if subject == "big-value" && strings.Contains(ss.Schema.Schema, `"n"`) {
			t.Errorf("big-value holds the aggregate's schema: %s", ss.Schema.Schema)
		}
	}
}
