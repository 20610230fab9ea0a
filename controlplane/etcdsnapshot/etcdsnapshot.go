// Package etcdsnapshot saves, lists, prunes and restores snapshots of the
// server's etcd, as k3s's etcd-snapshot: a snapshot is etcd's own backend
// image taken through the maintenance Snapshot API (with its integrity
// hash), plus an archive of the server's credentials (<data-dir>/tls and
// <data-dir>/cred: CA, service account key, encryption configuration),
// without which a restored cluster could not trust its clients nor read
// encrypted Secrets. Restore uses etcdutl's restore logic, so object
// revisions (resourceVersions) are kept.
package etcdsnapshot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Suffixes of the two files of a snapshot.
const (
	DBSuffix          = ".db"
	CredentialsSuffix = ".credentials.tar.gz"
)

// DefaultDir is where snapshots go, relative to the data directory.
const DefaultDir = "snapshots"

// Snapshot is one saved snapshot.
type Snapshot struct {
	// Name is the file name without DBSuffix.
	Name string `json:"name"`
	// Path of the etcd image.
	Path string `json:"path"`
	// Credentials is the archive's path ("" when it is missing).
	Credentials string    `json:"credentials,omitempty"`
	Size        int64     `json:"size"`
	Created     time.Time `json:"created"`
}

// Save streams a snapshot from cli into dir/<name>-<unix time>.db (0600)
// and archives dataDir's credentials beside it. prefix is the name's first
// part ("on-demand" for `skiff etcd-snapshot save`, "etcd-snapshot" for
// scheduled ones). The files appear only when complete.
func Save(ctx context.Context, cli *clientv3.Client, dataDir, dir, prefix string, now time.Time) (Snapshot, error) {
	if prefix == "" {
		prefix = "on-demand"
	}
	if strings.ContainsAny(prefix, `/\`) {
		return Snapshot{}, fmt.Errorf("snapshot name %q: must not contain a path separator", prefix)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Snapshot{}, fmt.Errorf("snapshot dir: %w", err)
	}
	name := fmt.Sprintf("%s-%d", prefix, now.Unix())
	path := filepath.Join(dir, name+DBSuffix)
	if _, err := os.Stat(path); err == nil {
		return Snapshot{}, fmt.Errorf("snapshot %s exists", path)
	}
	rc, err := cli.Snapshot(ctx)
	if err != nil {
		return Snapshot{}, fmt.Errorf("etcd snapshot: %w", err)
	}
	defer rc.Close()
	part := path + ".part"
	f, err := os.OpenFile(part, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return Snapshot{}, err
	}
	n, err := io.Copy(f, rc)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && n == 0 {
		err = errors.New("etcd sent an empty snapshot")
	}
	if err != nil {
		_ = os.Remove(part)
		return Snapshot{}, fmt.Errorf("etcd snapshot: %w", err)
	}
	creds := filepath.Join(dir, name+CredentialsSuffix)
	if err := archiveCredentials(dataDir, creds); err != nil {
		_ = os.Remove(part)
		return Snapshot{}, fmt.Errorf("archive credentials: %w", err)
	}
	if err := os.Rename(part, path); err != nil {
		_ = os.Remove(creds)
		return Snapshot{}, err
	}
	return Snapshot{Name: name, Path: path, Credentials: creds, Size: n, Created: now}, nil
}

// List returns the snapshots in dir, newest first. A missing dir is empty.
func List(dir string) ([]Snapshot, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Snapshot
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), DBSuffix) {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue
		}
		s := Snapshot{
			Name:    strings.TrimSuffix(e.Name(), DBSuffix),
			Path:    filepath.Join(dir, e.Name()),
			Size:    fi.Size(),
			Created: fi.ModTime(),
		}
		if c := filepath.Join(dir, s.Name+CredentialsSuffix); fileExists(c) {
			s.Credentials = c
		}
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b Snapshot) int {
		if c := b.Created.Compare(a.Created); c != 0 {
			return c
		}
		return strings.Compare(b.Name, a.Name)
	})
	return out, nil
}

// Prune deletes the snapshots in dir whose name starts with prefix+"-",
// keeping the keep newest. It returns the deleted ones.
func Prune(dir, prefix string, keep int) ([]Snapshot, error) {
	all, err := List(dir)
	if err != nil {
		return nil, err
	}
	var deleted []Snapshot
	kept := 0
	for _, s := range all {
		if !strings.HasPrefix(s.Name, prefix+"-") {
			continue
		}
		if kept < keep {
			kept++
			continue
		}
		if err := os.Remove(s.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return deleted, err
		}
		if s.Credentials != "" {
			_ = os.Remove(s.Credentials)
		}
		deleted = append(deleted, s)
	}
	return deleted, nil
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
