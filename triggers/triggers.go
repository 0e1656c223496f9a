// Package triggers holds Pheromone's data-trigger primitives. A Trigger
// watches the objects put into one bucket partition and decides when, and
// with which objects, its target function fires.
//
// Triggers work on object metadata only (sequence number, key, session,
// event time); the payloads stay in the bucket. A firing names the objects it
// consumes as sequence spans, so the engine can hand the function exactly
// those rows and delete them once every trigger of the bucket consumed them.
//
// A Trigger instance belongs to one (bucket, partition) and is driven by the
// partition's single owning goroutine: implementations need no locking and
// must not start goroutines. All state a trigger needs to resume after a
// restart is returned by MarshalState, which the engine writes in the same
// state batch as the source offsets that produced it.
//
// The package is a leaf: it imports nothing else from this module.
package triggers

import (
	"fmt"
	"time"
)

// Span is the half-open range [From, To) of object sequence numbers.
type Span struct{ From, To uint64 }

// Len is the number of objects in the span.
func (s Span) Len() int { return int(s.To - s.From) }

// Window is the time range a firing covers; the zero Window means none.
type Window struct{ Start, End time.Time }

// IsZero reports whether the firing has no window.
func (w Window) IsZero() bool { return w.Start.IsZero() && w.End.IsZero() }

// Firing is one invocation decided by a trigger: the trigger, the session it
// belongs to, the window (for time triggers) and the objects it consumes.
type Firing struct {
	Trigger string
	Session string
	// Group is the group of a dynamic_group firing.
	Group   string
	Window  Window
	Objects []Span
	// Expired marks objects released because their session timed out
	// before the trigger fired: the engine dead-letters them instead of
	// invoking the function.
	Expired bool
	// Late marks event-time objects whose windows had all fired: the engine
	// drops and counts them, or puts them into the trigger's late bucket.
	Late bool
	// Overflow marks objects refused because their session already held
	// MaxPerSession objects: the engine dead-letters them.
	Overflow bool
	// Folded, for a trigger with a Folder, is how many objects were folded
	// into the window Pane; Objects is then empty.
	Folded int
	Pane   uint64
}

// Count is the number of objects the firing passes (or folded).
func (f Firing) Count() int {
	n := f.Folded
	for _, s := range f.Objects {
		n += s.Len()
	}
	return n
}

// Objects describes a run of objects just put into a bucket partition. Their
// sequence numbers are First, First+1, ... First+Len-1. The per-object slices
// are either nil (the bucket does not have that attribute) or of length Len;
// they are only valid during the Put call, and their strings may point into
// the objects' Arrow buffers: a trigger that keeps one must clone it.
type Objects struct {
	First      uint64
	Len        int
	Keys       []string
	Sessions   []string
	Groups     []string
	Counts     []int64 // counts announced by dynamic_join control objects
	EventTimes []int64 // unix milliseconds
	// Upstream and Watermarks describe the objects of a bucket fed by
	// several upstream partitions (an event-time trigger with Spec.Inputs):
	// the partition that sent each object, and that partition's watermark
	// (unix ns, NoWatermark for none) just before it. Nil otherwise.
	Upstream   []int32
	Watermarks []int64
}

func (o *Objects) key(i int) string {
	if o.Keys == nil {
		return ""
	}
	return o.Keys[i]
}

func (o *Objects) session(i int) string {
	if o.Sessions == nil {
		return ""
	}
	return o.Sessions[i]
}

func (o *Objects) group(i int) string {
	if o.Groups == nil {
		return ""
	}
	return o.Groups[i]
}

func (o *Objects) count(i int) int64 {
	if o.Counts == nil {
		return 0
	}
	return o.Counts[i]
}

// Trigger is one primitive attached to one bucket partition.
type Trigger interface {
	// Name is the trigger's name from the app file.
	Name() string
	// Put observes newly put objects at processing time now and appends the
	// firings they cause to out.
	Put(objs Objects, now time.Time, out []Firing) []Firing
	// Tick fires what is due at processing time now (timers), appending to out.
	Tick(now time.Time, out []Firing) []Firing
	// NextTick is when Tick next has something to do; the zero time means
	// no timer is pending.
	NextTick() time.Time
	// Low is the smallest sequence number the trigger may still pass to a
	// firing; objects below it are no longer needed by this trigger.
	Low() uint64
	// Pending is how many objects wait for a firing.
	Pending() int
	// Dropped counts objects the trigger discarded by design (the n-k late
	// objects of redundant).
	Dropped() uint64
	// MarshalState returns the trigger's durable state.
	MarshalState() []byte
	// UnmarshalState restores state returned by MarshalState. next is the
	// bucket's next sequence number, used when there is no saved state.
	UnmarshalState(b []byte, next uint64) error
}

