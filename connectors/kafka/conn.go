package kafka

import "github.com/twmb/franz-go/pkg/kgo"

// Conn is how the node reaches a Kafka cluster: its seed brokers, and the
// settings every client it opens shares (sources, producers, transactional
// writers, changelog readers, admin, the group describer).
type Conn struct {
	Brokers []string
}

// Plain is a Conn to brokers with no further settings.
func Plain(brokers ...string) Conn { return Conn{Brokers: brokers} }

// opts are the client options of every client of c, then extra.
func (c Conn) opts(extra ...kgo.Opt) []kgo.Opt {
	return append([]kgo.Opt{kgo.SeedBrokers(c.Brokers...)}, extra...)
}

// client opens a client of c.
func (c Conn) client(extra ...kgo.Opt) (*kgo.Client, error) {
	return kgo.NewClient(c.opts(extra...)...)
}
