package kafka

import (
	"context"
	"crypto/tls"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Broker is an embedded Kafka-compatible broker (kfake).
type Broker struct{ c *kfake.Cluster }

// StartBroker starts a one-broker cluster listening on addr's port (on
// 127.0.0.1), persisting to dataDir when it is not empty.
func StartBroker(addr string, dataDir string, opts ...BrokerOpt) (*Broker, error) {
	return StartBrokers(addr, 1, dataDir, opts...)
}

// StartBrokers starts a cluster of count brokers on consecutive ports from
// addr's port (port 0: any free ports).
func StartBrokers(addr string, count int, dataDir string, opts ...BrokerOpt) (*Broker, error) {
	port, err := portOf(addr)
	if err != nil {
		return nil, err
	}
	if count < 1 {
		count = 1
	}
	ports := make([]int, count)
	for i := range ports {
		if port != 0 {
			ports[i] = port + i
		}
	}
	kopts := []kfake.Opt{kfake.NumBrokers(count), kfake.Ports(ports...), kfake.DefaultNumPartitions(4),
		// Development clusters may fail over faster than Kafka's 6 s floor.
		kfake.BrokerConfigs(map[string]string{"group.min.session.timeout.ms": "1000"})}
	if dataDir != "" {
		kopts = append(kopts, kfake.DataDir(dataDir))
	}
	sec, tlsCfg, sasl, err := brokerOpts(opts)
	if err != nil {
		return nil, err
	}
	kopts = append(kopts, sec...)
	c, err := kfake.NewCluster(kopts...)
	if err != nil {
		return nil, fmt.Errorf("kafka: embedded broker on %s: %w", addr, err)
	}
	if sasl {
		if err := advertiseHandshakeV0(c, tlsCfg); err != nil {
			c.Close()
			return nil, fmt.Errorf("kafka: embedded broker on %s: %w", addr, err)
		}
	}
	return &Broker{c: c}, nil
}

// advertiseHandshakeV0 makes c list SaslHandshake from version 0, as Kafka
// does. kfake serves only version 1 and says so; librdkafka (kcat, and the
// many clients built on it) then decides that the broker cannot do SASL at
// all, although it only ever sends version 1. The broker's own list of
// versions is read once and served again with that one change.
func advertiseHandshakeV0(c *kfake.Cluster, tlsCfg *tls.Config) error {
	o := []kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()[0])}
	if tlsCfg != nil {
		// The broker just started in this process: nothing to verify.
		o = append(o, kgo.DialTLSConfig(&tls.Config{InsecureSkipVerify: true})) //nolint:gosec
	}
	cl, err := kgo.NewClient(o...)
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req := kmsg.NewPtrApiVersionsRequest()
	req.Version = 3
	req.ClientSoftwareName, req.ClientSoftwareVersion = "pheromone", "1"
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return fmt.Errorf("reading its API versions: %w", err)
	}
	keys := slices.Clone(resp.ApiKeys)
	for i := range keys {
		if keys[i].ApiKey == keySASLHandshake {
			keys[i].MinVersion = 0
		}
	}
	c.ControlKey(18, func(r kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		v := r.(*kmsg.ApiVersionsRequest)
		if v.Version > 3 {
			return nil, nil, false // kfake answers what it does not serve
		}
		out := v.ResponseKind().(*kmsg.ApiVersionsResponse)
		out.ApiKeys = keys
		return out, nil, true
	})
	return nil
}

// Addrs are the broker's listen addresses.
func (b *Broker) Addrs() []string { return b.c.ListenAddrs() }

// Close stops the broker, syncing its data.
func (b *Broker) Close() { b.c.Close() }

func portOf(addr string) (int, error) {
	var port int
	i := len(addr) - 1
	for i >= 0 && addr[i] != ':' {
		i--
	}
	if _, err := fmt.Sscanf(addr[i+1:], "%d", &port); err != nil || port < 0 || port > 65535 {
		return 0, fmt.Errorf("kafka: bad broker address %q (want host:port)", addr)
	}
	return port, nil
}

