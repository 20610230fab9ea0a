package runtime

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/pkg/cio"

	"github.com/skiffhq/skiff/nodeagent/crilog"
)

// waitLog fails t unless the container's log at path has want within 10 s.
func waitLog(t *testing.T, path, want string) {
	t.Helper()
	var out bytes.Buffer
	deadline := time.Now().Add(10 * time.Second)
	for {
		out.Reset()
		_ = crilog.Read(context.Background(), path, &out, crilog.Options{TailLines: -1})
		if strings.Contains(out.String(), want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("log %s = %q, want it to contain %q", path, out.String(), want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A Start whose caller gives up at any moment (the agent's sync cancelled
// as it stops) still starts the container with its output read: cancelled
// half way, it left a task that nobody read, or one the next Start could
// not create.
func TestStartCancelledRunsToEnd(t *testing.T) {
	r := start(t, nil)
	for _, d := range []time.Duration{0, 5 * time.Millisecond, 20 * time.Millisecond, 60 * time.Millisecond, 150 * time.Millisecond} {
		t.Run(d.String(), func(t *testing.T) {
			id, logPath := newContainer(t, r, fmt.Sprintf("cancel-%d", d.Milliseconds()), `echo started; exec sleep 60`)
			ctx, cancel := context.WithCancel(context.Background())
			if d == 0 {
				cancel()
			} else {
				time.AfterFunc(d, cancel)
			}
			err := r.Start(ctx, id)
			cancel()
			if err != nil {
				t.Fatalf("Start with its context cancelled after %v: %v", d, err)
			}
			waitState(t, r, id, StateRunning)
			waitLog(t, logPath, "started\n")
		})
	}
}

// A task created and never started (an agent killed inside Start) does
// not block the container: the next Start replaces it.
func TestStartReplacesUnstartedTask(t *testing.T) {
	r := start(t, nil)
	id, logPath := newContainer(t, r, "unstarted", `echo second start; exec sleep 60`)
	ctx := r.ctx(context.Background())
	c, err := r.client.LoadContainer(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.NewTask(ctx, cio.NullIO); err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background(), id); err != nil {
		t.Fatalf("Start over an unstarted task: %v", err)
	}
	waitState(t, r, id, StateRunning)
	waitLog(t, logPath, "second start\n")
}
