package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/pheromone-go/pheromone/server"
)

// cmdInvoke posts a request to a running node and prints the response.
func cmdInvoke(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("invoke", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", "", "file with the JSON input (default: standard input)")
	addr := fs.String("addr", "http://127.0.0.1:8080", "the node's HTTP address")
	async := fs.Bool("async", false, "return the session id at once")
	key := fs.String("idempotency-key", "", "a retry with the same key returns the first answer instead of running again (durable invocations)")
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fmt.Fprintln(stderr, "pheromone invoke: usage: pheromone invoke APP [--data FILE] [--addr URL] [--async] [--idempotency-key K]")
		return usageExit(args, fs)
	}
	appName := args[0]
	if err := fs.Parse(args[1:]); err != nil {
		return flagExit(err)
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
	base, err := baseURL(*addr)
	if err != nil {
		fmt.Fprintln(stderr, "pheromone invoke:", err)
		return 2
	}
	u := base + "/v1/apps/" + url.PathEscape(appName) + "/invoke"
	if *async {
		u += "?async=true"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		fmt.Fprintln(stderr, "pheromone invoke:", err)
		return 2
	}
	req.Header.Set("Content-Type", "application/json")
	if *key != "" {
		req.Header.Set("Idempotency-Key", *key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		return printResponse("invoke", resp, err, stdout, stderr)
	}
	defer resp.Body.Close()
	if err := followPages(ctx, base, resp.Body, stdout); err != nil {
		fmt.Fprintln(stderr, "pheromone invoke:", err)
		return 1
	}
	return 0
}

// followPages prints a finished session's answer whole: when the result
// comes in pages, it fetches the rest and prints one answer with every
// row.
func followPages(ctx context.Context, base string, first io.Reader, stdout io.Writer) error {
	var s server.SessionAnswer
	if err := json.NewDecoder(first).Decode(&s); err != nil {
		return err
	}
	if s.Next > 0 {
		rows := [][]byte{trimArray(s.Result)}
		for s.Next > 0 {
			u := fmt.Sprintf("%s/v1/sessions/%s?from=%d", base, url.PathEscape(s.Session), s.Next)
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
			if err != nil {
				return err
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return err
			}
			var page server.SessionAnswer
			err = json.NewDecoder(resp.Body).Decode(&page)
			resp.Body.Close()
			if err != nil {
				return err
			}
			if page.Status != "done" {
				return fmt.Errorf("page from row %d: %s %s", s.Next, page.Status, page.Error)
			}
			rows = append(rows, trimArray(page.Result))
			s.Next = page.Next
		}
		s.Result = append(append([]byte{'['}, bytes.Join(rows, []byte{','})...), ']')
	}
	enc := json.NewEncoder(stdout)
	enc.SetEscapeHTML(false)
	return enc.Encode(s)
}

// trimArray returns the elements of a JSON array without its brackets.
func trimArray(a []byte) []byte {
	a = bytes.TrimSpace(a)
	if len(a) < 2 {
		return nil
	}
	return a[1 : len(a)-1]
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
		return usageExit(args, fs)
	}
	if err := fs.Parse(args[2:]); err != nil {
		return flagExit(err)
	}
	q := url.Values{}
	if *key != "" {
		q.Set("key", *key)
	}
	if *session != "" {
		q.Set("session", *session)
	}
	q.Set("limit", strconv.Itoa(*limit))
	base, err := baseURL(*addr)
	if err != nil {
		fmt.Fprintln(stderr, "pheromone query:", err)
		return 2
	}
	u := base + "/v1/apps/" + url.PathEscape(args[0]) + "/buckets/" + url.PathEscape(args[1]) + "?" + q.Encode()
	resp, err := http.Get(u)
	return printResponse("query", resp, err, stdout, stderr)
}

// baseURL turns a node address (a URL, or host:port) into a base URL.
func baseURL(addr string) (string, error) {
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	u, err := url.Parse(addr)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return "", fmt.Errorf("--addr %q: want a node's HTTP address, like http://127.0.0.1:8080 or 127.0.0.1:8080", addr)
	}
	return strings.TrimSuffix(u.String(), "/"), nil
}

// flagExit is the exit code of a failed flag parse: 0 for -h/--help (the
// flag package printed the flags), 2 for a wrong flag.
func flagExit(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	return 2
}

// usageExit prints fs's flags for -h/--help (exit 0) and exits 2 otherwise.
func usageExit(args []string, fs *flag.FlagSet) int {
	for _, a := range args {
		if a == "-h" || a == "-help" || a == "--help" {
			fs.SetOutput(os.Stdout)
			fs.PrintDefaults()
			return 0
		}
	}
	return 2
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
