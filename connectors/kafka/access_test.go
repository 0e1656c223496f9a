package kafka

import (
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func allow(resource kmsg.ACLResourceType, name string, op kmsg.ACLOperation) kfake.ACL {
	return kfake.ACL{Resource: resource, Name: name, Pattern: kmsg.ACLResourcePatternTypeLiteral, Operation: op, Allow: true}
}

// TestAccessIsCheckedBeforeStart: against a cluster with ACLs, a node that
// may read its source but not write its sink nor join its group is told
// all of it at once, naming each topic, group and operation; a wrong
// password is one error naming the broker, seen at the login rather than
// after the client's retries, and without the password; topics that exist need no
// Create, and a missing one the node may not create says so.
func TestAccessIsCheckedBeforeStart(t *testing.T) {
	_, brokers := broker(t, kfake.EnableSASL(), kfake.EnableACLs(),
		kfake.Superuser("SCRAM-SHA-256", "admin", "admin-pw"), kfake.SeedTopics(1, "in", "out"),
		kfake.User("SCRAM-SHA-256", "app", "app-pw",
			allow(kmsg.ACLResourceTypeTopic, "in", kmsg.ACLOperationRead),
			allow(kmsg.ACLResourceTypeTopic, "out", kmsg.ACLOperationDescribe)))
	conn := Conn{Brokers: brokers, SASL: &SASL{Mechanism: "SCRAM-SHA-256", User: "app", Password: "app-pw"}}
	need := Access{Read: []string{"in"}, Write: []string{"out"}, Group: "g"}
	err := CheckAccess(ctx(t), conn, need)
	var ae *AccessError
	if !errors.As(err, &ae) || !IsAuthorization(err) {
		t.Fatalf("missing ACLs: got %v", err)
	}
	want := []string{`write topic "out" (Write)`, `use consumer group "g" (Read, Describe)`}
	if fmt.Sprint(ae.Missing) != fmt.Sprint(want) {
		t.Fatalf("missing = %q, want %q", ae.Missing, want)
	}
	if !strings.Contains(err.Error(), "SCRAM-SHA-256 as app") || !strings.Contains(err.Error(), brokers[0]) {
		t.Fatalf("the error names neither the identity nor the cluster: %v", err)
	}
	t.Logf("missing ACLs:\n%v", err)

	if err := EnsureTopics(ctx(t), conn, map[string]int{"in": 1, "out": 1}); err != nil {
		t.Fatalf("existing topics need no Create: %v", err)
	}
	err = EnsureTopics(ctx(t), conn, map[string]int{"new": 3})
	if !errors.As(err, &ae) || !strings.Contains(err.Error(), `create topic "new"`) {
		t.Fatalf("creating without Create: %v", err)
	}

	bad := conn
	bad.SASL = &SASL{Mechanism: "SCRAM-SHA-256", User: "app", Password: "wrong-pw"}
	// The refusal is seen at the login itself (the hook), not as the
	// client's retries running out: a retry would end in a plain error.
	err = CheckAccess(ctx(t), bad, need)
	if !errors.As(err, &ae) || ae.Login == nil || ae.Broker != brokers[0] {
		t.Fatalf("wrong password: got %v", err)
	}
	if strings.Contains(err.Error(), "wrong-pw") || strings.Contains(err.Error(), "app-pw") {
		t.Fatalf("the error shows a password: %v", err)
	}
	t.Logf("wrong password: %v", err)
}

// TestExpiredTokenIsNamed: an OAUTHBEARER token whose exp has passed is
// refused before any broker sees it, with the file and the expiry; a
// rotated (fresh) token in the same file is taken at the next login.
func TestExpiredTokenIsNamed(t *testing.T) {
	file := filepath.Join(t.TempDir(), "token")
	jwt := func(exp time.Time) string {
		enc := base64.RawURLEncoding.EncodeToString
		return enc([]byte(`{"alg":"none"}`)) + "." + enc(fmt.Appendf(nil, `{"sub":"app","exp":%d}`, exp.Unix())) + ".sig"
	}
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	s := SASL{Mechanism: "OAUTHBEARER", TokenFile: file, Now: func() time.Time { return now }}
	if err := os.WriteFile(file, []byte(jwt(now.Add(-time.Minute))+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := s.token()
	if err == nil || !strings.Contains(err.Error(), "expired at 2026-11-30T11:59:00Z") || !strings.Contains(err.Error(), file) {
		t.Fatalf("expired token: %v", err)
	}
	fresh := jwt(now.Add(time.Hour))
	if err := os.WriteFile(file, []byte(fresh), 0o600); err != nil {
		t.Fatal(err)
	}
	if tok, err := s.token(); err != nil || tok != fresh {
		t.Fatalf("rotated token: %q %v", tok, err)
	}
	if err := os.WriteFile(file, []byte("opaque-token"), 0o600); err != nil {
		t.Fatal(err)
	}
	if tok, err := s.token(); err != nil || tok != "opaque-token" {
		t.Fatalf("a token that is not a JWT is passed as it is: %q %v", tok, err)
	}
}

// TestMSKIAMCredentialsFromTheEnvironment: AWS_MSK_IAM takes the standard
// AWS variables, and says which are missing without showing any.
func TestMSKIAMCredentialsFromTheEnvironment(t *testing.T) {
	env := map[string]string{}
	s := SASL{Mechanism: "AWS_MSK_IAM", Getenv: func(k string) string { return env[k] }}
	if err := s.Check(); err == nil || !strings.Contains(err.Error(), "AWS_ACCESS_KEY_ID") {
		t.Fatalf("missing credentials: %v", err)
	}
	env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"] = "AKIDEXAMPLE", "secret-example"
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
	if m := s.mechanism(); m.Name() != "AWS_MSK_IAM" {
		t.Fatalf("mechanism %s", m.Name())
	}
	if str := s.String(); strings.Contains(str, "secret-example") || strings.Contains(str, "AKIDEXAMPLE") {
		t.Fatalf("String shows a credential: %s", str)
	}
}

// TestBrokerACLSpecs: the embedded broker's ACL flags are parsed or
// refused with the expected form.
func TestBrokerACLSpecs(t *testing.T) {
	for _, ok := range []string{"app:read:topic:events", "app:all:group:pheromone-*", "app:idempotent_write:cluster:x", "app:write:transactional_id:*"} {
		if _, err := BrokerACL(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{"app:read:topic", "app:fly:topic:x", "app:read:planet:x", ":read:topic:x"} {
		if _, err := BrokerACL(bad); err == nil {
			t.Errorf("%s was accepted", bad)
		}
	}
	acl, _ := BrokerACL("ghost:read:topic:x")
	if _, err := StartBroker("127.0.0.1:0", "", acl); err == nil || !strings.Contains(err.Error(), `"ghost"`) {
		t.Errorf("an ACL for an unknown user: %v", err)
	}
}
