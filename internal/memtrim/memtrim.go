// Package memtrim hands back to the kernel the parts of the process's own
// executable that it does not use.
//
// Skiff is one ~80 MB executable (code and read-only data of the API
// server, etcd, containerd's client, the add-ons). Recent kernels read it
// into the page cache in large folios and map whole folios, so right after
// start-up almost all of it counts as resident although an idle server runs
// a small fraction. Release marks the executable's mappings as randomly
// accessed (no read-ahead, so later faults bring in single pages) and pages
// out what is resident; pages the process touches again come back on
// demand. Only clean, file-backed pages are affected: nothing is lost, the
// cost is a disk read the first time a cold code path runs.
package memtrim

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"
)

// Region is one mapping of the executable.
type Region struct {
	Start, End uintptr
}

// executableRegions lists the mappings of the running executable in
// /proc/self/maps.
func executableRegions() ([]Region, error) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return nil, fmt.Errorf("read /proc/self/exe: %w", err)
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Region
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// start-end perms offset dev inode path
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || strings.Join(fields[5:], " ") != exe {
			continue
		}
		lo, hi, ok := strings.Cut(fields[0], "-")
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			continue
		}
		out = append(out, Region{Start: uintptr(start), End: uintptr(end)})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read /proc/self/maps: %w", err)
	}
	return out, nil
}

// ResidentFileKiB is the process's file-backed resident memory (RssFile in
// /proc/self/status).
func ResidentFileKiB() (int64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "RssFile:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("no RssFile in /proc/self/status")
}

// ReleaseAfter waits d (start-up settles) and then calls Release, logging
// what it gave back at debug level. It returns early when ctx ends.
func ReleaseAfter(ctx context.Context, d time.Duration, log *slog.Logger) {
	select {
	case <-ctx.Done():
		return
	case <-time.After(d):
	}
	before, _ := ResidentFileKiB()
	n, err := Release()
	after, _ := ResidentFileKiB()
	log.Debug("released executable pages", "mapped_bytes", n, "rss_file_kib_before", before, "rss_file_kib_after", after, "err", err)
}