// BrokerOpt secures the embedded broker, so that TLS, SASL and ACLs can be
// tried and tested on one machine.
type BrokerOpt func(*brokerCfg)

type brokerUser struct {
	mechanism, name, password string
	super                     bool
}

type brokerCfg struct {
	tls   *tls.Config
	users []brokerUser
	acls  map[string][]kfake.ACL // by user
}

// brokerOpts are the cluster options of opts, the TLS configuration they
// serve and whether they turn SASL on.
func brokerOpts(opts []BrokerOpt) (_ []kfake.Opt, tlsCfg *tls.Config, sasl bool, _ error) {
	var c brokerCfg
	for _, o := range opts {
		o(&c)
	}
	var out []kfake.Opt
	if c.tls != nil {
		out = append(out, kfake.TLS(c.tls))
	}
	if len(c.users) > 0 {
		out = append(out, kfake.EnableSASL())
	}
	if len(c.acls) > 0 {
		out = append(out, kfake.EnableACLs())
	}
	known := map[string]bool{}
	for _, u := range c.users {
		known[u.name] = true
		if u.super {
			out = append(out, kfake.Superuser(u.mechanism, u.name, u.password))
			continue
		}
		out = append(out, kfake.User(u.mechanism, u.name, u.password, c.acls[u.name]...))
	}
	for u := range c.acls {
		if !known[u] {
			return nil, nil, false, fmt.Errorf("kafka: an ACL names user %q, who is not a broker user", u)
		}
	}
	return out, c.tls, len(c.users) > 0, nil
}

// BrokerTLS serves TLS with cfg's certificate.
func BrokerTLS(cfg *tls.Config) BrokerOpt { return func(c *brokerCfg) { c.tls = cfg } }

// BrokerUser adds a SASL user (mechanism PLAIN, SCRAM-SHA-256 or
// SCRAM-SHA-512); a superuser passes every ACL. Any user turns SASL on.
func BrokerUser(mechanism, user, password string, super bool) BrokerOpt {
	return func(c *brokerCfg) { c.users = append(c.users, brokerUser{mechanism, user, password, super}) }
}

// BrokerACL parses user:operation:resource:name (operation read, write,
// create, describe, alter, delete or all; resource topic, group, cluster or
// transactional_id; a name ending in * is a prefix, * alone any name),
// allows it, and turns ACLs on: without an ACL, only superusers may act.
func BrokerACL(spec string) (BrokerOpt, error) {
	parts := strings.SplitN(spec, ":", 4)
	if len(parts) != 4 || parts[0] == "" || parts[3] == "" {
		return nil, fmt.Errorf("acl %q: want user:operation:resource:name, e.g. app:read:topic:events", spec)
	}
	op, err := kmsg.ParseACLOperation(strings.ReplaceAll(parts[1], "_", ""))
	if err != nil || op == kmsg.ACLOperationUnknown || op == kmsg.ACLOperationAny {
		return nil, fmt.Errorf("acl %q: unknown operation %q", spec, parts[1])
	}
	res, err := kmsg.ParseACLResourceType(strings.ReplaceAll(parts[2], "_", ""))
	if err != nil || res == kmsg.ACLResourceTypeUnknown || res == kmsg.ACLResourceTypeAny {
		return nil, fmt.Errorf("acl %q: unknown resource %q (topic, group, cluster, transactional_id)", spec, parts[2])
	}
	a := kfake.ACL{Resource: res, Name: parts[3], Pattern: kmsg.ACLResourcePatternTypeLiteral, Operation: op, Allow: true}
	if n := parts[3]; n != "*" && strings.HasSuffix(n, "*") {
		a.Name, a.Pattern = strings.TrimSuffix(n, "*"), kmsg.ACLResourcePatternTypePrefixed
	}
	if res == kmsg.ACLResourceTypeCluster {
		a.Name = "kafka-cluster"
	}
	return func(c *brokerCfg) {
		if c.acls == nil {
			c.acls = map[string][]kfake.ACL{}
		}
		c.acls[parts[0]] = append(c.acls[parts[0]], a)
	}, nil
}
