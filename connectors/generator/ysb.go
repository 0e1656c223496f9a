package generator

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"
)

// YSB generates Yahoo Streaming Benchmark ad events: 100 campaigns of 10 ads,
// events spread evenly over time at Rate per second from Start, a third of
// them views. It also counts, as it goes, the views per campaign and 10 s
// event-time window: the exact result a correct YSB implementation must
// produce. It is deterministic for a seed.
type YSB struct {
	rnd      *rand.Rand
	start    time.Time
	rate     int
	n        int64
	ads      []string
	campaign map[string]string
	// Expected is keyed by campaign and window start (unix ms).
	Expected map[WindowKey]*WindowCount
}

// WindowKey names one campaign's window.
type WindowKey struct {
	Campaign    string
	WindowStart int64 // unix ms
}

// WindowCount is the expected result of one window.
type WindowCount struct {
	Count      int64
	LastUpdate int64 // largest event time of a counted view, unix ms
}

var (
	adTypes    = []string{"banner", "modal", "sponsored-search", "mail", "mobile"}
	eventTypes = []string{"view", "click", "purchase"}
)

// NewYSB builds the campaigns and starts the event sequence at start.
func NewYSB(seed int64, start time.Time, rate int) *YSB {
	y := &YSB{rnd: rand.New(rand.NewPCG(uint64(seed), 0x5b5)), start: start, rate: max(rate, 1),
		campaign: map[string]string{}, Expected: map[WindowKey]*WindowCount{}}
	for c := 0; c < 100; c++ {
		cid := fmt.Sprintf("c%03d-%08x", c, y.rnd.Uint32())
		for a := 0; a < 10; a++ {
			ad := fmt.Sprintf("ad%04d-%08x", c*10+a, y.rnd.Uint32())
			y.ads = append(y.ads, ad)
			y.campaign[ad] = cid
		}
	}
	return y
}

// Campaigns appends the campaigns table as JSON rows ({"ad_id","campaign_id"})
// to fn, with the ad as the record key.
func (y *YSB) Campaigns(fn func(key, value []byte)) {
	for _, ad := range y.ads {
		fn([]byte(ad), []byte(`{"ad_id":"`+ad+`","campaign_id":"`+y.campaign[ad]+`"}`))
	}
}

// Next appends the next event's JSON to dst and returns it with its key
// (the campaign of its ad, so a campaign's events share a partition).
func (y *YSB) Next(dst []byte) (value, key []byte) {
	at := y.start.Add(time.Duration(y.n) * time.Second / time.Duration(y.rate)).UnixMilli()
	y.n++
	ad := y.ads[y.rnd.IntN(len(y.ads))]
	et := eventTypes[y.rnd.IntN(len(eventTypes))]
	dst = append(dst, `{"user_id":"u`...)
	dst = strconv.AppendUint(dst, uint64(y.rnd.Uint32()), 16)
	dst = append(dst, `","page_id":"p`...)
	dst = strconv.AppendUint(dst, uint64(y.rnd.Uint32()), 16)
	dst = append(dst, `","ad_id":"`...)
	dst = append(dst, ad...)
	dst = append(dst, `","ad_type":"`...)
	dst = append(dst, adTypes[y.rnd.IntN(len(adTypes))]...)
	dst = append(dst, `","event_type":"`...)
	dst = append(dst, et...)
	dst = append(dst, `","event_time":`...)
	dst = strconv.AppendInt(dst, at, 10)
	dst = append(dst, `,"ip_address":"10.0.0.1"}`...)
	cid := y.campaign[ad]
	if et == "view" {
		k := WindowKey{Campaign: cid, WindowStart: at - at%10_000}
		w := y.Expected[k]
		if w == nil {
			w = &WindowCount{}
			y.Expected[k] = w
		}
		w.Count++
		w.LastUpdate = max(w.LastUpdate, at)
	}
	return dst, []byte(cid)
}

// Generated is how many events Next produced.
func (y *YSB) Generated() int64 { return y.n }

// ExpectedLines renders the expected results as the JSON rows the YSB app
// writes to campaign-counts (without order).
func (y *YSB) ExpectedLines() []string {
	out := make([]string, 0, len(y.Expected))
	for k, w := range y.Expected {
		out = append(out, fmt.Sprintf(`{"campaign_id":%q,"window_start":%q,"window_end":%q,"count":%d,"last_update":%q}`,
			k.Campaign, msTime(k.WindowStart), msTime(k.WindowStart+10_000), w.Count, msTime(w.LastUpdate)))
	}
	return out
}

func msTime(ms int64) string {
	return time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z07:00")
}
