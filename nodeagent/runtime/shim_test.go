package runtime

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
)

// shimsOf lists the pids of the containerd shims started for container id.
func shimsOf(t *testing.T, id string) []int {
	t.Helper()
	pids, err := ShimPIDs(id)
	if err != nil {
		t.Fatal(err)
	}
	return pids
}

// waitNoShim fails t unless every shim of container id is gone within
// 15 s. A shim left behind is killed (it has no task nor container left to
// serve), so that a failed run does not leak it.
func waitNoShim(t *testing.T, id string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		pids := shimsOf(t, id)
		if len(pids) == 0 {
			return
		}
		if time.Now().After(deadline) {
			for _, pid := range pids {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			t.Fatalf("container %s is removed, but its shim still runs (pids %v, killed now)", id, pids)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// chatty writes output without pause: once nobody reads it, the FIFO fills
// and the shim's copy blocks, which makes the shim's task delete wait (for
// up to 2 s) for that copy.
const chatty = `while true; do echo "a line of output that nobody reads any more"; done`

// blockedContainer creates and starts a chatty container with a Runtime
// that then detaches (an agent stopping): its output stays unread. It
// returns the container and a fresh Runtime to remove it with.
func blockedContainer(t *testing.T, name string) (string, *Runtime) {
	t.Helper()
	admin := start(t, nil)
	id, _ := newContainer(t, admin, name, chatty)
	open := func() *Runtime {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		r, err := New(ctx, Options{})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	first := open()
	err := first.Start(context.Background(), id)
	time.Sleep(300 * time.Millisecond)
	_ = first.Close()
	if err != nil {
		t.Fatal(err)
	}
	waitBlockedOnOutput(t, admin, id)
	next := open()
	t.Cleanup(func() { _ = next.Close() })
	// Killed first: the removal's time is then the task delete's.
	if err := next.Stop(context.Background(), id, 0); err != nil {
		t.Fatal(err)
	}
	return id, next
}

// waitBlockedOnOutput waits until the container's process is blocked
// writing its output (the pipe to the shim full, as the shim's FIFO is),
// which is what makes the task delete slow; a fixed sleep was not always
// enough on a loaded machine.
func waitBlockedOnOutput(t *testing.T, r *Runtime, id string) {
	t.Helper()
	wchan := fmt.Sprintf("/proc/%d/wchan", loadTask(t, r, id).Pid())
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, _ := os.ReadFile(wchan)
		if strings.HasSuffix(string(b), "pipe_write") { // anon_pipe_write on newer kernels
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the container never blocked on its output (%s: %q)", wchan, b)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// loadTask is the task of container id, through containerd's client.
func loadTask(t *testing.T, r *Runtime, id string) containerd.Task {
	t.Helper()
	nctx := r.ctx(context.Background())
	c, err := r.client.LoadContainer(nctx, id)
	if err != nil {
		t.Fatal(err)
	}
	task, err := c.Task(nctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	return task
}

// A removal whose context ends while containerd deletes the task (the
// agent stopping during a pod's termination: TestServicesOnRealPods leaked
// web-2's shim so) must not leave the container's shim running once the
// container is gone.
func TestRemoveInterruptedLeavesNoShim(t *testing.T) {
	id, r := blockedContainer(t, "shim-cancel")
	// Cancelled, as the agent's context is when it stops (a deadline would
	// reach the shim; a cancel does not).
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(500*time.Millisecond, cancel)
	begin := time.Now()
	err := r.Remove(ctx, id)
	cancel()
	if took := time.Since(begin); took < 500*time.Millisecond {
		t.Fatalf("Remove took %v, less than the time to the cancel: the test proves nothing", took)
	}
	t.Logf("interrupted Remove: %v", err)
	// The shim finishes the delete it was asked for meanwhile.
	time.Sleep(3 * time.Second)
	// The agent's next sync, or its successor, removes what is left.
	if err := r.Remove(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Get(context.Background(), id); !errors.Is(err, ErrContainerNotFound) {
		t.Fatalf("container after Remove: %v, want ErrContainerNotFound", err)
	}
	waitNoShim(t, id)
}

// A task delete interrupted by someone else (an agent killed half way
// through Remove) leaves containerd with a task its shim no longer has:
// containerd lists no task any more, yet the shim waits for a shutdown.
// Remove still gets that shim shut down.
func TestRemoveAfterInterruptedTaskDelete(t *testing.T) {
	id, r := blockedContainer(t, "shim-half")
	task := loadTask(t, r, id)
	ctx, cancel := context.WithCancel(r.ctx(context.Background()))
	time.AfterFunc(500*time.Millisecond, cancel)
	_, err := task.Delete(ctx)
	cancel()
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("task delete: %v, want it cancelled half way: the test proves nothing", err)
	}
	time.Sleep(3 * time.Second)
	if err := r.Remove(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	waitNoShim(t, id)
}

func TestRemoveLeavesNoShim(t *testing.T) {
	r := start(t, nil)
	id, _ := newContainer(t, r, "shim-run", chatty)
	if err := r.Start(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	waitState(t, r, id, StateRunning)
	if err := r.Remove(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	waitNoShim(t, id)
}
