package runtime

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/internal/testimages"
	"github.com/skiffhq/skiff/nodeagent/crilog"
)

// start connects to the machine's containerd, or skips the test.
func start(t *testing.T, onExit func(string)) *Runtime {
	t.Helper()
	return startWith(t, Options{OnExit: onExit})
}

// startWith is start with options.
func startWith(t *testing.T, opts Options) *Runtime {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to run containers through containerd")
	}
	nctx, ncancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer ncancel()
	r, err := New(nctx, opts)
	if err != nil {
		t.Skipf("containerd is not reachable (run deploy/install-deps.sh): %v", err)
	}
	t.Cleanup(func() { _ = r.Close() })
	// The import has its own time: New may have waited for containerd to
	// confirm its event subscription, and a busy machine's containerd is
	// slow to ingest.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tar := filepath.Join(t.TempDir(), "busybox.tar")
	if err := testimages.WriteBusybox(tar); err != nil {
		if errors.Is(err, testimages.ErrNoBusybox) {
			t.Skip(err)
		}
		t.Fatal(err)
	}
	names, err := r.ImportFile(ctx, tar)
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != 1 || names[0] != testimages.Busybox {
		t.Fatalf("imported %v, want [%s]", names, testimages.Busybox)
	}
	return r
}

func newContainer(t *testing.T, r *Runtime, name string, args ...string) (id, logPath string) {
	t.Helper()
	id = fmt.Sprintf("rt-test-%s-%d", name, time.Now().UnixNano())
	logPath = filepath.Join(t.TempDir(), name, "0.log")
	err := r.Create(context.Background(), ContainerConfig{
		ID: id, Image: testimages.Busybox, Command: []string{"sh", "-c"}, Args: args,
		Env:    []string{"GREETING=hello"},
		Labels: map[string]string{LabelLogPath: logPath, LabelContainer: name},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Remove(context.Background(), id); err != nil {
			t.Errorf("remove %s: %v", id, err)
		}
	})
	return id, logPath
}

func waitState(t *testing.T, r *Runtime, id string, want State) Container {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := r.Get(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if c.State == want {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %s is %s, want %s", id, c.State, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestRunExitCodeAndLog(t *testing.T) {
	exited := make(chan string, 4)
	r := start(t, func(id string) { exited <- id })
	id, logPath := newContainer(t, r, "exit", `echo "$GREETING out"; echo err >&2; printf partial; exit 3`)
	if err := r.Start(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	c := waitState(t, r, id, StateExited)
	if c.ExitCode != 3 || c.FinishedAt.IsZero() || c.StartedAt.IsZero() || c.Labels[LabelContainer] != "exit" {
		t.Fatalf("container = %+v", c)
	}
	select {
	case got := <-exited:
		if got != id {
			t.Fatalf("exit event for %s, want %s", got, id)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no exit event")
	}
	var out bytes.Buffer
	deadline := time.Now().Add(5 * time.Second)
	for {
		out.Reset()
		_ = crilog.Read(context.Background(), logPath, &out, crilog.Options{TailLines: -1})
		if strings.Contains(out.String(), "partial") || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	got := out.String()
	if !strings.Contains(got, "hello out\n") || !strings.Contains(got, "err\n") || !strings.HasSuffix(got, "partial") {
		t.Fatalf("log = %q", got)
	}
	raw, _ := os.ReadFile(logPath)
	if !bytes.Contains(raw, []byte(" stderr F err\n")) || !bytes.Contains(raw, []byte(" stdout F hello out\n")) {
		t.Fatalf("raw CRI log = %q", raw)
	}
}

func TestStopEscalatesToSIGKILL(t *testing.T) {
	r := start(t, nil)
	// PID 1 ignores SIGTERM unless it handles it: sleep in a shell that
	// traps nothing keeps running until SIGKILL.
	id, _ := newContainer(t, r, "stop", `while true; do sleep 1; done`)
	if err := r.Start(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	waitState(t, r, id, StateRunning)
	begin := time.Now()
	if err := r.Stop(context.Background(), id, 500*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(begin); took < 500*time.Millisecond {
		t.Fatalf("stopped after %v, before the grace period", took)
	}
	c := waitState(t, r, id, StateExited)
	if c.ExitCode != 137 {
		t.Fatalf("exit code %d, want 137 (SIGKILL)", c.ExitCode)
	}
}

func TestGracefulStopHonoursSIGTERM(t *testing.T) {
	r := start(t, nil)
	id, _ := newContainer(t, r, "term", `trap 'exit 0' TERM; while true; do sleep 0.1; done`)
	if err := r.Start(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	waitState(t, r, id, StateRunning)
	time.Sleep(200 * time.Millisecond) // let the shell install its trap
	begin := time.Now()
	if err := r.Stop(context.Background(), id, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(begin); took > 10*time.Second {
		t.Fatalf("SIGTERM took %v", took)
	}
	if c := waitState(t, r, id, StateExited); c.ExitCode != 0 {
		t.Fatalf("exit code %d, want 0", c.ExitCode)
	}
}

func TestNormalizeRef(t *testing.T) {
	for in, want := range map[string]string{
		"busybox":              "docker.io/library/busybox:latest",
		"nginx:1.27":           "docker.io/library/nginx:1.27",
		"skiff.test/busybox:1": "skiff.test/busybox:1",
	} {
		got, err := NormalizeRef(in)
		if err != nil || got != want {
			t.Errorf("NormalizeRef(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := NormalizeRef("not a ref"); err == nil {
		t.Error("want an error for an invalid reference")
	}
}

// TestListPod lists exactly the containers labelled with one pod's UID
// (containerd filters them: a pod's sync costs its own containers, not
// the node's), with UIDs that only share a prefix kept apart.
func TestListPod(t *testing.T) {
	r := start(t, nil)
	ctx := context.Background()
	suffix := fmt.Sprint(time.Now().UnixNano())
	uidA, uidB := "list-pod-a-"+suffix, "list-pod-a-"+suffix+"-b"
	mk := func(name, uid string) string {
		id := fmt.Sprintf("rt-test-%s-%s", name, suffix)
		if err := r.Create(ctx, ContainerConfig{ID: id, Image: testimages.Busybox, Command: []string{"true"},
			Labels: map[string]string{LabelContainer: name, LabelPodUID: uid, LabelLogPath: filepath.Join(t.TempDir(), "0.log")}}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = r.Remove(context.Background(), id) })
		return id
	}
	a1, a2, b := mk("a1", uidA), mk("a2", uidA), mk("b", uidB)
	ids := func(uid string) []string {
		t.Helper()
		cs, err := r.ListPod(ctx, uid)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, c := range cs {
			if c.State != StateCreated || c.Labels[LabelPodUID] != uid {
				t.Errorf("container %s: state %s, labels %v", c.ID, c.State, c.Labels)
			}
			out = append(out, c.ID)
		}
		slices.Sort(out)
		return out
	}
	if got, want := ids(uidA), []string{a1, a2}; !slices.Equal(got, want) {
		t.Errorf("ListPod(%s) = %v, want %v", uidA, got, want)
	}
	if got := ids(uidB); !slices.Equal(got, []string{b}) {
		t.Errorf("ListPod(%s) = %v, want [%s]", uidB, got, b)
	}
	if got := ids("no-such-pod-" + suffix); len(got) != 0 {
		t.Errorf("ListPod of an unknown pod = %v", got)
	}
}
