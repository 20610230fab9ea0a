package runtime

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/skiffhq/skiff/internal/testimages"
	"github.com/skiffhq/skiff/nodeagent/crilog"
)

// A container writes numbered lines without pause while its log rotates;
// the Runtime copying them is closed mid-stream and another one adopts the
// container, twice, each time with a context that ends as soon as Adopt
// returns (as an agent's start-up context does). A Runtime of another node
// on the same containerd adopts too and must leave the container alone.
// Every line is in the log files exactly once and in order.
func TestAdoptAfterRestartLosesNoOutput(t *testing.T) {
	node := fmt.Sprintf("adopt-%d", time.Now().UnixNano())
	rot := crilog.Rotation{MaxSize: 64 << 10, MaxFiles: 10000}
	// admin creates and removes the container; it copies nothing.
	admin := startWith(t, Options{Node: node})
	const n = 60000
	id := fmt.Sprintf("rt-test-adopt-%d", time.Now().UnixNano())
	logPath := filepath.Join(t.TempDir(), "adopt", "0.log")
	err := admin.Create(context.Background(), ContainerConfig{
		ID: id, Image: testimages.Busybox, Command: []string{"sh", "-c"},
		Args:   []string{fmt.Sprintf(`i=0; while [ $i -lt %d ]; do echo "line $i"; i=$((i+1)); done; sleep 3600`, n)},
		Labels: map[string]string{LabelLogPath: logPath, LabelContainer: "adopt", LabelNode: node},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := admin.Remove(context.Background(), id); err != nil {
			t.Errorf("remove %s: %v", id, err)
		}
	})

	open := func(node string) *Runtime {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		r, err := New(ctx, Options{Node: node, LogRotation: rot})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	adopt := func(r *Runtime) {
		ctx, cancel := context.WithCancel(context.Background())
		err := r.Adopt(ctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
	r := open(node)
	defer func() { _ = r.Close() }()
	sctx, cancel := context.WithCancel(context.Background())
	err = r.Start(sctx, id)
	cancel() // the request that started it ends; the copy goes on
	if err != nil {
		t.Fatal(err)
	}
	lines := func() []string { t.Helper(); return readLines(t, logPath) }
	waitLines := func(atLeast int) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if got := len(lines()); got >= atLeast {
				return
			} else if time.Now().After(deadline) {
				t.Fatalf("the log holds %d lines, want at least %d", got, atLeast)
			}
		}
	}
	for _, at := range []int{n / 6, n / 2} {
		waitLines(at)
		other := open("another-node")
		adopt(other)
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
		_ = other.Close()
		before := len(lines())
		time.Sleep(300 * time.Millisecond) // the container goes on writing into the FIFO
		if after := len(lines()); after != before {
			t.Fatalf("the log grew from %d to %d lines after Close: a copy outlived its Runtime", before, after)
		}
		r = open(node)
		adopt(r)
	}
	waitLines(n)
	time.Sleep(500 * time.Millisecond) // lines copied twice would arrive now
	got := lines()
	for i, l := range got {
		if want := fmt.Sprintf("line %d", i); l != want {
			t.Fatalf("line %d of the log is %q, want %q (%d lines)", i, l, want, len(got))
		}
	}
	if len(got) != n {
		t.Fatalf("%d lines, want %d", len(got), n)
	}
	if files, _ := crilog.RotatedFiles(logPath); len(files) < 10 {
		t.Fatalf("%d rotations: the test did not rotate the log", len(files))
	}
}

// readLines reads the container's stdout lines from the rotated files and
// the current one, oldest first, joining P records to their F record.
func readLines(t *testing.T, path string) []string {
	t.Helper()
	files, err := crilog.RotatedFiles(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	var part []byte
	for _, p := range append(files, path) {
		b, err := os.ReadFile(p)
		if os.IsNotExist(err) {
			continue // rotated away meanwhile: callers read again
		}
		if err != nil {
			t.Fatal(err)
		}
		recs := bytes.Split(b, []byte{'\n'})
		// The last piece is empty or a record still being written.
		for _, l := range recs[:len(recs)-1] {
			rec, err := crilog.Parse(l)
			if err != nil || rec.Stream != crilog.Stdout {
				t.Fatalf("%s: record %q: %v", p, l, err)
			}
			part = append(part, rec.Message...)
			if !rec.Partial {
				out = append(out, string(part))
				part = part[:0]
			}
		}
	}
	return out
}
