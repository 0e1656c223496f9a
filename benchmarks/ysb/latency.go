package main

import (
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"os"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"

	"github.com/pheromone-go/pheromone/benchmarks/internal/bench"
	"github.com/pheromone-go/pheromone/connectors/generator"
	"github.com/pheromone-go/pheromone/connectors/kafka"
	"github.com/pheromone-go/pheromone/engine/app"
)

// latencyPoint is the event-to-output latency at one offered load.
type latencyPoint struct {
	Load    float64 `json:"load_fraction"`
	Rate    int     `json:"events_per_sec"`
	P50     float64 `json:"p50_seconds"`
	P99     float64 `json:"p99_seconds"`
	Windows int     `json:"windows"`
	Natural float64 `json:"natural_delay_seconds"`
}

// latencyRun offers events at rate for dur in real time (event time = wall
// clock) to a fresh examples/ysb node and measures, for every event counted
// in a window that closed while the load ran, the time from the event to the
// window's output record. Events are spread evenly over each window, so the
// latency of the i-th of c events in [start, end) is out - (start + (i+0.5)(end-start)/c).
func latencyRun(ctx context.Context, brokers []string, raw []byte, seed int64, run, rate int, dur time.Duration) (p50, p99 time.Duration, windows int, err error) {
	a, err := app.Parse(raw)
	if err != nil {
		return 0, 0, 0, err
	}
	in, out := fmt.Sprintf("ad-events-lat-%d", run), fmt.Sprintf("campaign-counts-lat-%d", run)
	a.Sources[0].Topic = in
	a.Sinks[0].Topic = out
	a.Kafka.ChangelogTopic = fmt.Sprintf("ysb.changelog-lat-%d", run)
	if err := a.Validate(); err != nil {
		return 0, 0, 0, err
	}
	if err := kafka.EnsureTopics(ctx, kafka.Plain(brokers...), map[string]int{in: 4, out: 4}); err != nil {
		return 0, 0, 0, err
	}
	node, err := bench.StartNode(ctx, a, brokers)
	if err != nil {
		return 0, 0, 0, err
	}
	defer node.Stop()
	cons, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(out), kgo.FetchMaxWait(10*time.Millisecond))
	if err != nil {
		return 0, 0, 0, err
	}
	defer cons.Close()
	type seen struct {
		at         time.Time
		start, end time.Time
		count      int
	}
	var mu sync.Mutex
	var got []seen
	cctx, stopCons := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for cctx.Err() == nil {
			fs := cons.PollFetches(cctx)
			now := time.Now()
			fs.EachRecord(func(r *kgo.Record) {
				var v struct {
					Start string `json:"window_start"`
					End   string `json:"window_end"`
					Count int    `json:"count"`
				}
				if json.Unmarshal(r.Value, &v) == nil {
					s, _ := time.Parse(time.RFC3339Nano, v.Start)
					e, _ := time.Parse(time.RFC3339Nano, v.End)
					mu.Lock()
					got = append(got, seen{at: now, start: s, end: e, count: v.Count})
					mu.Unlock()
				}
			})
		}
	}()
	prod, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ProducerLinger(time.Millisecond))
	if err != nil {
		stopCons()
		wg.Wait()
		return 0, 0, 0, err
	}
	start := time.Now()
	gen := generator.NewYSB(seed, start, rate) // same seed: the same ads as the loaded campaigns table
	tick := time.NewTicker(5 * time.Millisecond)
	for time.Since(start) < dur {
		due := int64(time.Since(start).Seconds() * float64(rate))
		for gen.Generated() < due {
			v, k := gen.Next(nil)
			prod.Produce(ctx, &kgo.Record{Topic: in, Key: k, Value: v}, nil)
		}
		<-tick.C
	}
	tick.Stop()
	end := time.Now()
	// Windows closed by the watermark while the load ran: wait for the
	// outputs of those ending up to 2 s before the end.
	time.Sleep(15 * time.Second)
	prod.Close()
	stopCons()
	wg.Wait()
	var lat []time.Duration
	for _, s := range got {
		if s.end.After(end.Add(-2*time.Second)) || s.start.Before(start) || s.count == 0 {
			continue
		}
		windows++
		step := s.end.Sub(s.start) / time.Duration(s.count)
		for i := 0; i < s.count; i++ {
			lat = append(lat, s.at.Sub(s.start.Add(step*time.Duration(i)+step/2)))
		}
	}
	if len(lat) == 0 {
		return 0, 0, 0, fmt.Errorf("no window closed during the %v load at %d/s (%d outputs, produced %d, committed %v)", dur, rate, len(got), gen.Generated(), node.Node.Committed())
	}
	return bench.Pct(lat, 50), bench.Pct(lat, 99), windows, nil
}

