// Package prom exports the engine's measurements as Prometheus metrics. It
// is the only package of this module that imports the Prometheus client.
package prom

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pheromone-go/pheromone/engine"
)

// Metrics implements engine.Metrics on its own registry.
type Metrics struct {
	reg          *prometheus.Registry
	recordsIn    *prometheus.CounterVec
	recordsOut   *prometheus.CounterVec
	decodeErrors *prometheus.CounterVec
	deadLetters  *prometheus.CounterVec
	firings      *prometheus.CounterVec
	dropped      *prometheus.CounterVec
	invocations  *prometheus.CounterVec
	fnErrors     *prometheus.CounterVec
	fnDropped    *prometheus.CounterVec
	fnLatency    *prometheus.HistogramVec
	bucketObjs   *prometheus.GaugeVec
	bucketBytes  *prometheus.GaugeVec
	lag          *prometheus.GaugeVec
	restoreLeft  *prometheus.GaugeVec
	restored     *prometheus.CounterVec
	watermark    *prometheus.GaugeVec
	idle         *prometheus.GaugeVec
	oldestWindow *prometheus.GaugeVec
	offsetLoss   *prometheus.CounterVec
	blocked      *prometheus.CounterVec
	inboxFill    *prometheus.GaugeVec
	changelog    prometheus.Counter
	commitDur    *prometheus.HistogramVec
	txnDur       prometheus.Histogram
	late         *prometheus.CounterVec
	sessions     prometheus.Gauge
	durableSess  *prometheus.GaugeVec
	sessEvents   *prometheus.CounterVec
	refused      prometheus.Counter
}

var _ engine.Metrics = (*Metrics)(nil)

// New registers the metrics of app on a new registry, with Go and process
// collectors.
func New(app string) *Metrics {
	reg := prometheus.NewRegistry()
	labels := prometheus.Labels{"app": app}
	f := func(name, help string, l ...string) *prometheus.CounterVec {
		v := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "pheromone", Name: name, Help: help, ConstLabels: labels}, l)
		reg.MustRegister(v)
		return v
	}
	g := func(name, help string, l ...string) *prometheus.GaugeVec {
		v := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "pheromone", Name: name, Help: help, ConstLabels: labels}, l)
		reg.MustRegister(v)
		return v
	}
	m := &Metrics{
		reg:          reg,
		recordsIn:    f("records_in_total", "Records consumed per source.", "source"),
		recordsOut:   f("records_out_total", "Records written per sink.", "sink"),
		decodeErrors: f("decode_errors_total", "Source records that could not be decoded.", "source"),
		deadLetters:  f("dead_letters_total", "Records written to the dead-letter topic, by reason.", "reason"),
		firings:      f("trigger_firings_total", "Trigger firings.", "trigger"),
		dropped:      f("trigger_dropped_total", "Objects a trigger discarded by design (late replicas of redundant, duplicate keys).", "trigger"),
		invocations:  f("function_invocations_total", "Function invocation attempts.", "function"),
		fnErrors:     f("function_errors_total", "Function invocation attempts that failed.", "function"),
		fnDropped:    f("function_dropped_total", "Input rows a function discarded by design (a lookup's rows without a match in its table).", "function"),
		bucketObjs:   g("bucket_objects", "Objects held per bucket partition.", "bucket", "partition"),
		bucketBytes:  g("bucket_bytes", "Bytes held per bucket partition.", "bucket", "partition"),
		lag:          g("consumer_lag", "Records behind the high watermark per source partition.", "topic", "partition"),
		restoreLeft:  g("restore_remaining_records", "Changelog records a partition still has to restore before it processes (0 when ready).", "partition"),
		restored:     f("restored_bytes_total", "Changelog bytes applied to local state while restoring.", "partition"),
		watermark: g("watermark_seconds", "Event-time watermark of a trigger per bucket partition (unix seconds; absent before the first).",
			"bucket", "trigger", "partition"),
		idle: g("partition_idle", "1 while the bucket partition counts as idle for an event-time trigger (caught up with the log and quiet for idle_timeout).",
			"bucket", "trigger", "partition"),
		offsetLoss: f("offset_loss_total", "Times a partition's log no longer held the offset its state resumes from (see kafka.on_offset_loss).",
			"topic", "partition"),
		oldestWindow: g("oldest_open_window_seconds", "Start of the oldest open window of an event-time trigger per bucket partition (unix seconds; 0: none).",
			"bucket", "trigger", "partition"),
	}
	m.blocked = f("task_blocked_seconds_total", "Time partition tasks waited on backpressure: a full executor queue (on=executor) or a full commit pipeline (on=commit).",
		"partition", "on")
	m.inboxFill = g("task_inbox_fill_ratio", "How full a partition task's inbox was at the end of its last cycle (0-1).", "partition")
	m.changelog = f("changelog_written_bytes_total", "Key and value bytes written to the changelog topic.").WithLabelValues()
	m.late = f("trigger_late_total", "Event-time objects that missed their windows (routed to the late bucket, or dropped).", "trigger")
	m.sessions = g("invocation_sessions", "Invocation sessions in flight on this node.").WithLabelValues()
	m.durableSess = g("durable_sessions", "Durable invocation sessions a partition keeps (running and finished, until session_ttl).", "partition")
	m.sessEvents = f("session_events_total", "Durable invocation sessions' events: started, deduplicated (a retry), refused (table full), done, failed, timed_out, cancelled, expired.", "event")
	m.refused = f("invocations_refused_total", "Invocation requests answered 429 (too many waiting, or the session table full).").WithLabelValues()
	durations := prometheus.ExponentialBuckets(50e-6, 2, 16) // 50 µs to 1.6 s
	m.commitDur = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "pheromone", Name: "commit_duration_seconds", Help: "State commits of the committers (synced=true: with an fsync).",
		ConstLabels: labels, Buckets: durations,
	}, []string{"synced"})
	m.txnDur = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "pheromone", Name: "transaction_duration_seconds", Help: "Kafka transaction commits (exactly_once).",
		ConstLabels: labels, Buckets: durations,
	})
	reg.MustRegister(m.commitDur, m.txnDur)
	m.fnLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "pheromone", Name: "function_duration_seconds", Help: "Function invocation latency.",
		ConstLabels: labels, Buckets: prometheus.ExponentialBuckets(10e-6, 4, 10),
	}, []string{"function"})
	reg.MustRegister(m.fnLatency, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler { return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}) }

