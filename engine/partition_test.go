package engine_test

import (
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pheromone-go/pheromone/engine"
)

// TestPartitionOfMatchesKafkaProducer pins that engine.PartitionOf (which
// decides whether a repartitioned object stays local and where queries are
// routed) agrees with franz-go's keyed partitioning, which matches the Java
// client's: a topic produced with the same keys is co-partitioned.
func TestPartitionOfMatchesKafkaProducer(t *testing.T) {
	p := kgo.StickyKeyPartitioner(nil).ForTopic("t")
	for _, n := range []int{1, 3, 4, 12, 100} {
		for i := 0; i < 2000; i++ {
			key := []byte(fmt.Sprintf("key-%d-%s", i, "xyz"[:i%4]))
			want := p.Partition(&kgo.Record{Key: key}, n)
			if got := engine.PartitionOf(key, n); int(got) != want {
				t.Fatalf("PartitionOf(%q, %d) = %d, franz-go says %d", key, n, got, want)
			}
		}
	}
}
