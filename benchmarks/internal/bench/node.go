package bench

import (
	"context"
	"log/slog"
	"os"
	"time"

	"github.com/pheromone-go/pheromone/cmd/pheromone/cli"
	"github.com/pheromone-go/pheromone/engine/app"
)

// Node is a Pheromone node run in this process for a benchmark.
type Node struct {
	cli.Info
	Dir  string
	stop func() error
}

// StartNode runs app a against brokers with a fresh data directory; cfg
// supplies optional settings (functions, HTTP address). It returns once the
// node serves.
func StartNode(ctx context.Context, a *app.App, brokers []string, cfg cli.RunConfig) (*Node, error) {
	dir, err := os.MkdirTemp("", "pheromone-bench")
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	started := make(chan cli.Info, 1)
	done := make(chan error, 1)
	cfg.App, cfg.DataDir, cfg.Brokers = a, dir, brokers
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cfg.Started = func(i cli.Info) { started <- i }
	go func() { done <- cli.Run(ctx, cfg) }()
	select {
	case info := <-started:
		return &Node{Info: info, Dir: dir, stop: func() error {
			cancel()
			err := <-done
			os.RemoveAll(dir)
			return err
		}}, nil
	case err := <-done:
		cancel()
		os.RemoveAll(dir)
		return nil, err
	}
}

// Stop stops the node and removes its data directory.
func (n *Node) Stop() error { return n.stop() }

// WaitCommitted waits until the node's committed offsets of topic add up to
// at least total.
func (n *Node) WaitCommitted(topic string, total int64) {
	for {
		var sum int64
		for tp, off := range n.Node.Committed() {
			if tp.Topic == topic {
				sum += off
			}
		}
		if sum >= total {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
}