func (m *Metrics) RecordsIn(source string, n int) {
	m.recordsIn.WithLabelValues(source).Add(float64(n))
}
func (m *Metrics) RecordsOut(sink string, n int) { m.recordsOut.WithLabelValues(sink).Add(float64(n)) }
func (m *Metrics) DecodeErrors(source string, n int) {
	m.decodeErrors.WithLabelValues(source).Add(float64(n))
}
func (m *Metrics) DeadLetters(reason string, n int) {
	m.deadLetters.WithLabelValues(reason).Add(float64(n))
}
func (m *Metrics) Firings(trigger string, n int) { m.firings.WithLabelValues(trigger).Add(float64(n)) }
func (m *Metrics) TriggerDropped(trigger string, n int) {
	m.dropped.WithLabelValues(trigger).Add(float64(n))
}
func (m *Metrics) FunctionDropped(function string, n int) {
	m.fnDropped.WithLabelValues(function).Add(float64(n))
}
func (m *Metrics) Invocation(function string, d time.Duration, err error) {
	m.invocations.WithLabelValues(function).Inc()
	if err != nil {
		m.fnErrors.WithLabelValues(function).Inc()
	}
	m.fnLatency.WithLabelValues(function).Observe(d.Seconds())
}
func (m *Metrics) BucketSize(bucket string, partition int32, objects, bytes int64) {
	p := strconv.Itoa(int(partition))
	m.bucketObjs.WithLabelValues(bucket, p).Set(float64(objects))
	m.bucketBytes.WithLabelValues(bucket, p).Set(float64(bytes))
}
func (m *Metrics) Restore(partition int32, bytes int, remaining int64) {
	p := strconv.Itoa(int(partition))
	m.restored.WithLabelValues(p).Add(float64(bytes))
	m.restoreLeft.WithLabelValues(p).Set(float64(remaining))
}
func (m *Metrics) Lag(topic string, partition int32, lag int64) {
	m.lag.WithLabelValues(topic, strconv.Itoa(int(partition))).Set(float64(lag))
}
func (m *Metrics) EventTime(bucket, trigger string, partition int32, wm time.Time, idle bool, oldest time.Time) {
	p := strconv.Itoa(int(partition))
	if !wm.IsZero() {
		m.watermark.WithLabelValues(bucket, trigger, p).Set(float64(wm.UnixNano()) / 1e9)
	}
	i := 0.0
	if idle {
		i = 1
	}
	m.idle.WithLabelValues(bucket, trigger, p).Set(i)
	o := 0.0
	if !oldest.IsZero() {
		o = float64(oldest.UnixNano()) / 1e9
	}
	m.oldestWindow.WithLabelValues(bucket, trigger, p).Set(o)
}

