package cli

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/pheromone-go/pheromone/connectors/kafka"
	"github.com/pheromone-go/pheromone/connectors/registry"
	"github.com/pheromone-go/pheromone/engine"
)

// recordFlags are the flags produce and consume share.
type recordFlags struct {
	brokers, registry, format, subject, message *string
}

func addRecordFlags(fs *flag.FlagSet) recordFlags {
	return recordFlags{
		brokers:  fs.String("brokers", "127.0.0.1:9092", "comma-separated brokers"),
		registry: fs.String("registry", "http://127.0.0.1:8081", "schema registry URL (formats avro, protobuf, json_schema)"),
		format:   fs.String("format", "json", "json (as it is), avro, protobuf or json_schema"),
		subject:  fs.String("subject", "", "the registry subject (default <topic>-value)"),
		message:  fs.String("message", "", "protobuf: the message (default the schema's first)"),
	}
}

func (f recordFlags) subjectOf(topic string) string {
	if *f.subject != "" {
		return *f.subject
	}
	return topic + "-value"
}

// cmdProduce writes JSON lines from stdin to a topic, in the wire format of
// a registry format: `pheromone produce -t orders --format avro`.
func cmdProduce(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("produce", flag.ContinueOnError)
	fs.SetOutput(stderr)
	topic := fs.String("t", "", "the topic written (required)")
	schemaFile := fs.String("schema-file", "", "register this schema under the subject first (.avsc, .proto, .json)")
	rf := addRecordFlags(fs)
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	if *topic == "" {
		fmt.Fprintln(stderr, "pheromone produce: -t TOPIC is required")
		return 2
	}
	fail := func(err error) int { fmt.Fprintln(stderr, "pheromone produce:", err); return 1 }
	var conv *registry.Converter
	if *rf.format != "json" {
		cl, err := registry.NewClient(*rf.registry, nil, os.Getenv)
		if err != nil {
			return fail(err)
		}
		if conv, err = registry.NewConverter(ctx, cl, *rf.format, rf.subjectOf(*topic), *schemaFile, *rf.message); err != nil {
			return fail(err)
		}
		defer conv.Close()
	}
	conn := kafka.Plain(strings.Split(*rf.brokers, ",")...)
	if err := kafka.EnsureTopics(ctx, conn, map[string]int{*topic: 4}); err != nil {
		return fail(err)
	}
	p, err := kafka.NewProducer(conn)
	if err != nil {
		return fail(err)
	}
	defer p.Close()
	var lines [][]byte
	sc := bufio.NewScanner(stdin)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		if l := bytes.TrimSpace(sc.Bytes()); len(l) > 0 {
			lines = append(lines, bytes.Clone(l))
		}
	}
	if err := sc.Err(); err != nil {
		return fail(err)
	}
	values := lines
	if conv != nil {
		if values, err = conv.Convert(lines); err != nil {
			return fail(err)
		}
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for _, v := range values {
		wg.Add(1)
		p.Produce(&engine.OutRecord{Topic: *topic, Value: v}, func(err error) {
			defer wg.Done()
			mu.Lock()
			if firstErr == nil {
				firstErr = err
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	if firstErr != nil {
		return fail(firstErr)
	}
	fmt.Fprintf(stdout, "%d records written to %s (%s)\n", len(values), *topic, *rf.format)
	return 0
}

// cmdConsume prints a topic's records from its start to its end as JSON
// lines, decoding a registry format by each record's schema:
// `pheromone consume -t big-orders --format avro`.
func cmdConsume(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("consume", flag.ContinueOnError)
	fs.SetOutput(stderr)
	topic := fs.String("t", "", "the topic read (required)")
	rf := addRecordFlags(fs)
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	if *topic == "" {
		fmt.Fprintln(stderr, "pheromone consume: -t TOPIC is required")
		return 2
	}
	fail := func(err error) int { fmt.Fprintln(stderr, "pheromone consume:", err); return 1 }
	var rd *registry.Reader
	if *rf.format != "json" {
		cl, err := registry.NewClient(*rf.registry, nil, os.Getenv)
		if err != nil {
			return fail(err)
		}
		if rd, err = registry.NewReader(ctx, cl, *rf.format, rf.subjectOf(*topic), *rf.message); err != nil {
			return fail(err)
		}
		defer rd.Close()
	}
	w := bufio.NewWriter(stdout)
	defer w.Flush()
	var line []byte
	_, err := kafka.FeedTable(ctx, kafka.Plain(strings.Split(*rf.brokers, ",")...), *topic, func(_, v []byte) error {
		line = line[:0]
		if rd == nil {
			line = append(line, v...)
		} else {
			var err error
			if line, err = rd.Read(line, v); err != nil {
				fmt.Fprintf(stderr, "pheromone consume: a record: %v\n", err)
				return nil
			}
		}
		_, err := w.Write(append(line, '\n'))
		return err
	}, nil)
	if err != nil {
		return fail(err)
	}
	return 0
}
