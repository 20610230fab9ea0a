package shipper

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// checkpoint is what the shipper keeps across restarts: per file, the
// offset up to which every record was acknowledged.
type checkpoint struct {
	Files map[string]fileMark `json:"files"`
}

type fileMark struct {
	// FP is the fingerprint of the file's first line (guards against a
	// reused inode).
	FP     string `json:"fp"`
	Offset int64  `json:"offset"`
	// Done marks a rotated file read to its end and fully acknowledged.
	Done bool   `json:"done,omitempty"`
	Path string `json:"path,omitempty"`
}

func loadCheckpoint(path string) (checkpoint, error) {
	cp := checkpoint{Files: map[string]fileMark{}}
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return cp, nil
	}
	if err != nil {
		return cp, fmt.Errorf("shipper: checkpoint: %w", err)
	}
	if err := json.Unmarshal(b, &cp); err != nil {
		return checkpoint{Files: map[string]fileMark{}}, fmt.Errorf("shipper: checkpoint %s: %w", path, err)
	}
	if cp.Files == nil {
		cp.Files = map[string]fileMark{}
	}
	return cp, nil
}

// save writes the checkpoint atomically: a synced temporary file renamed
// over the old one, then the folder synced.
func (cp checkpoint) save(path string) error {
	b, err := json.Marshal(cp)
	if err != nil {
		return fmt.Errorf("shipper: checkpoint: %w", err)
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("shipper: checkpoint: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("shipper: checkpoint: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("shipper: checkpoint: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("shipper: checkpoint: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("shipper: checkpoint: %w", err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
