// Command parallel measures the paper's parallel_sleep with
// examples/parallel: one durable invocation fans out N tasks that each
// sleep, run in parallel on the executor pool, and are joined by a
// dynamic_join. It reports the completion time (request accepted → last
// task done, from the answer) and the client's round trip, beside the
// baseline of the same run: N goroutines that sleep as long, joined by a
// sync.WaitGroup.
//
//	go run ./benchmarks/parallel -widths 100,1000,4000 -sleep 1s -n 5
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/pheromone-go/pheromone/benchmarks/internal/bench"
	"github.com/pheromone-go/pheromone/examples/parallel/tasks"
	"github.com/pheromone-go/pheromone/server"
)

func main() {
	widths := flag.String("widths", "100,1000,4000", "fan-out widths")
	sleep := flag.Duration("sleep", time.Second, "how long each task sleeps")
	n := flag.Int("n", 5, "invocations per width")
	flag.Parse()
	if err := run(*widths, *sleep, *n); err != nil {
		fmt.Fprintln(os.Stderr, "parallel:", err)
		os.Exit(1)
	}
}

func run(widthList string, sleep time.Duration, n int) error {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		return err
	}
	defer c.Close()
	a, err := bench.LoadExample("examples/parallel/app.yaml")
	if err != nil {
		return err
	}
	nd, err := bench.StartNode(context.Background(), a, c.ListenAddrs(), server.HTTPAddr("127.0.0.1:0"),
		server.Functions(tasks.Functions().Functions()), server.Executors(tasks.MaxTasks))
	if err != nil {
		return err
	}
	defer nd.Stop()
	for !nd.Node.Ready() {
		time.Sleep(time.Millisecond)
	}
	url := "http://" + nd.HTTPAddr + "/v1/apps/parallel/invoke"
	fmt.Printf("each task sleeps %s; %d invocations per width (and one warm-up); durable invocations\n\n", sleep, n)
	fmt.Println("| tasks | completion p50 (accepted → last task done) | round trip p50 | start skew p50 | baseline: goroutines + WaitGroup | overhead p50 |")
	fmt.Println("|---|---|---|---|---|---|")
	for _, f := range strings.Split(widthList, ",") {
		width, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || width < 1 {
			return fmt.Errorf("bad width %q", f)
		}
		var comp, rtt, skew []time.Duration
		for i := 0; i <= n; i++ {
			c, r, s, err := invoke(url, width, sleep)
			if err != nil {
				return fmt.Errorf("width %d: %w", width, err)
			}
			if i > 0 {
				comp, rtt, skew = append(comp, c), append(rtt, r), append(skew, s)
			}
		}
		base := goFanOut(width, sleep)
		ms := func(d time.Duration) string { return d.Round(100 * time.Microsecond).String() }
		fmt.Printf("| %d | %s | %s | %s | %s | %s |\n", width, ms(p50(comp)), ms(p50(rtt)), ms(p50(skew)), ms(base), ms(p50(comp)-base))
	}
	return nil
}

// invoke runs one fan-out of width tasks and returns the completion time
// and start skew the answer reports, and the client's round trip.
func invoke(url string, width int, sleep time.Duration) (comp, rtt, skew time.Duration, err error) {
	body := fmt.Sprintf(`{"tasks":%d,"sleep_ms":%d}`, width, sleep.Milliseconds())
	start := time.Now()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		return 0, 0, 0, err
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	rtt = time.Since(start)
	var ans struct {
		Status string `json:"status"`
		Result []struct {
			Tasks        int     `json:"tasks"`
			CompletionMs float64 `json:"completion_ms"`
			StartSkewMs  float64 `json:"start_skew_ms"`
		} `json:"result"`
	}
	if err := json.Unmarshal(raw, &ans); err != nil || ans.Status != "done" || len(ans.Result) != 1 || ans.Result[0].Tasks != width {
		return 0, 0, 0, fmt.Errorf("answer %d %s (%v)", resp.StatusCode, raw, err)
	}
	r := ans.Result[0]
	return time.Duration(r.CompletionMs * 1e6), rtt, time.Duration(r.StartSkewMs * 1e6), nil
}

// goFanOut is the baseline: width goroutines sleeping as long, joined.
func goFanOut(width int, sleep time.Duration) time.Duration {
	const reps = 3
	var total time.Duration
	for r := 0; r < reps; r++ {
		start := time.Now()
		var wg sync.WaitGroup
		for i := 0; i < width; i++ {
			wg.Add(1)
			go func() { defer wg.Done(); time.Sleep(sleep) }()
		}
		wg.Wait()
		total += time.Since(start)
	}
	return total / reps
}

func p50(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
