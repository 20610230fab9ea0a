// Package atomicwriter writes the contents of API-data volumes (configMap,
// secret, projected, downwardAPI) so that a reader never sees a half
// written set, following the kubelet's atomic writer:
//
//	<dir>/..2026_11_29_12_00_00.123456789/   the current set of files
//	<dir>/..data -> ..2026_11_29_12_00_00.123456789
//	<dir>/key    -> ..data/key                (one per top-level path)
//
// An update writes a complete new timestamped folder, points a temporary
// symlink at it and renames that over ..data (one atomic step), adds the
// visible symlinks of new paths, removes those of paths that went away and
// finally removes the generations before the old one (the old one stays
// until the next update). A reader that opens <dir>/key, or that resolves
// ..data once and reads below it, sees either the whole old set or the
// whole new one.
//
// A file bind mounted on its own (a container's subPath mount) keeps the
// inode of the generation it was mounted from, so it does not see updates,
// as upstream.
package atomicwriter

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

const (
	// DataDirName is the symlink to the current generation.
	DataDirName = "..data"
	// newDataDirName is the symlink renamed over DataDirName.
	newDataDirName = "..data_tmp"
	// maxPathLength and maxFileNameLength are upstream's limits.
	maxPathLength     = 4096
	maxFileNameLength = 255
)

// File is one file of a payload: its contents and permission bits.
type File struct {
	Data []byte
	Mode os.FileMode
}

// Write makes dir hold exactly payload (relative path → file). Paths may
// be nested ("a/b/c"); they must be relative, without ".." elements and not
// start with "..". Nothing is written when the current generation already
// holds the same paths and contents (modes are not compared, as upstream:
// a volume's modes cannot change, and ownership management adds bits).
// setPerms, when set, is called on a new generation's folder before it
// becomes visible (fsGroup ownership). Write is not safe for concurrent use
// on the same dir.
func Write(dir string, payload map[string]File, setPerms func(generation string) error) error {
	clean := make(map[string]File, len(payload))
	for p, f := range payload {
		if err := validatePath(p); err != nil {
			return err
		}
		clean[filepath.Clean(p)] = f
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("atomic writer: %w", err)
	}
	oldTs, err := os.Readlink(filepath.Join(dir, DataDirName))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("atomic writer: read %s: %w", DataDirName, err)
	}
	if oldTs != "" && (strings.Contains(oldTs, "/") || !strings.HasPrefix(oldTs, "..")) {
		// Not ours: ignore what it points at, replace it below.
		oldTs = ""
	}
	if oldTs == "" || !sameContents(filepath.Join(dir, oldTs), clean) {
		newTs, err := os.MkdirTemp(dir, time.Now().UTC().Format("..2006_01_02_15_04_05."))
		if err != nil {
			return fmt.Errorf("atomic writer: %w", err)
		}
		if err := writeDir(newTs, clean); err != nil {
			_ = os.RemoveAll(newTs)
			return err
		}
		if setPerms != nil {
			if err := setPerms(newTs); err != nil {
				_ = os.RemoveAll(newTs)
				return fmt.Errorf("atomic writer: set permissions: %w", err)
			}
		}
		tmp := filepath.Join(dir, newDataDirName)
		_ = os.Remove(tmp)
		if err := os.Symlink(filepath.Base(newTs), tmp); err != nil {
			_ = os.RemoveAll(newTs)
			return fmt.Errorf("atomic writer: %w", err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, DataDirName)); err != nil {
			_ = os.Remove(tmp)
			_ = os.RemoveAll(newTs)
			return fmt.Errorf("atomic writer: swap %s: %w", DataDirName, err)
		}
	}
	if err := syncVisible(dir, clean); err != nil {
		return err
	}
	// Generations other than the current and the previous one go (older
	// ones, and any left by a write that died half way). The previous one
	// stays until the next update: a reader whose path walk resolved
	// ..data to it just before the swap (<dir>/key -> ..data/key ->
	// ..<ts>/key) still finds its file; removed at once, as upstream
	// does, such a read fails with ENOENT now and then.
	cur, err := os.Readlink(filepath.Join(dir, DataDirName))
	if err != nil {
		return fmt.Errorf("atomic writer: %w", err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("atomic writer: %w", err)
	}
	for _, e := range ents {
		n := e.Name()
		if n == cur || n == oldTs || n == DataDirName || !strings.HasPrefix(n, "..") || !e.IsDir() {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, n)); err != nil {
			return fmt.Errorf("atomic writer: remove old generation: %w", err)
		}
	}
	return nil
}

