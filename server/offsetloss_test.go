package server

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pheromone-go/pheromone/engine"
)

// TestRecreatedTopicStopsThePartition: the source topic is deleted and
// created again with fewer records than the node's state has consumed (the
// broker lost its data). The node used to skip new records silently until
// the log reached its old offsets; now the partition stops and /readyz
// says why, with on_offset_loss: fail.
func TestRecreatedTopicStopsThePartition(t *testing.T) {
	brokers := cluster(t)
	n := startNode(t, ordersApp, brokers, engine.NewManualClock(time.Unix(0, 0)), t.TempDir())
	var vals []string
	for i := 0; i < 10; i++ {
		vals = append(vals, order(i+1, "ann", 10))
	}
	produce(t, brokers, "orders", 0, vals...)
	waitFor(t, 20*time.Second, "ten records committed", func() bool {
		return n.info.Node.Committed()[engine.TopicPartition{Topic: "orders", Partition: 0}] == 10
	})
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx := context.Background()
	parts := int32(1)
	if td, err := adm.ListTopics(ctx, "orders"); err == nil {
		parts = int32(len(td["orders"].Partitions))
	}
	if _, err := adm.DeleteTopics(ctx, "orders"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the topic created again", func() bool {
		r, err := adm.CreateTopic(ctx, parts, 1, nil, "orders")
		return err == nil && r.Err == nil
	})
	produce(t, brokers, "orders", 0, order(11, "bob", 1), order(12, "bob", 1), order(13, "bob", 1))
	var body string
	waitFor(t, 30*time.Second, "the partition stopped", func() bool {
		resp, err := http.Get("http://" + n.info.HTTPAddr + "/readyz")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
		return resp.StatusCode == http.StatusServiceUnavailable && strings.Contains(body, "stopped")
	})
	if !strings.Contains(body, "partition 0 stopped") || !strings.Contains(body, "resumes at offset 10 but the log holds [0, ") {
		t.Errorf("/readyz: %s", body)
	}
	if got := scrape(t, n.info.HTTPAddr, `pheromone_offset_loss_total{app="orders",partition="0",topic="orders"}`); got != "1" {
		t.Errorf("offset loss metric %s", got)
	}
}
