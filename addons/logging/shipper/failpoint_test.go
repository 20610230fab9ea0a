//go:build failpoints

package shipper

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/skiffhq/skiff/internal/failpoint"
	"github.com/skiffhq/skiff/nodeagent/crilog"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// idSink answers bulk creates as Elasticsearch does for documents with
// IDs: 201 the first time an ID is created, 409 after that. It counts both.
type idSink struct {
	mu      sync.Mutex
	ids     map[string]int
	repeats int
}

func (s *idSink) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	b, ok := esRequest(w, req)
	if !ok {
		return
	}
	if !strings.HasSuffix(req.URL.Path, "/_bulk") {
		_, _ = w.Write([]byte(`{"acknowledged":true}`))
		return
	}
	var items []string
	s.mu.Lock()
	for _, c := range bulkCreates(b) {
		s.ids[c.ID]++
		if s.ids[c.ID] == 1 {
			items = append(items, fmt.Sprintf(`{"create":{"_index":%q,"_id":%q,"status":201,"result":"created"}}`, c.Index, c.ID))
			continue
		}
		s.repeats++
		items = append(items, fmt.Sprintf(`{"create":{"_index":%q,"_id":%q,"status":409,"error":{"type":"version_conflict_engine_exception","reason":"document already exists"}}}`, c.Index, c.ID))
	}
	s.mu.Unlock()
	fmt.Fprintf(w, `{"took":1,"errors":true,"items":[%s]}`, strings.Join(items, ","))
}

func (s *idSink) counts() (distinct, repeats int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.ids), s.repeats
}

const helperEnv = "SKIFF_TEST_SHIPPER_HELPER"

// TestShipperHelperProcess is the shipper process TestKilledBeforeCheckpoint
// starts and kills; it does nothing in a normal test run.
func TestShipperHelperProcess(t *testing.T) {
	dirs := os.Getenv(helperEnv)
	if dirs == "" {
		t.Skip("runs only as TestKilledBeforeCheckpoint's child process")
	}
	parts := strings.Split(dirs, "|")
	if len(parts) != 3 {
		t.Fatalf("%s=%q: want logdir|statedir|url", helperEnv, dirs)
	}
	logDir, state, url := parts[0], parts[1], parts[2]
	pod := testPod()
	s, err := New(Config{PodLogDir: logDir, StateDir: state, NodeName: "node-a", URL: url,
		Pod: func(uid types.UID) *corev1.Pod {
			if uid == pod.UID {
				return pod
			}
			return nil
		},
		PollInterval: 20 * time.Millisecond, FlushInterval: 20 * time.Millisecond, FlushBytes: 4 << 10,
		CheckpointInterval: 150 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer cancel()
	if err := s.Run(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestKilledBeforeCheckpoint kills a shipper process (SIGKILL, at the
// failpoint shipper/before-checkpoint) after the sink acknowledged lines
// and before their offsets were written. The next process must ship from
// the last checkpoint: every line ends up in the sink, the acknowledged
// ones are sent again under the same IDs (so the sink refuses them as
// duplicates), and none is stored twice.
func TestKilledBeforeCheckpoint(t *testing.T) {
	sink := &idSink{ids: map[string]int{}}
	srv := httptest.NewServer(sink)
	defer srv.Close()
	root := t.TempDir()
	logDir, state := filepath.Join(root, "logs"), filepath.Join(root, "state")
	w, err := crilog.OpenRotating(filepath.Join(logDir, "ns1_web-0_uid-1", "app", "0.log"), crilog.Rotation{MaxSize: 64 << 20, MaxFiles: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	written := 0
	write := func(n int) {
		for range n {
			if _, err := w.Stream(crilog.Stdout).Write([]byte(line(written) + "\n")); err != nil {
				t.Fatal(err)
			}
			written++
		}
	}
	start := func(failpoints string) (*exec.Cmd, *strings.Builder, chan error) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestShipperHelperProcess$", "-test.v")
		cmd.Env = append(os.Environ(), helperEnv+"="+logDir+"|"+state+"|"+srv.URL, failpoint.Env+"="+failpoints)
		out := &strings.Builder{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		return cmd, out, done
	}

	// First process: the first checkpoint is written, the second is not.
	_, out, done := start("shipper/before-checkpoint=after(1)kill")
	var exitErr error
	deadline := time.After(30 * time.Second)
writing:
	for {
		write(50)
		select {
		case exitErr = <-done:
			break writing
		case <-deadline:
			t.Fatalf("the shipper was not killed at its checkpoint within 30 s; output:\n%s", out)
		case <-time.After(10 * time.Millisecond):
		}
	}
	var ee *exec.ExitError
	if !errors.As(exitErr, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("first shipper ended with %v, want SIGKILL; output:\n%s", exitErr, out)
	}
	if !strings.Contains(out.String(), "failpoint: shipper/before-checkpoint kill") {
		t.Fatalf("first shipper did not die at the failpoint; output:\n%s", out)
	}
	shippedBefore, _ := sink.counts()
	write(500)
	t.Logf("killed after %d of %d lines were in the sink", shippedBefore, written)

	// Second process: no failpoint, until every line is in.
	cmd, out, done := start("")
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		<-done
	}()
	for end := time.Now().Add(30 * time.Second); ; {
		if got, _ := sink.counts(); got >= written {
			break
		}
		if time.Now().After(end) {
			got, _ := sink.counts()
			t.Fatalf("the sink holds %d of %d lines after the restart; output:\n%s", got, written, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // anything more would be a line under a second ID
	distinct, repeats := sink.counts()
	if distinct != written {
		t.Errorf("the sink holds %d distinct documents for %d lines", distinct, written)
	}
	if repeats == 0 {
		t.Errorf("no line was sent again: the kill did not fall between acknowledgement and checkpoint")
	}
	t.Logf("%d lines, %d sent again after the kill and refused as duplicates", written, repeats)
}
