package cli

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// cmdInvoke posts a request to a running node and prints the response.
func cmdInvoke(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("invoke", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", "", "file with the JSON input (default: standard input)")
	addr := fs.String("addr", "http://127.0.0.1:8080", "the node's HTTP address")
	async := fs.Bool("async", false, "return the session id at once")
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fmt.Fprintln(stderr, "pheromone invoke: usage: pheromone invoke APP [--data FILE] [--addr URL] [--async]")
		return 2
	}
	appName := args[0]
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	var body []byte
	var err error
	if *data == "" {
		body, err = io.ReadAll(os.Stdin)
	} else {
		body, err = os.ReadFile(*data)
	}
	if err != nil {
		fmt.Fprintln(stderr, "pheromone invoke:", err)
		return 1
	}
	url := strings.TrimSuffix(*addr, "/") + "/v1/apps/" + appName + "/invoke"
	if *async {
		url += "?async=true"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	return printResponse("invoke", resp, err, stdout, stderr)
}

// cmdQuery prints a bucket's live state from a running node.
func cmdQuery(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("query", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "http://127.0.0.1:8080", "the node's HTTP address")
	key := fs.String("key", "", "only objects with this key")
	session := fs.String("session", "", "only this session")
	limit := fs.Int("limit", 100, "objects per partition")
	if len(args) < 2 || strings.HasPrefix(args[0], "-") || strings.HasPrefix(args[1], "-") {
		fmt.Fprintln(stderr, "pheromone query: usage: pheromone query APP BUCKET [--key K] [--session S] [--limit N] [--addr URL]")
		return 2
	}
	if err := fs.Parse(args[2:]); err != nil {
		return 2
	}
	q := url.Values{}
	if *key != "" {
		q.Set("key", *key)
	}
	if *session != "" {
		q.Set("session", *session)
	}
	q.Set("limit", strconv.Itoa(*limit))
	u := strings.TrimSuffix(*addr, "/") + "/v1/apps/" + url.PathEscape(args[0]) + "/buckets/" + url.PathEscape(args[1]) + "?" + q.Encode()
	resp, err := http.Get(u)
	return printResponse("query", resp, err, stdout, stderr)
}

// printResponse copies an API answer to stdout; the exit code is 1 for a
// failed request or an error status.
func printResponse(cmd string, resp *http.Response, err error, stdout, stderr io.Writer) int {
	if err != nil {
		fmt.Fprintf(stderr, "pheromone %s: %v\n", cmd, err)
		return 1
	}
	defer resp.Body.Close()
	_, _ = io.Copy(stdout, resp.Body)
	if resp.StatusCode >= 300 {
		return 1
	}
	return 0
}
