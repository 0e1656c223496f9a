package server

import (
	"context"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/pheromone-go/pheromone/connectors/prom"
)

// The console's numbers come from the node's own Prometheus registry: a
// sampler reads it once a second, turns counters into rates and keeps the
// last minutes of a few series in ring buffers, so a person can look
// without a Prometheus.

// seriesLen is how many one-second points each series keeps (5 minutes).
const seriesLen = 300

// sample is one reading of the registry: every series by metric name and
// label values ("name|k=v,k=v").
type sample struct {
	at     time.Time
	values map[string]float64
	// quantiles of histograms since the previous sample: p50 and p99 by
	// series key.
	p50, p99 map[string]float64
}

// sampler reads the metrics every second (its own goroutine) and keeps
// the last two samples and the ring buffers; readers take its lock.
type sampler struct {
	m *prom.Metrics

	mu      sync.Mutex
	prev    *sample
	cur     *sample
	buckets map[string]prom.Histogram // the previous cumulative histograms
	series  map[string]*ring
}

// ring is a fixed-size series of one-second points.
type ring struct {
	t    []int64 // unix ms
	v    []float64
	next int
	full bool
}

func (r *ring) add(t time.Time, v float64) {
	if r.t == nil {
		r.t, r.v = make([]int64, seriesLen), make([]float64, seriesLen)
	}
	r.t[r.next], r.v[r.next] = t.UnixMilli(), v
	r.next = (r.next + 1) % seriesLen
	r.full = r.full || r.next == 0
}

// points returns the series oldest first, as [t, v] pairs.
func (r *ring) points() [][2]float64 {
	n, start := r.next, 0
	if r.full {
		n, start = seriesLen, r.next
	}
	out := make([][2]float64, 0, n)
	for i := 0; i < n; i++ {
		j := (start + i) % seriesLen
		out = append(out, [2]float64{float64(r.t[j]), r.v[j]})
	}
	return out
}

func newSampler(m *prom.Metrics) *sampler {
	return &sampler{m: m, buckets: map[string]prom.Histogram{}, series: map[string]*ring{}}
}

func (s *sampler) run(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	s.read(time.Now())
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			s.read(now)
		}
	}
}

// read takes one sample and extends the series.
func (s *sampler) read(now time.Time) {
	read, err := s.m.Sample()
	if err != nil {
		return
	}
	smp := &sample{at: now, values: read.Values, p50: map[string]float64{}, p99: map[string]float64{}}
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, h := range read.Histograms {
		smp.values[k+"#count"] = float64(h.Count)
		if prev, ok := s.buckets[k]; ok {
			if p50, p99, ok := quantiles(&prev, h); ok {
				smp.p50[k], smp.p99[k] = p50, p99
			}
		} else if p50, p99, ok := quantiles(nil, h); ok {
			smp.p50[k], smp.p99[k] = p50, p99
		}
		s.buckets[k] = h
	}
	s.prev, s.cur = s.cur, smp
	for name, v := range s.totals() {
		r := s.series[name]
		if r == nil {
			r = &ring{}
			s.series[name] = r
		}
		r.add(now, v)
	}
}

// totals are the series the console plots: rates summed over labels, the
// largest lag, the slowest function's p99.
func (s *sampler) totals() map[string]float64 {
	out := map[string]float64{
		"records_in":  s.rateSum("records_in_total"),
		"records_out": s.rateSum("records_out_total"),
		"firings":     s.rateSum("trigger_firings_total"),
		"dead":        s.rateSum("dead_letters_total"),
		"blocked":     s.rateSum("task_blocked_seconds_total"),
		"lag":         s.maxOf("consumer_lag"),
	}
	p99 := 0.0
	for _, v := range s.cur.p99 {
		if v > p99 {
			p99 = v
		}
	}
	out["fn_p99_ms"] = p99 * 1000
	return out
}

// rate is the per-second increase of series k between the two samples.
func (s *sampler) rate(k string) float64 {
	if s.prev == nil || s.cur == nil {
		return 0
	}
	d := s.cur.at.Sub(s.prev.at).Seconds()
	if d <= 0 {
		return 0
	}
	if v := (s.cur.values[k] - s.prev.values[k]) / d; v > 0 {
		return v
	}
	return 0
}

// rateSum is the rate of every series of metric name, summed.
func (s *sampler) rateSum(name string) float64 {
	sum := 0.0
	for k := range s.cur.values {
		if k == name || strings.HasPrefix(k, name+"|") {
			sum += s.rate(k)
		}
	}
	return sum
}

func (s *sampler) maxOf(name string) float64 {
	m := 0.0
	for k, v := range s.cur.values {
		if (k == name || strings.HasPrefix(k, name+"|")) && v > m {
			m = v
		}
	}
	return m
}

// byLabel maps the value of label of every series of metric name to f of
// its key.
func (s *sampler) byLabel(name, label string, f func(k string) float64) map[string]float64 {
	out := map[string]float64{}
	for k := range s.cur.values {
		rest, ok := strings.CutPrefix(k, name+"|")
		if !ok {
			continue
		}
		for _, kv := range strings.Split(rest, ",") {
			if l, v, _ := strings.Cut(kv, "="); l == label {
				out[v] += f(k)
			}
		}
	}
	return out
}

// quantiles estimates p50 and p99 of the observations between two
// cumulative histograms (linear within a bucket, as Prometheus'
// histogram_quantile does); ok is false without new observations.
func quantiles(prev *prom.Histogram, cur prom.Histogram) (p50, p99 float64, ok bool) {
	n := float64(cur.Count)
	var before map[float64]float64
	if prev != nil {
		n -= float64(prev.Count)
		before = map[float64]float64{}
		for _, b := range prev.Buckets {
			before[b.Upper] = float64(b.Count)
		}
	}
	if n <= 0 {
		return 0, 0, false
	}
	type bkt struct{ upper, count float64 }
	var bs []bkt
	for _, b := range cur.Buckets {
		bs = append(bs, bkt{b.Upper, float64(b.Count) - before[b.Upper]})
	}
	sort.Slice(bs, func(i, j int) bool { return bs[i].upper < bs[j].upper })
	q := func(phi float64) float64 {
		rank, lower, below := phi*n, 0.0, 0.0
		for _, b := range bs {
			if b.count >= rank {
				if b.count == below {
					return b.upper
				}
				return lower + (b.upper-lower)*(rank-below)/(b.count-below)
			}
			lower, below = b.upper, b.count
		}
		return lower // beyond the last bucket
	}
	return q(0.5), q(0.99), true
}
