package runtime

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// ShimPIDs lists the pids of the containerd shims started for container
// id, found by their command line (-id <id>). A shim outliving its task
// and container is a leak containerd itself does not list; tests use
// this to prove there is none.
func ShimPIDs(id string) ([]int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	var out []int
	for _, ent := range ents {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "cmdline"))
		if err != nil || !bytes.Contains(b, []byte("containerd-shim")) {
			continue
		}
		args := bytes.Split(bytes.TrimRight(b, "\x00"), []byte{0})
		for i := 0; i+1 < len(args); i++ {
			if string(args[i]) == "-id" && string(args[i+1]) == id {
				out = append(out, pid)
			}
		}
	}
	return out, nil
}
