package main

import (
	"bytes"
	"context"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pheromone-go/pheromone/cmd/pheromone/cli"
	"github.com/pheromone-go/pheromone/engine/app"
	"github.com/pheromone-go/pheromone/server"
	"github.com/pheromone-go/pheromone/server/apptest"
)

// TestScoreApp runs the example app with this binary's registry over kfake
// and checks the scores, and that the stock binary refuses the app.
func TestScoreApp(t *testing.T) {
	var out, errb bytes.Buffer
	if code := cli.Main([]string{"validate", "-f", "app.yaml"}, &out, &errb); code != 1 ||
		!strings.Contains(errb.String(), `functions[0].name: no Go function "score" is registered`) {
		t.Fatalf("stock binary: exit %d, %s", code, errb.String())
	}
	if code := cli.MainWith(Functions(), []string{"validate", "-f", "app.yaml"}, &out, &errb); code != 0 {
		t.Fatalf("with registry: exit %d, %s", code, errb.String())
	}

	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	raw, _ := os.ReadFile("app.yaml")
	a, err := app.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	started := make(chan struct{})
	go func() {
		done <- server.Run(ctx, a, server.DataDir(t.TempDir()), server.Brokers(c.ListenAddrs()...),
			server.Functions(Functions().Functions()), server.OnStarted(func(server.Info) { close(started) }))
	}()
	defer func() { cancel(); <-done }()
	<-started
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics("scores"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DefaultProduceTopic("orders"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(ctx,
		&kgo.Record{Value: []byte(`{"id":1,"country":"DE","amount":100}`)},
		&kgo.Record{Value: []byte(`{"id":2,"country":"NG","amount":900}`)},
	).FirstErr(); err != nil {
		t.Fatal(err)
	}
	var got []string
	deadline := time.Now().Add(20 * time.Second)
	for len(got) < 2 && time.Now().Before(deadline) {
		pctx, pcancel := context.WithTimeout(ctx, time.Second)
		cl.PollFetches(pctx).EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)) })
		pcancel()
	}
	want := []string{`{"id":1,"risk":0.1,"review":false}`, `{"id":2,"risk":1.2,"review":true}`}
	sort.Strings(got) // the two orders may land on different partitions
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("scores:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestAppTestFile runs app_test.yaml with this binary's functions, as
// `go run ./examples/gofunc test examples/gofunc` does.
func TestAppTestFile(t *testing.T) {
	res, err := apptest.Run(context.Background(), "app_test.yaml", apptest.Options{Functions: Functions().Functions()})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if !r.Passed || r.Skipped != "" {
			t.Errorf("%s: %s%s", r.Case, r.Failure, r.Skipped)
		}
	}
}
