package atomicwriter

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// tree lists dir as a reader sees it through the visible names: path →
// contents, following symlinks, skipping the hidden ".." entries.
func tree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	var walk func(rel string)
	walk = func(rel string) {
		ents, err := os.ReadDir(filepath.Join(dir, rel))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			if rel == "" && strings.HasPrefix(e.Name(), "..") {
				continue
			}
			p := filepath.Join(rel, e.Name())
			st, err := os.Stat(filepath.Join(dir, p))
			if err != nil {
				t.Fatal(err)
			}
			if st.IsDir() {
				walk(p)
				continue
			}
			b, err := os.ReadFile(filepath.Join(dir, p))
			if err != nil {
				t.Fatal(err)
			}
			out[p] = string(b)
		}
	}
	walk("")
	return out
}

func hidden(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "..") {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out
}

func equal(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestLayout: files with their modes (defaultMode and per-item modes,
// nested paths) live in one timestamped folder that ..data points at, and
// each top-level name is a symlink through ..data.
func TestLayout(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "vol")
	err := Write(dir, map[string]File{
		"a":           {Data: []byte("alpha"), Mode: 0o644},
		"secret":      {Data: []byte("s3"), Mode: 0o400},
		"sub/dir/f":   {Data: []byte("deep"), Mode: 0o600},
		"sub/g":       {Data: []byte("g"), Mode: 0o755},
		"./cleaned/h": {Data: []byte("h"), Mode: 0o644},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := tree(t, dir)
	want := map[string]string{"a": "alpha", "secret": "s3", "sub/dir/f": "deep", "sub/g": "g", "cleaned/h": "h"}
	if !equal(got, want) {
		t.Fatalf("contents %v, want %v", got, want)
	}
	ts, err := os.Readlink(filepath.Join(dir, DataDirName))
	if err != nil || !strings.HasPrefix(ts, "..20") || strings.Contains(ts, "/") {
		t.Fatalf("..data -> %q, %v; want a relative timestamped folder", ts, err)
	}
	for _, name := range []string{"a", "secret", "sub", "cleaned"} {
		if l, err := os.Readlink(filepath.Join(dir, name)); err != nil || l != "..data/"+name {
			t.Errorf("%s -> %q, %v; want ..data/%s", name, l, err, name)
		}
	}
	for p, m := range map[string]os.FileMode{"a": 0o644, "secret": 0o400, "sub/dir/f": 0o600, "sub/g": 0o755} {
		st, err := os.Stat(filepath.Join(dir, p))
		if err != nil || st.Mode().Perm() != m {
			t.Errorf("%s mode %v, %v; want %v", p, st.Mode().Perm(), err, m)
		}
	}
	if h := hidden(t, dir); len(h) != 2 || h[0] != ts || h[1] != DataDirName {
		t.Errorf("hidden entries %v, want [%s ..data]", h, ts)
	}
}

// TestUpdate: a changed payload is a new generation (the old folder goes),
// removed keys disappear, added ones appear; an unchanged payload writes
// nothing.
func TestUpdate(t *testing.T) {
	dir := t.TempDir()
	if err := Write(dir, map[string]File{"a": {Data: []byte("1"), Mode: 0o644}, "b": {Data: []byte("1"), Mode: 0o644}, "n/x": {Data: []byte("x"), Mode: 0o644}}, nil); err != nil {
		t.Fatal(err)
	}
	gen1, _ := os.Readlink(filepath.Join(dir, DataDirName))
	if err := Write(dir, map[string]File{"a": {Data: []byte("1"), Mode: 0o644}, "b": {Data: []byte("1"), Mode: 0o644}, "n/x": {Data: []byte("x"), Mode: 0o644}}, nil); err != nil {
		t.Fatal(err)
	}
	if same, _ := os.Readlink(filepath.Join(dir, DataDirName)); same != gen1 {
		t.Fatalf("unchanged payload made a new generation %s (was %s)", same, gen1)
	}
	if err := Write(dir, map[string]File{"a": {Data: []byte("2"), Mode: 0o644}, "c": {Data: []byte("new"), Mode: 0o644}}, nil); err != nil {
		t.Fatal(err)
	}
	gen2, _ := os.Readlink(filepath.Join(dir, DataDirName))
	if gen2 == gen1 {
		t.Fatal("changed payload kept the old generation")
	}
	if got := tree(t, dir); !equal(got, map[string]string{"a": "2", "c": "new"}) {
		t.Fatalf("after update: %v", got)
	}
	for _, gone := range []string{"b", "n"} {
		if _, err := os.Lstat(filepath.Join(dir, gone)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s still there after the update (%v)", gone, err)
		}
	}
	// The previous generation stays for readers that resolved ..data to
	// it just before the swap, until the next update.
	if _, err := os.Stat(filepath.Join(dir, gen1, "b")); err != nil {
		t.Errorf("previous generation gone at once: %v", err)
	}
	// Modes are not compared (upstream): ownership management adds bits
	// to a generation without making the next sync write a new one.
	gen2, _ = os.Readlink(filepath.Join(dir, DataDirName))
	if err := os.Chmod(filepath.Join(dir, "a"), 0o664); err != nil {
		t.Fatal(err)
	}
	if err := Write(dir, map[string]File{"a": {Data: []byte("2"), Mode: 0o644}, "c": {Data: []byte("new"), Mode: 0o644}}, nil); err != nil {
		t.Fatal(err)
	}
	if same, _ := os.Readlink(filepath.Join(dir, DataDirName)); same != gen2 {
		t.Fatalf("a mode changed on disk made a new generation")
	}
	// Everything removed: an empty volume, only the bookkeeping left;
	// the update before the previous one is gone.
	if err := Write(dir, nil, nil); err != nil {
		t.Fatal(err)
	}
	if got := tree(t, dir); len(got) != 0 {
		t.Fatalf("empty payload left %v", got)
	}
	if _, err := os.Lstat(filepath.Join(dir, gen1)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("generation %s still there two updates later (%v)", gen1, err)
	}
	if h := hidden(t, dir); len(h) != 3 || !slices.Contains(h, gen2) {
		t.Fatalf("hidden entries %v, want the current and the previous (%s) generation and ..data", h, gen2)
	}
}

// TestSetPerms: the hook sees the complete new generation before it is
// visible; when it fails, the old generation stays current.
func TestSetPerms(t *testing.T) {
	dir := t.TempDir()
	if err := Write(dir, map[string]File{"k": {Data: []byte("v1"), Mode: 0o644}}, nil); err != nil {
		t.Fatal(err)
	}
	gen1, _ := os.Readlink(filepath.Join(dir, DataDirName))
	called := false
	err := Write(dir, map[string]File{"k": {Data: []byte("v2"), Mode: 0o644}}, func(gen string) error {
		called = true
		if cur, _ := os.Readlink(filepath.Join(dir, DataDirName)); cur == filepath.Base(gen) {
			t.Errorf("hook called after the swap")
		}
		if b, err := os.ReadFile(filepath.Join(gen, "k")); err != nil || string(b) != "v2" {
			t.Errorf("hook sees %q, %v", b, err)
		}
		return os.Chmod(filepath.Join(gen, "k"), 0o640)
	})
	if err != nil || !called {
		t.Fatalf("write: %v (hook called %v)", err, called)
	}
	if st, err := os.Stat(filepath.Join(dir, "k")); err != nil || st.Mode().Perm() != 0o640 {
		t.Fatalf("hook's mode not kept: %v %v", st.Mode(), err)
	}
	gen2, _ := os.Readlink(filepath.Join(dir, DataDirName))
	err = Write(dir, map[string]File{"k": {Data: []byte("v3"), Mode: 0o644}}, func(string) error { return errors.New("no") })
	if err == nil {
		t.Fatal("hook's error not returned")
	}
	if cur, _ := os.Readlink(filepath.Join(dir, DataDirName)); cur != gen2 || gen2 == gen1 {
		t.Fatalf("..data -> %s after a failed hook, want %s", cur, gen2)
	}
	if got := tree(t, dir); !equal(got, map[string]string{"k": "v2"}) {
		t.Fatalf("after a failed hook: %v", got)
	}
	// The failed generation is gone; the current and the previous stay.
	// (hidden sorts by name; a generation's name ends in a random
	// suffix, so two of the same second sort either way.)
	want := []string{gen1, gen2, DataDirName}
	sort.Strings(want)
	if h := hidden(t, dir); !slices.Equal(h, want) {
		t.Fatalf("failed write left %v, want %v", h, want)
	}
}

// TestOldLayout: plain files of a volume written before the atomic writer
// (and stray generations of a write that died) are replaced.
func TestOldLayout(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{"a": "old", "gone": "old"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "nested", "k"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "..2001_01_01_00_00_00.1", "z"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := Write(dir, map[string]File{"a": {Data: []byte("new"), Mode: 0o644}, "nested": {Data: []byte("file now"), Mode: 0o644}}, nil); err != nil {
		t.Fatal(err)
	}
	if got := tree(t, dir); !equal(got, map[string]string{"a": "new", "nested": "file now"}) {
		t.Fatalf("got %v", got)
	}
	if h := hidden(t, dir); len(h) != 2 {
		t.Fatalf("hidden entries %v, want one generation and ..data", h)
	}
}

// TestInvalidPaths: upstream's path rules; nothing is written.
func TestInvalidPaths(t *testing.T) {
	for _, p := range []string{"", "/abs", "../up", "a/../../b", "..hidden", "a/..", ".", strings.Repeat("x", 256)} {
		dir := t.TempDir()
		if err := Write(dir, map[string]File{p: {Data: []byte("x"), Mode: 0o644}}, nil); err == nil {
			t.Errorf("path %q accepted", p)
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 0 {
			t.Errorf("path %q: left %d entries", p, len(ents))
		}
	}
}

// TestNoPartialState: readers racing a writer never see a mixed or
// partial set. Every generation writes the same large value to all its
// files; a reader that opens the visible names always finds them and a
// whole value, and a reader that resolves ..data once sees one
// generation's value in every file (or an error when the generation was
// removed under it, never a mix).
func TestNoPartialState(t *testing.T) {
	dir := t.TempDir()
	keys := []string{"a", "b", "c/d", "c/e"}
	payload := func(gen int) map[string]File {
		v := bytes.Repeat([]byte(fmt.Sprintf("%08d", gen)), 8192) // 64 KiB
		out := map[string]File{}
		for _, k := range keys {
			out[k] = File{Data: v, Mode: 0o644}
		}
		return out
	}
	if err := Write(dir, payload(0), nil); err != nil {
		t.Fatal(err)
	}
	whole := func(b []byte) (string, bool) {
		if len(b) != 8*8192 {
			return "", false
		}
		g := b[:8]
		return string(g), bytes.Equal(b, bytes.Repeat(g, 8192))
	}
	var stop atomic.Bool
	var reads, snapshots atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 2 {
		wg.Add(2)
		go func() { // visible names, one file at a time
			defer wg.Done()
			for !stop.Load() {
				for _, k := range keys {
					b, err := os.ReadFile(filepath.Join(dir, k))
					if err != nil {
						errs <- fmt.Errorf("read %s: %w", k, err)
						return
					}
					if _, ok := whole(b); !ok {
						errs <- fmt.Errorf("read %s: partial value (%d bytes)", k, len(b))
						return
					}
					reads.Add(1)
				}
			}
		}()
		go func() { // one generation, all files
			defer wg.Done()
			for !stop.Load() {
				ts, err := os.Readlink(filepath.Join(dir, DataDirName))
				if err != nil {
					errs <- fmt.Errorf("readlink ..data: %w", err)
					return
				}
				seen := ""
				for _, k := range keys {
					b, err := os.ReadFile(filepath.Join(dir, ts, k))
					if errors.Is(err, fs.ErrNotExist) {
						seen = "" // generation removed meanwhile: retry
						break
					}
					if err != nil {
						errs <- err
						return
					}
					g, ok := whole(b)
					if !ok || (seen != "" && g != seen) {
						errs <- fmt.Errorf("generation %s: %s holds %q (whole %v) after %q", ts, k, g, ok, seen)
						return
					}
					seen = g
				}
				if seen != "" {
					snapshots.Add(1)
				}
			}
		}()
	}
	for gen := 1; gen <= 200; gen++ {
		if err := Write(dir, payload(gen), nil); err != nil {
			t.Fatal(err)
		}
	}
	stop.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if reads.Load() == 0 || snapshots.Load() == 0 {
		t.Fatalf("readers did not run (%d reads, %d snapshots)", reads.Load(), snapshots.Load())
	}
	if got := tree(t, dir); got["a"][:8] != "00000200" {
		t.Fatalf("final generation %q", got["a"][:8])
	}
}
