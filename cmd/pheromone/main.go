// Command pheromone runs, validates and serves Pheromone apps.
package main

import (
	"os"

	"github.com/pheromone-go/pheromone/cmd/pheromone/cli"
)

func main() { os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr)) }
