//go:build linux

package memtrim

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Release advises random access on the executable's mappings and gives
// back their resident pages: read-only mappings that hold only the file's
// own pages are dropped from this process (MADV_DONTNEED: they come back
// from the page cache when touched, also when another process maps the
// same executable, where MADV_PAGEOUT leaves shared pages alone), and the
// rest is paged out (MADV_PAGEOUT keeps written pages). It returns the
// bytes of mappings advised.
func Release() (int64, error) {
	regions, err := executableRegions()
	if err != nil {
		return 0, err
	}
	var total int64
	var errs []error
	for _, r := range regions {
		n := r.End - r.Start
		if _, _, e := unix.Syscall(unix.SYS_MADVISE, r.Start, n, unix.MADV_RANDOM); e != 0 {
			errs = append(errs, fmt.Errorf("madvise random %#x: %w", r.Start, e))
			continue
		}
		advice := unix.MADV_PAGEOUT
		if r.clean() {
			advice = unix.MADV_DONTNEED
		}
		if _, _, e := unix.Syscall(unix.SYS_MADVISE, r.Start, n, uintptr(advice)); e != 0 {
			errs = append(errs, fmt.Errorf("madvise %d %#x: %w", advice, r.Start, e))
			continue
		}
		total += int64(n)
	}
	return total, errors.Join(errs...)
}

// Evict drops the running executable's pages from the page cache where no
// process maps them (POSIX_FADV_DONTNEED on the file; pages mapped by
// this or any other process, such as a server running the same binary,
// stay), so that the pages touched after Release are read back one at a
// time instead of in the large folios read-ahead made.
func Evict() error {
	return DropCache("/proc/self/exe")
}

// DropCache drops the page cache of the file at path that no process maps
// (POSIX_FADV_DONTNEED); dirty pages are written first.
func DropCache(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("drop cache: %w", err)
	}
	defer f.Close()
	if err := unix.Fdatasync(int(f.Fd())); err != nil {
		return fmt.Errorf("drop cache: fdatasync %s: %w", path, err)
	}
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		return fmt.Errorf("drop cache: fadvise %s: %w", path, err)
	}
	return nil
}
