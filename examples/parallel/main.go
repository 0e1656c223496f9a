// Command parallel is a pheromone binary with the two Go functions of
// examples/parallel/app.yaml: fan_out (one request → N task objects and
// the announcement of N) and sleep (one task). Run it like pheromone:
//
//	go run ./examples/parallel run -f examples/parallel/app.yaml --executors 4000
package main

import (
	"os"

	"github.com/pheromone-go/pheromone/cmd/pheromone/cli"
	"github.com/pheromone-go/pheromone/examples/parallel/tasks"
)

func main() {
	os.Exit(cli.MainWith(tasks.Functions(), os.Args[1:], os.Stdout, os.Stderr))
}