// Primitive names, as written in the app file.
const (
	Immediate    = "immediate"
	ByBatchSize  = "by_batch_size"
	ByTime       = "by_time"
	ByName       = "by_name"
	BySet        = "by_set"
	Redundant    = "redundant"
	DynamicJoin  = "dynamic_join"
	DynamicGroup = "dynamic_group"
)

// Spec configures one trigger.
type Spec struct {
	Name      string
	Primitive string
	// Count is the batch size of by_batch_size.
	Count int
	// Window is the window length of by_time (tumbling, or sliding with
	// Slide); Gap makes session windows instead.
	Window time.Duration
	Slide  time.Duration
	Gap    time.Duration
	// EventTime makes by_time use the objects' event times and a watermark
	// instead of the processing-time clock.
	EventTime bool
	// OutOfOrderness is how far behind the largest event time the watermark
	// stays; AllowedLateness delays firing past the window end; IdleTimeout
	// lets the watermark follow the clock when no objects arrive; MaxFuture
	// clamps event times ahead of the clock.
	OutOfOrderness, AllowedLateness, IdleTimeout, MaxFuture time.Duration
	// Match is the key by_name fires on.
	Match string
	// Keys is the set by_set waits for, in the order it passes them.
	Keys []string
	// K and N configure redundant: fire with the first K of N objects.
	K, N int
	// ControlKey is the key of control objects (dynamic_join announcements,
	// dynamic_group end-of-stage markers).
	ControlKey string
	// Controls is how many control objects close a dynamic_group session.
	Controls int
	// SessionTimeout abandons a session idle this long (0: never).
	SessionTimeout time.Duration
	// MaxPerSession bounds the objects one session may hold in a
	// per-session trigger (0: no bound); more are refused as Overflow.
	MaxPerSession int
	// Fold makes by_time (and by_batch_size without SessionTimeout) keep
	// no objects: each is handed to the Folder (SetFolder) with the window
	// (or batch) it goes into, and a firing names the window (Firing.Pane)
	// instead of objects.
	Fold bool
	// Inputs > 0 makes an event-time by_time trigger merge the watermarks
	// of Inputs upstream partitions (its bucket has partition_by): objects
	// do not move the watermark; each upstream's published watermark does
	// (see Merger). Self is this partition's own index among them.
	Inputs, Self int
}

// Validate reports the first problem with the spec.
func (s Spec) Validate() error {
	if s.Fold && s.Primitive != ByTime && (s.Primitive != ByBatchSize || s.SessionTimeout > 0) {
		return fmt.Errorf("triggers: %s: only by_time and by_batch_size without a session timeout fold", s.Primitive)
	}
	switch s.Primitive {
	case Immediate:
	case ByBatchSize:
		if s.Count <= 0 {
			return fmt.Errorf("triggers: %s: count must be > 0", s.Primitive)
		}
	case ByTime:
		switch {
		case s.Gap > 0 && (s.Window != 0 || s.Slide != 0):
			return fmt.Errorf("triggers: %s: a session window (gap) takes no window or slide", s.Primitive)
		case s.Gap > 0:
		case s.Window <= 0:
			return fmt.Errorf("triggers: %s: window must be > 0", s.Primitive)
		case s.Slide < 0 || s.Slide > s.Window:
			return fmt.Errorf("triggers: %s: slide must be in (0, window]", s.Primitive)
		case s.Slide > 0 && s.Window%s.Slide != 0:
			return fmt.Errorf("triggers: %s: window must be a multiple of slide", s.Primitive)
		case s.Inputs > 0 && !s.EventTime:
			return fmt.Errorf("triggers: %s: merged upstream watermarks need event time", s.Primitive)
		case s.Inputs > 0 && (s.Self < 0 || s.Self >= s.Inputs):
			return fmt.Errorf("triggers: %s: self %d is not one of %d inputs", s.Primitive, s.Self, s.Inputs)
		}
	case ByName:
		if s.Match == "" {
			return fmt.Errorf("triggers: %s: name must be set", s.Primitive)
		}
	case BySet:
		if len(s.Keys) == 0 {
			return fmt.Errorf("triggers: %s: keys must not be empty", s.Primitive)
		}
		seen := map[string]bool{}
		for _, k := range s.Keys {
			if seen[k] {
				return fmt.Errorf("triggers: %s: duplicate key %q", s.Primitive, k)
			}
			seen[k] = true
		}
	case Redundant:
		if s.K <= 0 || s.N < s.K {
			return fmt.Errorf("triggers: %s: need 0 < k <= n, got k=%d n=%d", s.Primitive, s.K, s.N)
		}
	case DynamicJoin:
		if s.ControlKey == "" {
			return fmt.Errorf("triggers: %s: control_key must be set", s.Primitive)
		}
	case DynamicGroup:
		if s.ControlKey == "" {
			return fmt.Errorf("triggers: %s: control_key must be set", s.Primitive)
		}
		if s.Controls <= 0 {
			return fmt.Errorf("triggers: %s: controls must be > 0", s.Primitive)
		}
	default:
		return fmt.Errorf("triggers: unknown primitive %q", s.Primitive)
	}
	return nil
}

