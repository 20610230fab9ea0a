package localpath

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRemoveVolumeDir checks on a real directory tree that only
// <root>/<volume name> is removed, and that traversal, other paths,
// symlinks and files are refused with nothing touched.
func TestRemoveVolumeDir(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "storage")
	victim := filepath.Join(base, "victim")
	for _, d := range []string{filepath.Join(root, "pvc-ok", "sub"), victim} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(victim, "keep"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, filepath.Join(root, "pvc-link")); err != nil {
		t.Fatal(err)
	}
	// A symlink inside a volume is unlinked, not followed.
	if err := os.Symlink(victim, filepath.Join(root, "pvc-ok", "sub", "escape")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "pvc-file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, root, vol, dir, err string
	}{
		{"traversal in the name", root, "..", filepath.Join(root, ".."), "not a volume name"},
		{"slash in the name", root, "a/b", filepath.Join(root, "a/b"), "not a volume name"},
		{"traversal in the path", root, "victim", root + "/../victim", "is not the local-path directory"},
		{"other path", root, "pvc-ok", victim, "is not the local-path directory"},
		{"symlink", root, "pvc-link", filepath.Join(root, "pvc-link"), "is a symlink"},
		{"file", root, "pvc-file", filepath.Join(root, "pvc-file"), "is not a directory"},
		{"relative root", "storage", "pvc-ok", "storage/pvc-ok", "not an absolute clean path"},
		{"root /", "/", "etc", "/etc", "not an absolute clean path"},
		{"already gone", root, "pvc-gone", filepath.Join(root, "pvc-gone"), ""},
		{"volume", root, "pvc-ok", filepath.Join(root, "pvc-ok"), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := RemoveVolumeDir(tc.root, tc.vol, tc.dir)
			if tc.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				if _, err := os.Lstat(tc.dir); !os.IsNotExist(err) {
					t.Fatalf("%s still there: %v", tc.dir, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("err = %v, want %q", err, tc.err)
			}
		})
	}
	for _, p := range []string{filepath.Join(victim, "keep"), filepath.Join(root, "pvc-link"), filepath.Join(root, "pvc-file")} {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("%s removed: %v", p, err)
		}
	}
}
