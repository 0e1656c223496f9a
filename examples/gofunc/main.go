// Command gofunc is a pheromone binary with its own Go function: `score`
// reads each order's amount and country and emits a risk score. Build and
// run it exactly like pheromone:
//
//	go run ./examples/gofunc run -f examples/gofunc/app.yaml
//	echo '{"id":1,"country":"NG","amount":900}' | kcat -b 127.0.0.1:9092 -t orders -P
//	kcat -b 127.0.0.1:9092 -t scores -C -o beginning
package main

import (
	"os"

	"github.com/pheromone-go/pheromone/cmd/pheromone/cli"
)

func main() {
	os.Exit(cli.MainWith(Functions(), os.Args[1:], os.Stdout, os.Stderr))
}