// New builds a trigger for one bucket partition whose next sequence number
// is next.
func New(s Spec, next uint64) (Trigger, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	switch s.Primitive {
	case Immediate:
		return &immediate{name: s.Name, low: next}, nil
	case ByTime:
		return newWindowed(s, next), nil
	case ByName:
		return &byName{name: s.Name, match: s.Match, low: next}, nil
	default:
		return newSessioned(s, next), nil
	}
}

// Folder receives the objects of a trigger with Spec.Fold: each object, in
// sequence order, with every window it goes into, and the windows that
// merge (sessions bridged by an object). Windows are numbered by the
// trigger; a window's number is never reused.
type Folder interface {
	Fold(seq uint64, pane uint64)
	// Merge moves everything folded into pane from into pane into.
	Merge(into, from uint64)
}

// Windower is implemented by by_time triggers, for queries.
type Windower interface {
	OpenWindows() []OpenWindow
}

// Folding is implemented by triggers that support Spec.Fold.
type Folding interface {
	SetFolder(f Folder)
}

// Idler is implemented by triggers whose watermark may follow the clock
// when their partition is idle (event-time by_time with IdleTimeout).
type Idler interface {
	// CaughtUp tells the trigger since when the partition's input has been
	// consumed up to the log end, as last seen fresh by the engine; the
	// zero time means it is not (or nobody knows). The trigger counts the
	// quiet from the later of that time and its last put.
	CaughtUp(since time.Time)
}

// Merger is implemented by event-time triggers with Spec.Inputs: a bucket
// with partition_by receives objects from every upstream partition, and
// its watermark is the minimum of the upstreams' watermarks.
//
// Each partition plays both roles for its bucket partition's trigger. As an
// upstream it calls Send for every object it puts into the bucket (on any
// partition), in order, and sends the returned watermark with the object;
// at the end of a cycle it publishes Publish's value to every partition.
// As a receiver it gets objects with their senders' watermarks in
// Objects.Upstream and Objects.Watermarks, and published watermarks through
// Observe. An object is late when its windows had closed in its sender's
// stream, so lateness does not depend on how the upstreams interleave.
type Merger interface {
	// Send records an object of event time eventMs (unix ms) sent into the
	// bucket and returns the sender's watermark before it (unix ns,
	// NoWatermark if none).
	Send(eventMs int64, now time.Time) int64
	// Publish returns this partition's watermark as an upstream and whether
	// it changed since the last Publish.
	Publish() (wm int64, changed bool)
	// Observe takes the watermark published by upstream partition from and
	// appends the firings it causes.
	Observe(from int, wm int64, out []Firing) []Firing
}

// Watermarker is implemented by event-time triggers, for progress gauges
// and queries.
type Watermarker interface {
	// Watermark is the trigger's watermark; ok is false before it has one.
	Watermark() (wm time.Time, ok bool)
	// Idle reports whether the partition counts as idle at now.
	Idle(now time.Time) bool
	// OldestWindow is the start of the oldest open window (zero: none).
	OldestWindow() time.Time
}
