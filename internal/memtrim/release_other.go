//go:build !linux

package memtrim

// Release does nothing where madvise(MADV_PAGEOUT) does not exist.
func Release() (int64, error) { return 0, nil }

// Evict does nothing where posix_fadvise is not used.
func Evict() error { return nil }

// DropCache does nothing where posix_fadvise is not used.
func DropCache(path string) error { return nil }
