package kafka

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/aws"
)

// token reads the OAUTHBEARER token file. A JWT whose exp claim has passed
// is refused here with its expiry, before a broker sees it: the broker's
// answer would only say that the login failed.
func (s SASL) token() (string, error) {
	b, err := os.ReadFile(s.TokenFile)
	if err != nil {
		return "", fmt.Errorf("kafka: oauth token: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("kafka: oauth token file %s is empty", s.TokenFile)
	}
	if exp, ok := jwtExpiry(tok); ok {
		now := time.Now
		if s.Now != nil {
			now = s.Now
		}
		if !now().Before(exp) {
			return "", fmt.Errorf("kafka: the OAUTHBEARER token in %s expired at %s: write a fresh one there (the file is read at every login)", s.TokenFile, exp.UTC().Format(time.RFC3339))
		}
	}
	return tok, nil
}

// jwtExpiry is the exp claim of a JWT (header.payload.signature), if tok
// is one and has it.
func jwtExpiry(tok string) (time.Time, bool) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return time.Time{}, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return time.Time{}, false
	}
	var claims struct {
		Exp *json.Number `json:"exp"`
	}
	if json.Unmarshal(payload, &claims) != nil || claims.Exp == nil {
		return time.Time{}, false
	}
	sec, err := claims.Exp.Float64()
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(int64(sec), 0), true
}

// awsAuth reads AWS_MSK_IAM's credentials from the environment, the way
// AWS SDKs do; a rotated session token is picked up at the next login.
func (s SASL) awsAuth() (aws.Auth, error) {
	getenv := s.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	a := aws.Auth{AccessKey: getenv("AWS_ACCESS_KEY_ID"), SecretKey: getenv("AWS_SECRET_ACCESS_KEY"), SessionToken: getenv("AWS_SESSION_TOKEN")}
	if a.AccessKey == "" || a.SecretKey == "" {
		return aws.Auth{}, errors.New("kafka: sasl AWS_MSK_IAM takes its credentials from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN); they are not set")
	}
	return a, nil
}

// loginHook tells refused of every broker connection whose SASL login
// failed: the broker answered the authentication with an error, closed
// the connection on it (as some brokers do instead of answering), or the
// client could not produce its credentials.
type loginHook func(broker string, err error)

// SASLHandshake and SASLAuthenticate.
const keySASLHandshake, keySASLAuthenticate = 17, 36

func (h loginHook) OnBrokerE2E(meta kgo.BrokerMetadata, key int16, e2e kgo.BrokerE2E) {
	if key != keySASLAuthenticate && key != keySASLHandshake {
		return
	}
	if err := e2e.Err(); err != nil {
		h(brokerAddr(meta), err)
	}
}

func (h loginHook) OnBrokerConnect(meta kgo.BrokerMetadata, _ time.Duration, _ net.Conn, err error) {
	var ke *kerr.Error
	switch {
	case err == nil:
	case errors.As(err, &ke) && (ke == kerr.SaslAuthenticationFailed || ke == kerr.UnsupportedSaslMechanism || ke == kerr.IllegalSaslState):
		h(brokerAddr(meta), err)
	case strings.HasPrefix(err.Error(), "kafka: oauth token") || strings.HasPrefix(err.Error(), "kafka: the OAUTHBEARER") || strings.HasPrefix(err.Error(), "kafka: sasl"):
		h(brokerAddr(meta), err)
	}
}

func brokerAddr(m kgo.BrokerMetadata) string {
	return net.JoinHostPort(m.Host, strconv.Itoa(int(m.Port)))
}

// Access is what a node needs of the cluster.
type Access struct {
	Read, Write []string // topics
	Group       string   // the consumer group it joins
}

// AccessError says what the cluster refused the node: its login, or the
// permissions it lacks, all of them.
type AccessError struct {
	Brokers []string
	Who     string // the SASL identity, without secrets
	Login   error  // the login failed (the rest is then empty)
	Broker  string // which broker refused the login
	Missing []string
}

func (e *AccessError) Error() string {
	if e.Login != nil && errors.Is(e.Login, io.EOF) {
		return fmt.Sprintf("kafka: broker %s closed the connection during the login (%s): the user or its password is wrong; check kafka.sasl and the credentials it names", e.Broker, e.Who)
	}
	if e.Login != nil {
		return fmt.Sprintf("kafka: broker %s refused the login (%s): %v; check kafka.sasl and the credentials it names", e.Broker, e.Who, e.Login)
	}
	return fmt.Sprintf("kafka: the cluster at %s does not allow %s to:\n  - %s\ngrant these ACLs (or use an identity that has them)",
		strings.Join(e.Brokers, ","), e.Who, strings.Join(e.Missing, "\n  - "))
}

