//go:build linux

package memtrim

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// Release advises random access on the executable's mappings and pages out
// their resident pages. It returns the bytes of mappings advised.
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
		if _, _, e := unix.Syscall(unix.SYS_MADVISE, r.Start, n, unix.MADV_PAGEOUT); e != 0 {
			errs = append(errs, fmt.Errorf("madvise pageout %#x: %w", r.Start, e))
			continue
		}
		total += int64(n)
	}
	return total, errors.Join(errs...)
}
