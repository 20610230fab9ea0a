package etcdsnapshot

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.uber.org/zap"
)

// credentialDirs are the parts of a data directory a restored cluster
// needs besides etcd: the CA and keys (tls) and the encryption
// configuration (cred).
var credentialDirs = []string{"tls", "cred"}

// EtcdDir is the embedded etcd's data directory, relative to the data dir.
const EtcdDir = "db/etcd"

// RestoreOptions says how to restore.
type RestoreOptions struct {
	// Snapshot is the .db file.
	Snapshot string
	// Credentials is the archive to unpack into DataDir; default: the
	// snapshot's sibling <name>.credentials.tar.gz when it exists.
	Credentials string
	// DataDir is the new data directory; its db/etcd must not exist yet.
	DataDir string
	// PeerURL is the member's peer URL recorded in the restored
	// membership (default http://127.0.0.1:2380, the embedded member's).
	PeerURL string
	// RevisionBump raises etcd's revision after the restore and marks the
	// old ones compacted, so clients that watched the old cluster relist
	// instead of waiting for revisions that will never come (what the
	// Kubernetes restore guide recommends). 0 = off.
	RevisionBump uint64
	// Logger for etcd's restore (nil = silent).
	Logger *zap.Logger
}

// Restore writes a fresh embedded-etcd data directory from a snapshot
// (etcdutl's logic: hash check, new single-member membership, WAL and
// snap files) and unpacks the credentials archive, so `skiff server
// --data-dir DataDir` starts the cluster as it was at the snapshot.
func Restore(o RestoreOptions) error {
	if o.Snapshot == "" || o.DataDir == "" {
		return errors.New("a snapshot and a data directory are required")
	}
	if _, err := os.Stat(o.Snapshot); err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	etcdDir := filepath.Join(o.DataDir, EtcdDir)
	if _, err := os.Stat(etcdDir); err == nil {
		return fmt.Errorf("%s exists: restore into a fresh data directory", etcdDir)
	}
	creds := o.Credentials
	if creds == "" {
		if c := strings.TrimSuffix(o.Snapshot, DBSuffix) + CredentialsSuffix; fileExists(c) {
			creds = c
		}
	}
	if o.PeerURL == "" {
		o.PeerURL = "http://127.0.0.1:2380"
	}
	lg := o.Logger
	if lg == nil {
		lg = zap.NewNop()
	}
	if err := os.MkdirAll(filepath.Dir(etcdDir), 0o700); err != nil {
		return err
	}
	err := snapshot.NewV3(lg).Restore(snapshot.RestoreConfig{
		SnapshotPath:        o.Snapshot,
		Name:                "skiff", // storage.EmbeddedConfig's default member name
		OutputDataDir:       etcdDir,
		PeerURLs:            []string{o.PeerURL},
		InitialCluster:      "skiff=" + o.PeerURL,
		InitialClusterToken: "etcd-cluster",
		RevisionBump:        o.RevisionBump,
		MarkCompacted:       o.RevisionBump > 0,
	})
	if err != nil {
		return fmt.Errorf("restore etcd: %w", err)
	}
	if creds != "" {
		if err := unpackCredentials(creds, o.DataDir); err != nil {
			return fmt.Errorf("restore credentials: %w", err)
		}
	}
	return nil
}

// archiveCredentials writes dataDir's credential directories as a gzip'd
// tar (0600) to path.
func archiveCredentials(dataDir, path string) (err error) {
	part := path + ".part"
	f, err := os.OpenFile(part, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = os.Remove(part)
		}
	}()
	gz := gzip.NewWriter(f)
	tw := tar.NewWriter(gz)
	for _, d := range credentialDirs {
		root := filepath.Join(dataDir, d)
		werr := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
			if errors.Is(err, fs.ErrNotExist) && p == root {
				return filepath.SkipDir
			}
			if err != nil {
				return err
			}
			if !e.Type().IsRegular() || strings.HasSuffix(p, ".tmp") {
				return nil
			}
			rel, err := filepath.Rel(dataDir, p)
			if err != nil {
				return err
			}
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			fi, err := e.Info()
			if err != nil {
				return err
			}
			if err := tw.WriteHeader(&tar.Header{Name: filepath.ToSlash(rel), Mode: int64(fi.Mode().Perm()), Size: int64(len(data)), ModTime: fi.ModTime(), Typeflag: tar.TypeReg}); err != nil {
				return err
			}
			_, err = tw.Write(data)
			return err
		})
		if werr != nil {
			return werr
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := gz.Close(); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(part, path)
}

// unpackCredentials extracts an archive made by archiveCredentials into
// dataDir. Only regular files under the credential directories are
// accepted; existing files are replaced.
func unpackCredentials(path, dataDir string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		return err
	}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		name := filepath.Clean(filepath.FromSlash(h.Name))
		top, _, _ := strings.Cut(filepath.ToSlash(name), "/")
		if h.Typeflag != tar.TypeReg || !filepath.IsLocal(name) || !isCredentialDir(top) {
			return fmt.Errorf("unexpected entry %q in credentials archive", h.Name)
		}
		dst := filepath.Join(dataDir, name)
		if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
			return err
		}
		out, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, os.FileMode(h.Mode).Perm()|0o600)
		if err != nil {
			return err
		}
		_, err = io.Copy(out, io.LimitReader(tr, h.Size))
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
}

func isCredentialDir(d string) bool {
	for _, c := range credentialDirs {
		if d == c {
			return true
		}
	}
	return false
}
