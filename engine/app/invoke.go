package app

import "time"

// Invoke configures POST /v1/apps/{app}/invoke: the request body becomes
// objects of session S in the Entry bucket — durably, through the
// invocations topic to the partition that owns S (default), or straight
// into a partition this node owns (durable: false) — and the first batch a
// function emits to the Result sink in session S is the response.
type Invoke struct {
	// Entry is a bucket fed by a source, with a string session column.
	Entry string `yaml:"entry"`
	// Result is a sink of kind result.
	Result string `yaml:"result"`
	// Timeout bounds a synchronous invocation; default 30s.
	Timeout string `yaml:"timeout"`
	// Durable (default true) writes each invocation to the app's
	// invocations topic before it is accepted; the partition that owns
	// its session runs it from there and keeps its status and result in
	// its state (docs/invocations.md). false puts invocations straight
	// into a task's inbox: faster, lost if the node crashes.
	Durable *bool `yaml:"durable"`
	// SessionTimeout (default 10m) is how long a durable session may run
	// without a result before it is timed out (its pending trigger state
	// dropped, a later result ignored).
	SessionTimeout string `yaml:"session_timeout"`
	// SessionTTL (default 1h, at least SessionTimeout) is how long after
	// its start a durable session's record — status, result, idempotency
	// — is kept; a retry with the same key after it runs again.
	SessionTTL string `yaml:"session_ttl"`
	// MaxSessions (default 100000) bounds the sessions each partition
	// keeps; an invocation beyond it fails (429 to a waiting client).
	MaxSessions int `yaml:"max_sessions"`
	// MaxWaiting (default 10000) bounds the requests a node holds open
	// waiting for results; beyond it POST answers 429.
	MaxWaiting int `yaml:"max_waiting"`

	timeout, sessionTimeout, sessionTTL time.Duration
}

// TimeoutDuration is the parsed Timeout (valid after Validate).
func (iv *Invoke) TimeoutDuration() time.Duration { return iv.timeout }

// IsDurable reports whether invocations go through the invocations topic.
func (iv *Invoke) IsDurable() bool { return iv.Durable == nil || *iv.Durable }

// SessionTimeoutDuration is the parsed SessionTimeout (valid after Validate).
func (iv *Invoke) SessionTimeoutDuration() time.Duration { return iv.sessionTimeout }

// SessionTTLDuration is the parsed SessionTTL (valid after Validate).
func (iv *Invoke) SessionTTLDuration() time.Duration { return iv.sessionTTL }

// Defaults of the durable invocation settings.
const (
	DefaultInvocationTimeout = 10 * time.Minute
	DefaultInvocationTTL     = time.Hour
	DefaultMaxSessions       = 100_000
	DefaultMaxWaiting        = 10_000
)

// InvocationsTopic is the topic durable invocations, cancellations and
// results travel through, co-partitioned with the sources (keyed by
// session).
func (a *App) InvocationsTopic() string { return a.Name + ".invocations" }

// DurableInvoke reports whether the app has an invoke section whose
// invocations are durable.
func (a *App) DurableInvoke() bool { return a.Invoke != nil && a.Invoke.IsDurable() }
