// Package memtrim hands back to the kernel the parts of the process's own
// executable that it does not use.
//
// Skiff is one executable of over 100 MB (code and read-only data of the
// API server, etcd, containerd's client, the add-ons). Every package's
// init runs at start whatever the command, and the kernel maps a window
// around each faulting page (64 KiB here), so right after start-up an
// idle process has 50-60 MiB of the executable resident although it runs
// a small fraction of it. Release marks the executable's mappings as
// randomly accessed (no read-ahead) and gives back what is resident:
// clean read-only pages are unmapped from this process (they stay in the
// page cache for whoever else maps the binary), written pages are paged
// out. Pages the process touches again come back on demand; nothing is
// lost.
//
// A page that comes back is mapped together with the rest of its page
// cache folio. The kernel reads an executable ahead in large folios (up
// to hundreds of KiB each here), so touching one page of code maps its
// whole folio again: on this machine 96 touches one MiB apart in the
// binary mapped 35 MiB, against 0.4 MiB once the file's page cache had
// been dropped and was read back one page at a time. Evict drops the
// executable's page cache that no process maps any more, so that what a
// small process (the node agent, the DNS add-on) touches after Release
// comes back a page at a time (the mappings are advised random, so
// without read-ahead): its resident code is then what it runs, for
// the price of reading those pages from disk again once.
package memtrim

import (
	"bufio"
	"context"
	"errors"
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
	// Writable mappings hold the data segment; AnonKiB counts pages of the
	// mapping that are private copies (written), which the file cannot give
	// back.
	Writable bool
	AnonKiB  int64
	RssKiB   int64 // resident pages of the mapping
}

// clean reports whether every page of r is the file's own: read-only and
// never copied on write, so dropping the pages loses nothing.
func (r Region) clean() bool { return !r.Writable && r.AnonKiB == 0 }

// executableRegions lists the mappings of the running executable in
// /proc/self/smaps.
func executableRegions() ([]Region, error) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return nil, fmt.Errorf("read /proc/self/exe: %w", err)
	}
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Region
	var cur *Region // the executable's mapping whose fields follow
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if name, v, ok := strings.Cut(line, ":"); ok && (name == "Rss" || name == "Anonymous") {
			if cur == nil {
				continue
			}
			kib, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				return nil, fmt.Errorf("smaps %q: %w", line, err)
			}
			if name == "Rss" {
				cur.RssKiB = kib
			} else {
				cur.AnonKiB = kib
			}
			continue
		}
		// A mapping's header: start-end perms offset dev inode path.
		fields := strings.Fields(line)
		if len(fields) < 5 {
			continue
		}
		lo, hi, ok := strings.Cut(fields[0], "-")
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil {
			continue // a field line such as "VmFlags: rd ex"
		}
		cur = nil
		if len(fields) < 6 || strings.Join(fields[5:], " ") != exe || end <= start {
			continue
		}
		out = append(out, Region{Start: uintptr(start), End: uintptr(end), Writable: strings.Contains(fields[1], "w")})
		cur = &out[len(out)-1]
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read /proc/self/smaps: %w", err)
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

// ReleaseAfter waits d (start-up settles) and then calls Release, and
// Evict when evict is set (processes that run a small part of the
// executable; a server, whose working set is large, keeps the page cache
// and so reads nothing back from disk). It logs what it gave back at
// debug level and returns early when ctx ends.
func ReleaseAfter(ctx context.Context, d time.Duration, log *slog.Logger, evict bool) {
	select {
	case <-ctx.Done():
		return
	case <-time.After(d):
	}
	before, _ := ResidentFileKiB()
	n, err := Release()
	if evict {
		if eerr := Evict(); eerr != nil {
			err = errors.Join(err, eerr)
		}
	}
	after, _ := ResidentFileKiB()
	log.Debug("released executable pages", "mapped_bytes", n, "evicted", evict, "rss_file_kib_before", before, "rss_file_kib_after", after, "err", err)
}
