//go:build linux

package memtrim

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestDropCacheSmallFaults: a file mapping touched once per MiB has whole
// read-ahead folios (or at least fault-around windows) resident while
// the file is in the page cache; after DropCache, the same touches on a
// mapping advised random map about a page each. This is what Evict does
// for the agent's executable.
func TestDropCacheSmallFaults(t *testing.T) {
	const size, step = 64 << 20, 1 << 20
	path := filepath.Join(t.TempDir(), "blob")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 1<<20)
	for i := range chunk {
		chunk[i] = byte(i*7 + 1)
	}
	for range size / len(chunk) {
		if _, err := f.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	// In the page cache, read the way exec reads a binary: in order.
	if _, err := os.ReadFile(path); err != nil {
		t.Fatal(err)
	}
	cached := touchEvery(t, path, size, step, false)
	if err := DropCache(path); err != nil {
		t.Fatal(err)
	}
	dropped := touchEvery(t, path, size, step, true)
	touches := int64(size / step)
	page := int64(os.Getpagesize()) >> 10
	t.Logf("%d touches: %d KiB resident with the file cached, %d KiB after DropCache (page %d KiB)", touches, cached, dropped, page)
	if dropped > 2*touches*page {
		t.Errorf("after DropCache %d touches left %d KiB resident, want at most %d (about a page each)", touches, dropped, 2*touches*page)
	}
	if cached < 4*dropped {
		t.Errorf("with the file cached %d touches left %d KiB resident, want at least 4× the %d KiB after DropCache (fault-around maps 64 KiB)", touches, cached, dropped)
	}
}

// touchEvery maps the file, reads a byte every step (advised random
// first if random) and returns the mapping's resident KiB.
func touchEvery(t *testing.T, path string, size, step int, random bool) int64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ, unix.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	if random {
		if err := unix.Madvise(m, unix.MADV_RANDOM); err != nil {
			t.Fatal(err)
		}
	}
	sum := 0
	for i := 0; i < size; i += step {
		sum += int(m[i])
	}
	if sum == 0 {
		t.Fatal("read only zeros")
	}
	kib, err := mappingRssKiB(uintptr(unsafe.Pointer(&m[0])))
	if err != nil {
		t.Fatal(err)
	}
	return kib
}

// mappingRssKiB is the Rss of the mapping that starts at start, from
// /proc/self/smaps.
func mappingRssKiB(start uintptr) (int64, error) {
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	header := fmt.Sprintf("%x-", start)
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, header) {
			in = true
			continue
		}
		if v, ok := strings.CutPrefix(line, "Rss:"); ok && in {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("no mapping at %#x in /proc/self/smaps", start)
}