// CheckAccess logs in to the cluster and asks what the node may do with
// its topics and group, before it starts: a refused login or a missing
// ACL is one error naming the broker, the operation and the topic or group
// (all of them at once), instead of retries deep inside a running node.
// Brokers that do not report authorized operations pass unchecked.
func CheckAccess(ctx context.Context, conn Conn, need Access) error {
	who := conn.who()
	if s := conn.SASL; s != nil && s.Mechanism == "OAUTHBEARER" {
		// A token that is missing or expired is known before any broker
		// is asked (which would only answer that the login failed).
		if _, err := s.token(); err != nil {
			return &AccessError{Brokers: conn.Brokers, Who: who, Broker: strings.Join(conn.Brokers, ","), Login: err}
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var mu sync.Mutex
	var refused *AccessError
	conn.refused = func(broker string, err error) {
		mu.Lock()
		if refused == nil {
			refused = &AccessError{Brokers: conn.Brokers, Who: who, Broker: broker, Login: err}
		}
		mu.Unlock()
		cancel()
	}
	cl, err := conn.client()
	if err != nil {
		return fmt.Errorf("kafka: %w", err)
	}
	defer cl.Close()
	failed := func(op string, err error) error {
		mu.Lock()
		defer mu.Unlock()
		if refused != nil {
			return refused
		}
		return fmt.Errorf("kafka: %s on %s: %w", op, strings.Join(conn.Brokers, ","), err)
	}
	topics := slices.Compact(slices.Sorted(slices.Values(append(slices.Clone(need.Read), need.Write...))))
	req := kmsg.NewPtrMetadataRequest()
	req.IncludeTopicAuthorizedOperations = true
	for _, t := range topics {
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr(t)
		req.Topics = append(req.Topics, rt)
	}
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return failed("metadata", err)
	}
	ae := &AccessError{Brokers: conn.Brokers, Who: who}
	for _, t := range resp.Topics {
		name := kmsg.StringPtr("")
		if t.Topic != nil {
			name = t.Topic
		}
		if err := kerr.ErrorForCode(t.ErrorCode); errors.Is(err, kerr.TopicAuthorizationFailed) {
			ae.Missing = append(ae.Missing, fmt.Sprintf("describe topic %q (Describe)", *name))
			continue
		}
		ops := t.AuthorizedOperations
		if ops == int32(-2147483648) { // not reported
			continue
		}
		if slices.Contains(need.Read, *name) && !allowed(ops, kmsg.ACLOperationRead) {
			ae.Missing = append(ae.Missing, fmt.Sprintf("read topic %q (Read)", *name))
		}
		if slices.Contains(need.Write, *name) && !allowed(ops, kmsg.ACLOperationWrite) {
			ae.Missing = append(ae.Missing, fmt.Sprintf("write topic %q (Write)", *name))
		}
	}
	if need.Group != "" {
		g := kmsg.NewPtrDescribeGroupsRequest()
		g.Groups = []string{need.Group}
		g.IncludeAuthorizedOperations = true
		gr, err := g.RequestWith(ctx, cl)
		switch {
		case errors.Is(err, kerr.GroupAuthorizationFailed): // finding its coordinator
			gr = &kmsg.DescribeGroupsResponse{Groups: []kmsg.DescribeGroupsResponseGroup{{Group: need.Group, ErrorCode: kerr.GroupAuthorizationFailed.Code}}}
		case err != nil:
			return failed("describe group", err)
		}
		for _, d := range gr.Groups {
			switch err := kerr.ErrorForCode(d.ErrorCode); {
			case errors.Is(err, kerr.GroupAuthorizationFailed):
				ae.Missing = append(ae.Missing, fmt.Sprintf("use consumer group %q (Read, Describe)", need.Group))
			case d.AuthorizedOperations != int32(-2147483648) && !allowed(d.AuthorizedOperations, kmsg.ACLOperationRead):
				ae.Missing = append(ae.Missing, fmt.Sprintf("join consumer group %q (Read)", need.Group))
			}
		}
	}
	if len(ae.Missing) > 0 {
		return ae
	}
	return nil
}

// who names the identity c logs in as, without secrets.
func (c Conn) who() string {
	if c.SASL == nil {
		return "the node (no SASL)"
	}
	return c.SASL.String()
}

func allowed(ops int32, op kmsg.ACLOperation) bool { return ops&(1<<int32(op)) != 0 }

// IsAuthorization reports whether err is the cluster refusing a login or an
// operation: not worth retrying, since only an operator can change it.
func IsAuthorization(err error) bool {
	var ae *AccessError
	if errors.As(err, &ae) {
		return true
	}
	for _, k := range []*kerr.Error{kerr.SaslAuthenticationFailed, kerr.TopicAuthorizationFailed, kerr.GroupAuthorizationFailed,
		kerr.ClusterAuthorizationFailed, kerr.TransactionalIDAuthorizationFailed} {
		if errors.Is(err, k) {
			return true
		}
	}
	return false
}
