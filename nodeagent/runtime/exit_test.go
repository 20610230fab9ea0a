package runtime

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/skiffhq/skiff/internal/testimages"
	"github.com/skiffhq/skiff/nodeagent/crilog"
)

// attachedCount is how many containers r copies the output of.
func (r *Runtime) attachedCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.attached)
}

// waitExitEvent waits for OnExit to name id.
func waitExitEvent(t *testing.T, exited <-chan string, id string, timeout time.Duration) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case got := <-exited:
			if got == id {
				return
			}
		case <-deadline:
			t.Fatalf("no exit event for %s after %v", id, timeout)
		}
	}
}

// waitDetached waits until r copies nothing any more (every exited
// container's copies ended and its log was closed).
func waitDetached(t *testing.T, r *Runtime) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); r.attachedCount() != 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d containers still attached after their exit", r.attachedCount())
		}
	}
}

func logText(t *testing.T, path string) string {
	t.Helper()
	var b strings.Builder
	_ = crilog.Read(context.Background(), path, &b, crilog.Options{TailLines: -1})
	return b.String()
}

// The Runtime learns of exits from its one event subscription: the exit
// code of a container that exits, and OOMKilled for one the kernel kills
// at its memory limit; each is named to OnExit once, and its output copy
// ends with it.
func TestExitEventsReportCodeAndOOM(t *testing.T) {
	exited := make(chan string, 16)
	r := start(t, func(id string) { exited <- id })
	codeID, codeLog := newContainer(t, r, "code", `echo bye; exit 7`)
	oomID := fmt.Sprintf("rt-test-oom-%d", time.Now().UnixNano())
	err := r.Create(context.Background(), ContainerConfig{
		ID: oomID, Image: testimages.Busybox,
		// dd's block buffer is 256 MiB, all of it written to.
		Command:     []string{"dd", "if=/dev/zero", "of=/dev/null", "bs=256M", "count=1"},
		MemoryLimit: 32 << 20,
		Labels:      map[string]string{LabelLogPath: filepath.Join(t.TempDir(), "oom", "0.log"), LabelContainer: "oom"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Remove(context.Background(), oomID) })
	for _, id := range []string{codeID, oomID} {
		if err := r.Start(context.Background(), id); err != nil {
			t.Fatal(err)
		}
	}
	waitExitEvent(t, exited, codeID, 20*time.Second)
	c, err := r.Get(context.Background(), codeID)
	if err != nil {
		t.Fatal(err)
	}
	if c.State != StateExited || c.ExitCode != 7 || c.OOMKilled {
		t.Errorf("after its exit event: %+v, want exited with code 7", c)
	}
	waitExitEvent(t, exited, oomID, 30*time.Second)
	c, err = r.Get(context.Background(), oomID)
	if err != nil {
		t.Fatal(err)
	}
	if c.State != StateExited || c.ExitCode != 137 || !c.OOMKilled {
		t.Errorf("after its exit event: %+v, want exited with code 137, OOMKilled", c)
	}
	waitDetached(t, r)
	if got := logText(t, codeLog); got != "bye\n" {
		t.Errorf("log = %q, want %q", got, "bye\n")
	}
}

// A container that exits while no Runtime follows it (the agent
// restarting) is seen by the next one: its Adopt takes over a container
// that still runs, whose exit (after the adoption) reaches OnExit; one
// that exited before the new Runtime started is reported exited with its
// code.
func TestExitDuringAgentRestart(t *testing.T) {
	admin := start(t, nil)
	early, _ := newContainer(t, admin, "early", `echo one; exit 3`)
	late, lateLog := newContainer(t, admin, "late", `echo one; sleep 3; echo two; exit 4`)

	first, err := New(context.Background(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{early, late} {
		if err := first.Start(context.Background(), id); err != nil {
			_ = first.Close()
			t.Fatal(err)
		}
	}
	// The agent stops at once; early exits while none runs.
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	waitState(t, admin, early, StateExited)

	exited := make(chan string, 8)
	second, err := New(context.Background(), Options{OnExit: func(id string) { exited <- id }})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = second.Close() }()
	if err := second.Adopt(context.Background()); err != nil {
		t.Fatal(err)
	}
	c, err := second.Get(context.Background(), early)
	if err != nil {
		t.Fatal(err)
	}
	if c.State != StateExited || c.ExitCode != 3 {
		t.Errorf("the container that exited between the agents: %+v, want exited with code 3", c)
	}
	if c, err := second.Get(context.Background(), late); err != nil || c.State != StateRunning {
		t.Fatalf("the adopted container: %+v, %v; want running (the test was too slow)", c, err)
	}
	waitExitEvent(t, exited, late, 20*time.Second)
	if c, err := second.Get(context.Background(), late); err != nil || c.State != StateExited || c.ExitCode != 4 {
		t.Errorf("the adopted container after its exit event: %+v, %v; want exited with code 4", c, err)
	}
	waitDetached(t, second)
	if got := logText(t, lateLog); got != "one\ntwo\n" {
		t.Errorf("log = %q, want both lines, each once", got)
	}
}

// privateContainerd is a containerd of the test's own (multinode's
// instance 15 layout, on its own paths), so that the test can kill it and
// start it again without disturbing the machine's.
type privateContainerd struct {
	t           *testing.T
	state, root string
	cmd         *exec.Cmd
	done        chan struct{}
}

func (p *privateContainerd) address() string { return filepath.Join(p.state, "containerd.sock") }

func startPrivateContainerd(t *testing.T) *privateContainerd {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to run containerd")
	}
	if _, err := exec.LookPath("containerd"); err != nil {
		t.Skip("no containerd binary")
	}
	p := &privateContainerd{t: t, state: "/run/skiff-ctrd-rt15", root: "/var/lib/skiff-ctrd-rt15"}
	p.clean()
	if err := os.MkdirAll(p.state, 0o711); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = %q
[ttrpc]
  address = %q
`, p.root, p.state, p.address(), p.address()+".ttrpc")
	if err := os.WriteFile(filepath.Join(p.state, "config.toml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	p.start()
	t.Cleanup(func() {
		p.kill()
		p.clean()
	})
	return p
}

func (p *privateContainerd) start() {
	p.t.Helper()
	logf, err := os.OpenFile(filepath.Join(p.t.TempDir(), "containerd.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		p.t.Fatal(err)
	}
	defer logf.Close()
	p.cmd = exec.Command("containerd", "--config", filepath.Join(p.state, "config.toml"))
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	done := make(chan struct{})
	p.done = done
	go func() { _ = p.cmd.Wait(); close(done) }()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if _, err := os.Stat(p.address()); err == nil {
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatal("the private containerd did not start")
		}
	}
}

// kill ends containerd with SIGKILL, as a crash: the shims and their
// containers stay.
func (p *privateContainerd) kill() {
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
	p.cmd = nil
}

// clean removes what a run left: mounts under its folders, the folders.
func (p *privateContainerd) clean() {
	for _, d := range []string{p.state, p.root} {
		if b, err := os.ReadFile("/proc/self/mounts"); err == nil {
			var under []string
			for _, l := range strings.Split(string(b), "\n") {
				if f := strings.Fields(l); len(f) > 1 && strings.HasPrefix(f[1], d+"/") {
					under = append(under, f[1])
				}
			}
			for i := len(under) - 1; i >= 0; i-- {
				_ = syscall.Unmount(under[i], syscall.MNT_DETACH)
			}
		}
		_ = os.RemoveAll(d)
	}
}

// containerd crashes and comes back while a container runs; the container
// exits meanwhile. The Runtime subscribes again, and the exit reaches
// OnExit, the exit code is reported and the output copy ends.
func TestExitWhileContainerdRestarts(t *testing.T) {
	ctrd := startPrivateContainerd(t)
	exited := make(chan string, 8)
	r := startWith(t, Options{Address: ctrd.address(), OnExit: func(id string) { exited <- id }})
	id, logPath := newContainer(t, r, "outage", `echo before; sleep 2; echo after; exit 5`)
	if err := r.Start(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	waitState(t, r, id, StateRunning)
	ctrd.kill()
	time.Sleep(5 * time.Second) // the container exits while containerd is down
	ctrd.start()
	waitExitEvent(t, exited, id, 30*time.Second)
	c := waitState(t, r, id, StateExited)
	if c.ExitCode != 5 {
		t.Errorf("after containerd came back: %+v, want exit code 5", c)
	}
	waitDetached(t, r)
	if got := logText(t, logPath); got != "before\nafter\n" {
		t.Errorf("log = %q, want both lines", got)
	}

	// The subscription stands again: the next exit comes as an event.
	id2, _ := newContainer(t, r, "after-outage", `exit 9`)
	if err := r.Start(context.Background(), id2); err != nil {
		t.Fatal(err)
	}
	waitExitEvent(t, exited, id2, 20*time.Second)
	if c, err := r.Get(context.Background(), id2); err != nil || c.ExitCode != 9 {
		t.Errorf("after containerd came back, a new container: %+v, %v; want exit code 9", c, err)
	}
}

// The event subscription sees every exit of the namespace: other agents'
// and other Runtimes' containers too. A Runtime reports the exits of its
// own containers only (as the task.Wait per container did): another
// Runtime's container exits first, then one of r's; r's events come in
// order, so once r reports its own, it would have reported the other.
func TestExitOfAnotherRuntimesContainerIsNotReported(t *testing.T) {
	var mu sync.Mutex
	var reported []string
	own := make(chan struct{})
	var ownID string
	r := start(t, func(id string) {
		mu.Lock()
		defer mu.Unlock()
		reported = append(reported, id)
		if id == ownID {
			close(own)
		}
	})
	otherExited := make(chan string, 8)
	other := startWith(t, Options{OnExit: func(id string) { otherExited <- id }})
	foreign, _ := newContainer(t, other, "foreign", `exit 0`)
	if err := other.Start(context.Background(), foreign); err != nil {
		t.Fatal(err)
	}
	waitExitEvent(t, otherExited, foreign, 30*time.Second)
	id, _ := newContainer(t, r, "own", `exit 0`)
	mu.Lock()
	ownID = id
	mu.Unlock()
	if err := r.Start(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	select {
	case <-own:
	case <-time.After(30 * time.Second):
		t.Fatal("no exit event for the Runtime's own container")
	}
	mu.Lock()
	defer mu.Unlock()
	for _, got := range reported {
		if got == foreign {
			t.Errorf("the exit of another Runtime's container %s was reported", foreign)
		}
	}
	r.mu.Lock()
	_, inOOM := r.oom[foreign]
	r.mu.Unlock()
	if inOOM {
		t.Errorf("another Runtime's container %s is in the OOM record", foreign)
	}
}
