// Package generator writes built-in test data to a topic at a fixed rate:
// the clickstream profile of generator sources.
package generator

import (
	"context"
	"math/rand/v2"
	"strconv"
	"time"
)

var (
	pages     = []string{"/", "/home", "/search", "/product", "/cart", "/checkout", "/help", "/account"}
	actions   = []string{"view", "view", "view", "click", "scroll", "purchase"}
	countries = []string{"DE", "FR", "US", "BR", "IN", "JP", "NG", "GB"}
)

// Clickstream generates clickstream events. It is deterministic for a seed.
type Clickstream struct {
	rnd  *rand.Rand
	next int64
}

// NewClickstream starts the event sequence for seed.
func NewClickstream(seed int64) *Clickstream {
	return &Clickstream{rnd: rand.New(rand.NewPCG(uint64(seed), 0x9e3779b97f4a7c15))}
}

// Append appends the next event as JSON to dst and returns it with the
// event's Kafka key: the value of keyColumn (user_id, page, action or
// country; anything else means user_id). now stamps the event.
func (c *Clickstream) Append(dst []byte, now time.Time, keyColumn string) (out []byte, key []byte) {
	id := c.next
	c.next++
	var ks, ke int
	mark := func(col string, start int) {
		if col == keyColumn || (ks == 0 && col == "user_id" && !knownKey(keyColumn)) {
			ks, ke = start, len(dst)
		}
	}
	dst = append(dst, `{"event_id":`...)
	dst = strconv.AppendInt(dst, id, 10)
	dst = append(dst, `,"user_id":"`...)
	s := len(dst)
	dst = append(dst, 'u')
	dst = strconv.AppendInt(dst, int64(c.rnd.IntN(1000)), 10)
	mark("user_id", s)
	dst = append(dst, `","page":"`...)
	s = len(dst)
	dst = append(dst, pages[c.rnd.IntN(len(pages))]...)
	mark("page", s)
	dst = append(dst, `","action":"`...)
	s = len(dst)
	dst = append(dst, actions[c.rnd.IntN(len(actions))]...)
	mark("action", s)
	dst = append(dst, `","duration_ms":`...)
	dst = strconv.AppendInt(dst, int64(c.rnd.ExpFloat64()*1500), 10)
	dst = append(dst, `,"country":"`...)
	s = len(dst)
	dst = append(dst, countries[c.rnd.IntN(len(countries))]...)
	mark("country", s)
	dst = append(dst, `","ts":`...)
	dst = strconv.AppendInt(dst, now.UnixMilli(), 10)
	dst = append(dst, '}')
	return dst, dst[ks:ke]
}

func knownKey(col string) bool {
	return col == "user_id" || col == "page" || col == "action" || col == "country"
}

// Run writes events at rate per second (in ticks of 10 ms) through produce,
// keyed by keyColumn, until ctx ends or limit events were written (limit 0:
// no limit).
func Run(ctx context.Context, seed int64, rate int, limit int64, keyColumn string, produce func(key, value []byte)) {
	c := NewClickstream(seed)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	start := time.Now()
	var sent int64
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			due := int64(now.Sub(start).Seconds() * float64(rate))
			for ; sent < due; sent++ {
				if limit > 0 && sent >= limit {
					return
				}
				v, k := c.Append(nil, now, keyColumn)
				produce(k, v)
			}
		}
	}
}
