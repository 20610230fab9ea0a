package netnsthread

import (
	"errors"
	"fmt"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

func nsIno(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// TestInNewReturnsThread: f runs in a new namespace, its error comes
// back, and after many runs neither the main thread nor any other thread
// of the process is left in a namespace that InNew made (a thread that
// ended locked on the main thread would stay there).
func TestInNewReturnsThread(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
	host := nsIno(t, "/proc/self/ns/net")
	for i := range 64 {
		var inside uint64
		err := InNew(func() error {
			inside = nsIno(t, fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if inside == host {
			t.Fatalf("run %d: f ran in the host namespace", i)
		}
		if got := nsIno(t, "/proc/self/ns/net"); got != host {
			t.Fatalf("after %d runs the main thread is in namespace %d, not the host's %d", i+1, got, host)
		}
	}
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		var st unix.Stat_t
		if unix.Stat("/proc/self/task/"+task.Name()+"/ns/net", &st) == nil && st.Ino != host {
			t.Errorf("thread %s is in namespace %d, not the host's %d", task.Name(), st.Ino, host)
		}
	}

	boom := errors.New("boom")
	if err := InNew(func() error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("f's error: got %v", err)
	}
}