// plot draws p50 and p99 latency against offered load as a PNG.
func plot(path string, pts []latencyPoint) error {
	const w, h, m = 720, 420, 50
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	white := color.RGBA{255, 255, 255, 255}
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.Set(x, y, white)
		}
	}
	maxRate, maxLat := 0.0, 0.0
	for _, p := range pts {
		maxRate = max(maxRate, float64(p.Rate))
		maxLat = max(maxLat, p.P99, 2*p.Natural)
	}
	maxRate *= 1.1
	X := func(r float64) int { return m + int(r/maxRate*float64(w-2*m)) }
	Y := func(l float64) int { return h - m - int(l/maxLat*float64(h-2*m)) }
	line := func(x0, y0, x1, y1 int, c color.Color) {
		n := max(abs(x1-x0), abs(y1-y0), 1)
		for i := 0; i <= n; i++ {
			x, y := x0+(x1-x0)*i/n, y0+(y1-y0)*i/n
			for dx := -1; dx <= 1; dx++ {
				for dy := -1; dy <= 1; dy++ {
					img.Set(x+dx, y+dy, c)
				}
			}
		}
	}
	black, grey := color.RGBA{0, 0, 0, 255}, color.RGBA{200, 200, 200, 255}
	line(m, h-m, w-m, h-m, black) // x axis
	line(m, h-m, m, m, black)     // y axis
	for s := 1.0; s < maxLat; s++ {
		if int(s)%5 == 0 {
			line(m, Y(s), w-m, Y(s), grey)
		}
	}
	if len(pts) > 0 {
		line(m, Y(2*pts[0].Natural), w-m, Y(2*pts[0].Natural), color.RGBA{220, 50, 50, 255}) // target: 2x natural delay
	}
	series := []struct {
		get func(latencyPoint) float64
		c   color.Color
	}{{func(p latencyPoint) float64 { return p.P50 }, color.RGBA{40, 90, 200, 255}},
		{func(p latencyPoint) float64 { return p.P99 }, color.RGBA{240, 150, 20, 255}}}
	for _, s := range series {
		for i := 1; i < len(pts); i++ {
			line(X(float64(pts[i-1].Rate)), Y(s.get(pts[i-1])), X(float64(pts[i].Rate)), Y(s.get(pts[i])), s.c)
		}
		for _, p := range pts {
			line(X(float64(p.Rate))-4, Y(s.get(p)), X(float64(p.Rate))+4, Y(s.get(p)), s.c)
		}
	}
	text := func(x, y int, c color.Color, str string) {
		d := &font.Drawer{Dst: img, Src: image.NewUniform(c), Face: basicfont.Face7x13, Dot: fixed.P(x, y)}
		d.DrawString(str)
	}
	text(m, 30, black, "YSB event-to-output latency (s) against offered load (events/s)")
	for s := 5.0; s < maxLat; s += 5 {
		text(8, Y(s)+4, black, fmt.Sprintf("%.0f s", s))
	}
	for _, p := range pts {
		text(X(float64(p.Rate))-20, h-m+18, black, fmt.Sprintf("%dk", p.Rate/1000))
	}
	if len(pts) > 0 {
		text(w-m-150, Y(2*pts[0].Natural)-6, color.RGBA{220, 50, 50, 255}, "p99 target (2x natural)")
		last := pts[len(pts)-1]
		text(X(float64(last.Rate))-40, Y(last.P99)-8, color.RGBA{240, 150, 20, 255}, "p99")
		text(X(float64(last.Rate))-40, Y(last.P50)-8, color.RGBA{40, 90, 200, 255}, "p50")
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return png.Encode(f, img)
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}
