package app

import "time"

// Kafka says where the brokers are. With no brokers, `pheromone run` starts
// the embedded broker.
type Kafka struct {
	Brokers []string `yaml:"brokers"`
	// Group is the consumer group; default "pheromone-<app>".
	Group string `yaml:"group"`
	// DLQTopic receives bad records and failed invocations; default "<app>.dlq".
	DLQTopic string `yaml:"dlq_topic"`
	// Guarantee is at_least_once (default: a crash may write the outputs of
	// the cycles in flight twice) or exactly_once (each partition task
	// commits its outputs, changelog and input offsets in one Kafka
	// transaction; consumers read with read_committed).
	Guarantee string `yaml:"guarantee"`
	// CommitInterval is how long an exactly_once transaction gathers cycles
	// before it commits; outputs become visible then. Default 100ms.
	CommitInterval string `yaml:"commit_interval"`
	// Changelog replicates every state change to the compacted topic
	// ChangelogTopic so another node can restore a partition; default true.
	Changelog *bool `yaml:"changelog"`
	// ChangelogTopic defaults to "<app>.changelog".
	ChangelogTopic string `yaml:"changelog_topic"`
	// SessionTimeout is how long the group waits for a silent node before
	// moving its partitions; default 10s.
	SessionTimeout string `yaml:"session_timeout"`
	// StandbyReplicas is how many other nodes keep a warm copy of each
	// partition's state by following its changelog, so a failover does not
	// wait for a full restore; default 0.
	StandbyReplicas int `yaml:"standby_replicas"`
	// OnOffsetLoss says what a partition does when its log no longer holds
	// the offset its state resumes from — the log end fell behind it (the
	// broker's data was lost, the topic recreated) or the log start passed
	// it (retention deleted records not consumed yet): fail (default: the
	// partition stops, with an error in the log and on /readyz), earliest
	// (resume at the log start, keeping the state) or latest (resume at the
	// log end, keeping the state). It never skips silently.
	OnOffsetLoss string `yaml:"on_offset_loss"`
	// TLS encrypts every connection to the brokers.
	TLS *TLS `yaml:"tls"`
	// SASL authenticates every connection to the brokers.
	SASL *SASL `yaml:"sasl"`

	commitInterval, sessionTimeout time.Duration
}

// TLS is how the node encrypts its connections to the brokers.
type TLS struct {
	// CAFile is a PEM file of the certificate authorities to trust;
	// default: the system's.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are the client's certificate and key (PEM), for
	// brokers that authenticate clients by certificate.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ServerName is the name the brokers' certificates must carry; default:
	// each broker's host.
	ServerName string `yaml:"server_name"`
	// InsecureSkipVerify trusts any certificate (testing only; the node
	// warns at start).
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// SASL is how the node authenticates to the brokers. Secrets are never in
// the app file: the password comes from the environment variable
// PasswordEnv or the file PasswordFile (a mounted secret).
type SASL struct {
	// Mechanism is PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER or
	// AWS_MSK_IAM (credentials from the AWS_* environment variables).
	Mechanism string `yaml:"mechanism"`
	Username  string `yaml:"username"`
	// PasswordEnv names the environment variable that holds the password.
	PasswordEnv string `yaml:"password_env"`
	// PasswordFile names a file that holds the password.
	PasswordFile string `yaml:"password_file"`
	// TokenFile holds the OAUTHBEARER token, read again at every
	// authentication so it may be rotated.
	TokenFile string `yaml:"token_file"`
}

// ExactlyOnce reports whether the app asks for exactly-once results.
func (k *Kafka) ExactlyOnce() bool { return k.Guarantee == ExactlyOnce }

// ChangelogEnabled reports whether state is replicated to the changelog topic.
func (k *Kafka) ChangelogEnabled() bool { return k.Changelog == nil || *k.Changelog }

// CommitIntervalDuration is the parsed CommitInterval (valid after Validate).
func (k *Kafka) CommitIntervalDuration() time.Duration { return k.commitInterval }

// SessionTimeoutDuration is the parsed SessionTimeout (valid after Validate).
func (k *Kafka) SessionTimeoutDuration() time.Duration { return k.sessionTimeout }

// SessionTimeoutDuration is the parsed SessionTimeout (valid after Validate).
func (t *Trigger) SessionTimeoutDuration() time.Duration { return t.sessionTimeout }
