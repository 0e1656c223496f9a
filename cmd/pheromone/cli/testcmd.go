package cli

import (
	"context"
	"encoding/xml"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/pheromone-go/pheromone/engine/fn"
	"github.com/pheromone-go/pheromone/server/apptest"
)

// cmdTest runs the test files (*_test.yaml) under the given files and
// directories: `pheromone test examples/`. Output and exit code as go
// test's.
func cmdTest(ctx context.Context, reg *fn.Registry, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(stderr)
	run := fs.String("run", "", "run only the cases whose name matches this regular expression")
	junit := fs.String("junit", "", "also write a JUnit XML report to this file")
	verbose := fs.Bool("v", false, "print every case, not only failures")
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	paths := fs.Args()
	if len(paths) == 0 {
		paths = []string{"."}
	}
	files, err := testFiles(paths)
	if err != nil {
		fmt.Fprintln(stderr, "pheromone test:", err)
		return 2
	}
	if len(files) == 0 {
		fmt.Fprintln(stderr, "pheromone test: no *_test.yaml files under", strings.Join(paths, " "))
		return 2
	}
	o := apptest.Options{Functions: reg.Functions()}
	if *run != "" {
		if o.Run, err = regexp.Compile(*run); err != nil {
			fmt.Fprintln(stderr, "pheromone test: -run:", err)
			return 2
		}
	}
	failed := false
	var suites []junitSuite
	for _, f := range files {
		t0 := time.Now()
		res, err := apptest.Run(ctx, f, o)
		suite := junitSuite{Name: f}
		if err != nil {
			fmt.Fprintf(stdout, "FAIL\t%s\t%s\n", f, err)
			failed = true
			suite.Errors = 1
			suites = append(suites, suite)
			continue
		}
		fileFailed := false
		for _, r := range res {
			tc := junitCase{Name: r.Case, Class: f, Time: r.Duration.Seconds()}
			switch {
			case r.Skipped != "":
				fmt.Fprintf(stdout, "--- SKIP: %s\n    %s\n", r.Case, r.Skipped)
				tc.Skipped = &junitSkipped{Message: r.Skipped}
			case !r.Passed:
				fileFailed = true
				fmt.Fprintf(stdout, "--- FAIL: %s (%.2fs)\n    %s\n", r.Case, r.Duration.Seconds(), strings.ReplaceAll(r.Failure, "\n", "\n    "))
				tc.Failure = &junitFailure{Message: firstLine(r.Failure), Text: r.Failure}
				suite.Failures++
			case *verbose:
				fmt.Fprintf(stdout, "--- PASS: %s (%.2fs)\n", r.Case, r.Duration.Seconds())
			}
			suite.Tests++
			suite.Cases = append(suite.Cases, tc)
		}
		suite.Time = time.Since(t0).Seconds()
		suites = append(suites, suite)
		status := "ok"
		if fileFailed {
			status, failed = "FAIL", true
		}
		fmt.Fprintf(stdout, "%s\t%s\t%.3fs\t%d cases\n", status, f, time.Since(t0).Seconds(), len(res))
	}
	if *junit != "" {
		b, _ := xml.MarshalIndent(junitSuites{Suites: suites}, "", "  ")
		if err := os.WriteFile(*junit, append([]byte(xml.Header), b...), 0o644); err != nil {
			fmt.Fprintln(stderr, "pheromone test: --junit:", err)
			return 2
		}
	}
	if failed {
		fmt.Fprintln(stdout, "FAIL")
		return 1
	}
	return 0
}

func firstLine(s string) string {
	first, _, _ := strings.Cut(s, "\n")
	return first
}

// testFiles are the *_test.yaml files named or under the directories.
func testFiles(paths []string) ([]string, error) {
	var out []string
	for _, p := range paths {
		info, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if !info.IsDir() {
			out = append(out, p)
			continue
		}
		err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() && strings.HasSuffix(path, "_test.yaml") {
				out = append(out, path)
			}
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	sort.Strings(out)
	return out, nil
}

type junitSuites struct {
	XMLName xml.Name     `xml:"testsuites"`
	Suites  []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name     string      `xml:"name,attr"`
	Tests    int         `xml:"tests,attr"`
	Failures int         `xml:"failures,attr"`
	Errors   int         `xml:"errors,attr"`
	Time     float64     `xml:"time,attr"`
	Cases    []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name    string        `xml:"name,attr"`
	Class   string        `xml:"classname,attr"`
	Time    float64       `xml:"time,attr"`
	Failure *junitFailure `xml:"failure,omitempty"`
	Skipped *junitSkipped `xml:"skipped,omitempty"`
}

type junitSkipped struct {
	Message string `xml:"message,attr"`
}

type junitFailure struct {
	Message string `xml:"message,attr"`
	Text    string `xml:",chardata"`
}
