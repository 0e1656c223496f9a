package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// faultNode is a `pheromone run` of restartApp on its own data dir against
// a broker process.
type faultNode struct {
	cmd     *exec.Cmd
	http    string
	broker  string
	cl      *kgo.Client
	nextID  int
	args    []string
	dataDir string
}

func startFaultNode(t *testing.T, dataDir string, extra ...string) *faultNode {
	t.Helper()
	broker := freeAddr(t)
	proc(t, "broker", "--addr", broker, "--data-dir", t.TempDir())
	waitPort(t, broker)
	appFile := filepath.Join(t.TempDir(), "app.yaml")
	if err := os.WriteFile(appFile, []byte(restartApp), 0o644); err != nil {
		t.Fatal(err)
	}
	n := &faultNode{broker: broker, http: freeAddr(t), dataDir: dataDir}
	n.args = append([]string{"run", "-f", appFile, "--brokers", broker, "--data-dir", dataDir, "--http", n.http}, extra...)
	n.cmd = proc(t, n.args...)
	cl, err := kgo.NewClient(kgo.SeedBrokers(broker), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	n.cl = cl
	waitFor(t, 60*time.Second, "the node ready", func() bool { code, _ := n.readyz(); return code == 200 })
	return n
}

// produce writes count more records (ids continue from the last call).
func (n *faultNode) produce(t *testing.T, count int) {
	t.Helper()
	var recs []*kgo.Record
	for i := 0; i < count; i++ {
		id := n.nextID
		n.nextID++
		recs = append(recs, &kgo.Record{Topic: "events", Partition: int32(id % 2),
			Value: fmt.Appendf(nil, `{"id":%d,"user":"u%d"}`, id, id%13)})
	}
	if err := n.cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

func (n *faultNode) readyz() (int, string) {
	resp, err := http.Get("http://" + n.http + "/readyz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestDiskFullPausesAndResumes fills the file system under a running
// node's data dir (a small tmpfs: root only) and frees it again. The node
// must neither exit nor lose a record: its commits pause, /readyz says why,
// and once space returns every input reaches the output and the node
// stops cleanly.
func TestDiskFullPausesAndResumes(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs; CI runs as root")
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", mnt).Run() })
	n := startFaultNode(t, filepath.Join(mnt, "data"), "--min-free-disk", "16")
	out := newReader(t, n.broker, "copy")
	n.produce(t, 200)
	waitFor(t, 30*time.Second, "the first 200 outputs", func() bool { out.poll(); return out.distinct() == 200 })

	// Leave 8 MiB free: under the 16 MiB the node keeps.
	var st syscall.Statfs_t
	if err := syscall.Statfs(mnt, &st); err != nil {
		t.Fatal(err)
	}
	free := int64(st.Bavail) * st.Bsize
	filler := filepath.Join(mnt, "filler")
	if err := os.WriteFile(filler, make([]byte, free-8<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	n.produce(t, 200)
	var why string
	waitFor(t, 30*time.Second, "/readyz to say the commits are paused", func() bool {
		code, body := n.readyz()
		why = body
		return code == 503 && strings.Contains(body, "kept free")
	})
	t.Logf("/readyz while full: %s", strings.TrimSpace(why))

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "/readyz ready again", func() bool { code, _ := n.readyz(); return code == 200 })
	n.produce(t, 200)
	waitFor(t, 60*time.Second, "every input in the output", func() bool { out.poll(); return out.distinct() == 600 })
	if err := n.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := n.cmd.Wait(); err != nil {
		t.Fatalf("the node did not stop cleanly after the disk filled and emptied: %v", err)
	}
}

// TestTwoNodesOnOneDataDir starts a second node on a running node's data
// dir: it must refuse with one line naming the dir, and the first node
// must go on serving.
func TestTwoNodesOnOneDataDir(t *testing.T) {
	n := startFaultNode(t, filepath.Join(t.TempDir(), "data"))
	second := exec.Command(binary_, append(n.args[:len(n.args)-1:len(n.args)-1], freeAddr(t))...)
	b, err := second.CombinedOutput()
	if code := second.ProcessState.ExitCode(); err == nil || code != 1 {
		t.Fatalf("second node on one data dir: exit %d, %v; output:\n%s", code, err, b)
	}
	msg := strings.TrimSpace(string(b))
	if !strings.Contains(msg, "is in use by another node") || !strings.Contains(msg, n.dataDir) || strings.Contains(msg, "goroutine ") {
		t.Fatalf("second node said:\n%s\nwant one line naming the data dir in use", msg)
	}
	out := newReader(t, n.broker, "copy")
	n.produce(t, 100)
	waitFor(t, 30*time.Second, "the first node still serving", func() bool { out.poll(); return out.distinct() == 100 })
	if code, body := n.readyz(); code != 200 {
		t.Fatalf("first node /readyz %d: %s", code, body)
	}
}