func (m *Metrics) OffsetLoss(topic string, partition int32) {
	m.offsetLoss.WithLabelValues(topic, strconv.Itoa(int(partition))).Inc()
}

// Cycle implements engine.Metrics.
func (m *Metrics) Cycle(partition int32, s engine.CycleStats) {
	p := strconv.Itoa(int(partition))
	if s.BlockedExecutor > 0 {
		m.blocked.WithLabelValues(p, "executor").Add(s.BlockedExecutor.Seconds())
	}
	if s.BlockedCommit > 0 {
		m.blocked.WithLabelValues(p, "commit").Add(s.BlockedCommit.Seconds())
	}
	m.inboxFill.WithLabelValues(p).Set(s.InboxFill)
	if s.ChangelogBytes > 0 {
		m.changelog.Add(float64(s.ChangelogBytes))
	}
}

// Commit implements engine.Metrics.
func (m *Metrics) Commit(d time.Duration, synced bool) {
	m.commitDur.WithLabelValues(strconv.FormatBool(synced)).Observe(d.Seconds())
}

// Transaction implements engine.Metrics.
func (m *Metrics) Transaction(d time.Duration) { m.txnDur.Observe(d.Seconds()) }

// Late implements engine.Metrics.
func (m *Metrics) Late(trigger string, n int) { m.late.WithLabelValues(trigger).Add(float64(n)) }

// Sessions implements engine.Metrics.
func (m *Metrics) Sessions(n int) { m.sessions.Set(float64(n)) }

func (m *Metrics) DurableSessions(part int32, n int) {
	m.durableSess.WithLabelValues(strconv.Itoa(int(part))).Set(float64(n))
}
func (m *Metrics) SessionEvent(event string) { m.sessEvents.WithLabelValues(event).Inc() }

// InvocationRefused counts a request answered 429 (the server calls it).
func (m *Metrics) InvocationRefused() { m.refused.Inc() }

// Sample is one reading of the node's pheromone_ metrics, for the
// console: each series by its key, the metric name without the
// pheromone_ prefix and its labels but app ("name|label=value,...").
type Sample struct {
	Values     map[string]float64
	Histograms map[string]Histogram
}

// Histogram is a cumulative histogram's count and buckets.
type Histogram struct {
	Count   uint64
	Buckets []Bucket
}

// Bucket is one cumulative bucket: observations up to Upper.
type Bucket struct {
	Upper float64
	Count uint64
}

// Sample reads the registry.
func (m *Metrics) Sample() (Sample, error) {
	mfs, err := m.reg.Gather()
	if err != nil {
		return Sample{}, err
	}
	out := Sample{Values: map[string]float64{}, Histograms: map[string]Histogram{}}
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "pheromone_") {
			continue
		}
		for _, x := range mf.GetMetric() {
			k := seriesKey(mf, x)
			switch {
			case x.Counter != nil:
				out.Values[k] = x.Counter.GetValue()
			case x.Gauge != nil:
				out.Values[k] = x.Gauge.GetValue()
			case x.Histogram != nil:
				h := Histogram{Count: x.Histogram.GetSampleCount()}
				for _, b := range x.Histogram.GetBucket() {
					h.Buckets = append(h.Buckets, Bucket{Upper: b.GetUpperBound(), Count: b.GetCumulativeCount()})
				}
				out.Histograms[k] = h
			}
		}
	}
	return out, nil
}

// seriesKey names a series for Sample.
func seriesKey(mf *dto.MetricFamily, m *dto.Metric) string {
	var b strings.Builder
	b.WriteString(strings.TrimPrefix(mf.GetName(), "pheromone_"))
	first := true
	for _, l := range m.GetLabel() {
		if l.GetName() == "app" {
			continue
		}
		if first {
			b.WriteByte('|')
			first = false
		} else {
			b.WriteByte(',')
		}
		b.WriteString(l.GetName() + "=" + l.GetValue())
	}
	return b.String()
}

// PartitionGone implements engine.Metrics: the partition's gauges go.
func (m *Metrics) PartitionGone(partition int32) {
	l := prometheus.Labels{"partition": strconv.Itoa(int(partition))}
	for _, g := range []*prometheus.GaugeVec{m.bucketObjs, m.bucketBytes, m.lag, m.restoreLeft, m.watermark, m.idle, m.oldestWindow, m.inboxFill} {
		g.DeletePartialMatch(l)
	}
}
