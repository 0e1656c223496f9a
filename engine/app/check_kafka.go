package app

import (
	"fmt"
	"strings"
	"time"
)

// kafka checks the app name and the kafka section, and fills its defaults.
func (v *validation) kafka() {
	a, c := v.a, v.c
	if a.Name == "" {
		c.add("app", "must be set")
	} else if !validName(a.Name) {
		c.add("app", "%q: use letters, digits, '-', '_' and '.'", a.Name)
	}
	if a.Kafka.Group == "" {
		a.Kafka.Group = "pheromone-" + a.Name
	}
	if a.Kafka.DLQTopic == "" {
		a.Kafka.DLQTopic = a.Name + ".dlq"
	}
	if a.Kafka.ChangelogTopic == "" {
		a.Kafka.ChangelogTopic = a.Name + ".changelog"
	}
	switch a.Kafka.Guarantee {
	case "":
		a.Kafka.Guarantee = AtLeastOnce
	case AtLeastOnce, ExactlyOnce:
	default:
		c.add("kafka.guarantee", "%q: want at_least_once or exactly_once", a.Kafka.Guarantee)
	}
	kdur := func(field, v string, def time.Duration, dst *time.Duration) {
		*dst = def
		if v == "" {
			return
		}
		if d, err := time.ParseDuration(v); err != nil || d <= 0 {
			c.add("kafka."+field, "%q is not a positive duration (try 100ms, 10s)", v)
		} else {
			*dst = d
		}
	}
	switch a.Kafka.OnOffsetLoss {
	case "":
		a.Kafka.OnOffsetLoss = OffsetLossFail
	case OffsetLossFail, OffsetLossEarliest, OffsetLossLatest:
	default:
		c.add("kafka.on_offset_loss", "%q: want fail, earliest or latest", a.Kafka.OnOffsetLoss)
	}
	kdur("commit_interval", a.Kafka.CommitInterval, DefaultCommitInterval, &a.Kafka.commitInterval)
	kdur("session_timeout", a.Kafka.SessionTimeout, DefaultSessionTimeout, &a.Kafka.sessionTimeout)
	if a.Kafka.StandbyReplicas < 0 {
		c.add("kafka.standby_replicas", "must be >= 0")
	} else if a.Kafka.StandbyReplicas > 0 && !a.Kafka.ChangelogEnabled() {
		c.add("kafka.standby_replicas", "standby replicas follow the changelog; set kafka.changelog: true")
	}
	v.security()
	for i, b := range a.Kafka.Brokers {
		if !strings.Contains(b, ":") {
			c.add(fmt.Sprintf("kafka.brokers[%d]", i), "%q: want host:port", b)
		}
	}
}

const mechanisms = "PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER or AWS_MSK_IAM"

// security checks kafka.tls and kafka.sasl.
func (v *validation) security() {
	k, c := &v.a.Kafka, v.c
	if t := k.TLS; t != nil && (t.CertFile == "") != (t.KeyFile == "") {
		c.add("kafka.tls", "cert_file and key_file go together (the client's certificate and its key)")
	}
	s := k.SASL
	if s == nil {
		return
	}
	secret := s.PasswordEnv != "" || s.PasswordFile != ""
	switch s.Mechanism {
	case "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
		if s.Username == "" {
			c.add("kafka.sasl.username", "must be set for %s", s.Mechanism)
		}
		if !secret {
			c.add("kafka.sasl.password_env", "must name the environment variable that holds the password, or set password_file (it is never in the app file)")
		}
		if s.PasswordEnv != "" && s.PasswordFile != "" {
			c.add("kafka.sasl.password_file", "password_env and password_file exclude each other")
		}
		if s.TokenFile != "" {
			c.add("kafka.sasl.token_file", "only OAUTHBEARER takes a token file")
		}
	case "OAUTHBEARER", "AWS_MSK_IAM":
		if s.Mechanism == "OAUTHBEARER" && s.TokenFile == "" {
			c.add("kafka.sasl.token_file", "must be set for OAUTHBEARER")
		}
		if s.Mechanism == "AWS_MSK_IAM" && s.TokenFile != "" {
			c.add("kafka.sasl.token_file", "only OAUTHBEARER takes a token file; AWS_MSK_IAM reads AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN")
		}
		if secret || s.Username != "" {
			c.add("kafka.sasl", "%s takes no username or password", s.Mechanism)
		}
	case "":
		c.add("kafka.sasl.mechanism", "must be set (%s)", mechanisms)
	default:
		c.add("kafka.sasl.mechanism", "%q: want %s", s.Mechanism, mechanisms)
	}
}
