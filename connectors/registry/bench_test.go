package registry

import (
	"fmt"
	"testing"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/pheromone-go/pheromone/engine"
	"github.com/pheromone-go/pheromone/engine/app"
	"github.com/pheromone-go/pheromone/engine/codec"
)

const benchEvent = `{"type":"record","name":"AdEvent","namespace":"ysb","fields":[
 {"name":"user_id","type":"string"},{"name":"page_id","type":"string"},{"name":"ad_id","type":"string"},
 {"name":"ad_type","type":"string"},{"name":"event_type","type":"string"},
 {"name":"event_time","type":{"type":"long","logicalType":"timestamp-millis"}},{"name":"ip_address","type":"string"}]}`

func benchSource() *app.Source {
	return &app.Source{Name: "ad_events", Topic: "ad-events", EventTime: "event_time", MaxRecordBytes: 1 << 20, Schema: []app.Column{
		{Name: "user_id", Type: "string"}, {Name: "page_id", Type: "string"}, {Name: "ad_id", Type: "string"}, {Name: "ad_type", Type: "string"},
		{Name: "event_type", Type: "string"}, {Name: "event_time", Type: "timestamp"}, {Name: "ip_address", Type: "string"}}}
}

func benchEvents(i int) map[string]any {
	return map[string]any{"user_id": fmt.Sprintf("u%08x", i*7919), "page_id": fmt.Sprintf("p%08x", i*104729), "ad_id": fmt.Sprintf("ad%04d-%08x", i%1000, i),
		"ad_type": "banner", "event_type": "view", "event_time": time.UnixMilli(1700000000000 + int64(i)), "ip_address": "10.0.0.1"}
}

// BenchmarkDecodeYSB: one YSB event decoded into reserved Arrow builders,
// as Avro (the Confluent wire format) and as JSON (the engine's decoder):
// the per-event cost of the two source formats.
func BenchmarkDecodeYSB(b *testing.B) {
	e, err := StartEmbedded("127.0.0.1:0", "")
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	id, _, err := e.reg.RegisterSchema("ad-events-value", sr.Schema{Schema: benchEvent, Type: sr.TypeAvro})
	if err != nil {
		b.Fatal(err)
	}
	cl, _ := NewClient(e.URL(), nil, nil)
	var avros, jsons [][]byte
	for i := range 1000 {
		v := benchEvents(i)
		avros = append(avros, wireRecordB(b, id, v))
		jsons = append(jsons, fmt.Appendf(nil, `{"user_id":%q,"page_id":%q,"ad_id":%q,"ad_type":"banner","event_type":"view","event_time":%d,"ip_address":"10.0.0.1"}`,
			v["user_id"], v["page_id"], v["ad_id"], v["event_time"].(time.Time).UnixMilli()))
	}
	b.Run("avro", func(b *testing.B) {
		src := benchSource()
		src.Format, src.Registry = Avro, &app.Subject{}
		d, err := New(cl).Wire()[Avro].NewDecoder(src)
		if err != nil {
			b.Fatal(err)
		}
		defer d.Release()
		var r engine.Record
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if i%1000 == 0 {
				d.NewRecord().Release()
				d.Reserve(1000)
			}
			r.Value = avros[i%1000]
			if err := d.Append(&r); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("json", func(b *testing.B) {
		d, err := codec.NewJSONDecoder(benchSource().ArrowSchema(), "event_time")
		if err != nil {
			b.Fatal(err)
		}
		defer d.Release()
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if i%1000 == 0 {
				d.NewRecord().Release()
				d.Reserve(1000)
			}
			if err := d.Append(jsons[i%1000]); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func wireRecordB(b *testing.B, id int, v any) []byte {
	s, err := parseAvro(benchEvent)
	if err != nil {
		b.Fatal(err)
	}
	body, err := avro.Marshal(s, v)
	if err != nil {
		b.Fatal(err)
	}
	return append([]byte{0, byte(id >> 24), byte(id >> 16), byte(id >> 8), byte(id)}, body...)
}
