package bench

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/pheromone-go/pheromone/engine/app"
	"github.com/pheromone-go/pheromone/server"
)

// Node is a Pheromone node run in this process for a benchmark.
type Node struct {
	server.Info
	Dir  string
	stop func() error
}

// StartNode runs app a against brokers with a fresh data directory; opts
// supply optional settings (functions, HTTP address). It returns once the
// node serves.
func StartNode(ctx context.Context, a *app.App, brokers []string, opts ...server.Opt) (*Node, error) {
	dir, err := os.MkdirTemp("", "pheromone-bench")
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	started := make(chan server.Info, 1)
	done := make(chan error, 1)
	opts = append([]server.Opt{server.DataDir(dir), server.Brokers(brokers...),
		server.Logger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))}, opts...)
	opts = append(opts, server.OnStarted(func(i server.Info) { started <- i }))
	go func() { done <- server.Run(ctx, a, opts...) }()
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

// LoadExample reads and validates an example's app file (path relative to
// the repository root, where the benchmarks run).
func LoadExample(path string) (*app.App, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("run from the repository root: %w", err)
	}
	a, err := app.Parse(raw)
	if err != nil {
		return nil, err
	}
	if err := a.ValidateWith(server.Connectors()); err != nil {
		return nil, err
	}
	return a, nil
}
