package store

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Block files are mapped into memory read-only (mapFile) and read in place:
// the compressed columns, the token index keys and postings frames are
// slices of the mapping, so reading them costs no system call and no copy,
// and they take no room in the decode cache (which holds decoded data
// only). The page cache holds the file's pages, shared and reclaimable.
//
// A mapping lives as long as its block is referenced: the index's list of
// blocks holds one reference, every search holds one for each block of its
// snapshot (block.acquire, block.release), and the file is unmapped when
// the last is given back. So retention or an index deletion may unlink a
// block file while a search reads it (the mapping keeps the pages), and no
// slice of a mapping is ever read after munmap. Nothing that outlives a
// reference may point into the mapping: decoded data (zstd output, parsed
// ids and timestamps) is copied out, and only that goes into the decode
// cache.

// mapFile maps the whole of f (size bytes) read-only.
func mapFile(f *os.File, size int64) ([]byte, error) {
	if size <= 0 || int64(int(size)) != size {
		return nil, fmt.Errorf("map %s: bad size %d", f.Name(), size)
	}
	b, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("map %s: %w", f.Name(), err)
	}
	return b, nil
}

func unmapFile(b []byte) error {
	if err := unix.Munmap(b); err != nil {
		return fmt.Errorf("unmap: %w", err)
	}
	return nil
}