// validatePath applies upstream's rules to a payload path.
func validatePath(p string) error {
	if p == "" {
		return errors.New("atomic writer: empty path")
	}
	if len(p) > maxPathLength {
		return fmt.Errorf("atomic writer: path %q is longer than %d characters", p, maxPathLength)
	}
	if filepath.IsAbs(p) {
		return fmt.Errorf("atomic writer: path %q must be relative", p)
	}
	for _, el := range strings.Split(p, "/") {
		if len(el) > maxFileNameLength {
			return fmt.Errorf("atomic writer: path element of %q is longer than %d characters", p, maxFileNameLength)
		}
		if el == ".." {
			return fmt.Errorf("atomic writer: path %q must not contain '..'", p)
		}
	}
	if strings.HasPrefix(p, "..") {
		return fmt.Errorf("atomic writer: path %q must not start with '..'", p)
	}
	if c := filepath.Clean(p); c == "." {
		return fmt.Errorf("atomic writer: path %q names the volume itself", p)
	}
	return nil
}

// sameContents reports whether the generation in ts holds exactly
// payload's paths and contents.
func sameContents(ts string, payload map[string]File) bool {
	n := 0
	same := true
	err := filepath.WalkDir(ts, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(ts, p)
		f, ok := payload[rel]
		if !ok {
			same = false
			return filepath.SkipAll
		}
		n++
		b, err := os.ReadFile(p)
		if err != nil || !bytes.Equal(b, f.Data) {
			same = false
			return filepath.SkipAll
		}
		return nil
	})
	return err == nil && same && n == len(payload)
}

// writeDir writes payload into a new generation's folder.
func writeDir(ts string, payload map[string]File) error {
	if err := os.Chmod(ts, 0o755); err != nil {
		return fmt.Errorf("atomic writer: %w", err)
	}
	for p, f := range payload {
		full := filepath.Join(ts, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return fmt.Errorf("atomic writer: %w", err)
		}
		if err := os.WriteFile(full, f.Data, f.Mode); err != nil {
			return fmt.Errorf("atomic writer: write %s: %w", p, err)
		}
		// The umask applied to WriteFile's mode: set it exactly.
		if err := os.Chmod(full, f.Mode); err != nil {
			return fmt.Errorf("atomic writer: chmod %s: %w", p, err)
		}
	}
	return nil
}

// syncVisible makes the top-level entries of dir exactly one symlink
// "name -> ..data/name" per top-level element of payload's paths.
func syncVisible(dir string, payload map[string]File) error {
	want := map[string]bool{}
	for p := range payload {
		first, _, _ := strings.Cut(p, "/")
		want[first] = true
	}
	for name := range want {
		full := filepath.Join(dir, name)
		target := filepath.Join(DataDirName, name)
		if cur, err := os.Readlink(full); err == nil && cur == target {
			continue
		}
		// Missing, or something else (a file of an older layout): replace
		// it through a rename so the name never disappears.
		tmp := filepath.Join(dir, "..tmp_"+name)
		_ = os.Remove(tmp)
		if err := os.Symlink(target, tmp); err != nil {
			return fmt.Errorf("atomic writer: %w", err)
		}
		if err := os.Rename(tmp, full); err != nil {
			// A folder cannot be renamed over: remove it first.
			_ = os.RemoveAll(full)
			if err := os.Rename(tmp, full); err != nil {
				_ = os.Remove(tmp)
				return fmt.Errorf("atomic writer: link %s: %w", name, err)
			}
		}
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("atomic writer: %w", err)
	}
	for _, e := range ents {
		n := e.Name()
		if strings.HasPrefix(n, "..") || want[n] {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, n)); err != nil {
			return fmt.Errorf("atomic writer: remove %s: %w", n, err)
		}
	}
	return nil
}
