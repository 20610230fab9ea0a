package crilog

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Kubelet defaults (KubeletConfiguration containerLogMaxSize and
// containerLogMaxFiles).
const (
	DefaultMaxSize  = 10 << 20 // 10Mi
	DefaultMaxFiles = 5
)

// RotatedTimeFormat is the suffix of a rotated file, as the kubelet's
// container log manager names them: <n>.log.20060102-150405. The time is
// UTC. When a file is rotated twice in one second (the kubelet checks only
// every 10 s; Skiff rotates as it writes) the later name gets ".001",
// ".002", ... appended so that names still sort oldest first.
const RotatedTimeFormat = "20060102-150405"

// Rotation is the size-based rotation of one container's log file.
//
// When the current file reaches MaxSize it is renamed to
// <path>.<RotatedTimeFormat> and a new, empty file is opened at path; then
// the oldest rotated files are removed so that at most MaxFiles files
// (the current one included) remain. Unlike the kubelet, rotated files are
// not gzip-compressed: the log shipper reads them as they are.
type Rotation struct {
	// MaxSize in bytes rotates the file once it reaches this size
	// (0 or negative: never rotate).
	MaxSize int64
	// MaxFiles is how many files are kept, the current one included
	// (default and minimum 2 when MaxSize > 0).
	MaxFiles int
	// Retainer, if set, may keep rotated files beyond MaxFiles that a
	// reader has not finished, up to HardMaxFiles.
	Retainer Retainer
	// HardMaxFiles bounds how many files a Retainer can keep (default
	// 4 × MaxFiles). Beyond it the oldest file is removed anyway and the
	// Retainer is told first (Dropped).
	HardMaxFiles int
}

// Retainer is a reader of rotated files (the log shipper) that must finish
// them before they are removed.
type Retainer interface {
	// Retain reports whether the rotated file at path is still needed.
	Retain(path string) bool
	// Dropped is called just before a file that Retain asked to keep is
	// removed because HardMaxFiles was reached.
	Dropped(path string)
}

func (r Rotation) withDefaults() Rotation {
	if r.MaxSize <= 0 {
		return Rotation{}
	}
	if r.MaxFiles < 2 {
		r.MaxFiles = 2
	}
	if r.HardMaxFiles < r.MaxFiles {
		r.HardMaxFiles = 4 * r.MaxFiles
	}
	return r
}

// rotate renames the current file and opens a new one; w.mu is held.
func (w *Writer) rotate() error {
	now := w.now().UTC().Format(RotatedTimeFormat)
	rotated := w.path + "." + now
	// The new name must come after every rotated file there is (several
	// rotations in one second, or a clock that stepped back), in
	// RotatedFiles' order: the sequence compares as a number, so ".1000"
	// follows ".999".
	if existing, err := RotatedFiles(w.path); err == nil && len(existing) > 0 {
		if ts, seq := splitRotated(existing[len(existing)-1]); ts >= now {
			rotated = fmt.Sprintf("%s.%s.%03d", w.path, ts, seq+1)
		}
	}
	if err := os.Rename(w.path, rotated); err != nil {
		return fmt.Errorf("crilog: rotate: %w", err)
	}
	f, err := os.OpenFile(w.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		// Keep writing to the old file rather than losing output.
		_ = os.Rename(rotated, w.path)
		return fmt.Errorf("crilog: rotate: %w", err)
	}
	_ = w.f.Close()
	w.f, w.size = f, 0
	return w.removeExcess()
}

// removeExcess removes the oldest rotated files beyond MaxFiles-1, keeping
// those the Retainer still needs up to HardMaxFiles-1.
func (w *Writer) removeExcess() error {
	rotated, err := RotatedFiles(w.path)
	if err != nil {
		return err
	}
	for len(rotated) > w.rot.MaxFiles-1 {
		p := rotated[0]
		if w.rot.Retainer != nil && w.rot.Retainer.Retain(p) {
			if len(rotated) <= w.rot.HardMaxFiles-1 {
				return nil
			}
			w.rot.Retainer.Dropped(p)
		}
		if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("crilog: remove rotated log: %w", err)
		}
		rotated = rotated[1:]
	}
	return nil
}

// RotatedFiles lists the rotated files of the log at path, oldest first
// (not including path itself).
func RotatedFiles(path string) ([]string, error) {
	ents, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("crilog: %w", err)
	}
	prefix := filepath.Base(path) + "."
	var out []string
	for _, e := range ents {
		n := e.Name()
		if !e.Type().IsRegular() || !strings.HasPrefix(n, prefix) || !IsRotatedName(n) {
			continue
		}
		out = append(out, filepath.Join(filepath.Dir(path), n))
	}
	sort.Slice(out, func(i, j int) bool { return rotatedBefore(out[i], out[j]) })
	return out, nil
}

// rotatedBefore orders rotated names by time, then by sequence number
// (none first): ".999" comes before ".1000", which a string sort gets
// wrong once a second holds a thousand rotations.
func rotatedBefore(a, b string) bool {
	ta, sa := splitRotated(a)
	tb, sb := splitRotated(b)
	if ta != tb {
		return ta < tb
	}
	return sa < sb
}

// splitRotated returns the timestamp and sequence number of a rotated name.
func splitRotated(p string) (string, int) {
	i := strings.LastIndex(p, ".log.")
	ts, seq, _ := strings.Cut(p[i+len(".log."):], ".")
	n, _ := strconv.Atoi(seq)
	return ts, n
}

// IsRotatedName reports whether a file name is a rotated log
// (<anything>.log.<RotatedTimeFormat>[.NNN]).
func IsRotatedName(name string) bool {
	i := strings.LastIndex(name, ".log.")
	if i < 0 {
		return false
	}
	suffix := name[i+len(".log."):]
	ts, seq, _ := strings.Cut(suffix, ".")
	if len(ts) != len(RotatedTimeFormat) || ts[8] != '-' {
		return false
	}
	for j, c := range ts {
		if j != 8 && (c < '0' || c > '9') {
			return false
		}
	}
	for _, c := range seq {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
