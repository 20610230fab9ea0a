package store

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// WAL record types.
const (
	recDoc         = 1
	recCreateIndex = 2
	recDeleteIndex = 3
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// wal is the write-ahead log: one file per generation (wal-<gen>.log); a
// generation's records are exactly the documents of the heads sealed with
// that generation, so the file is deleted once their blocks are written.
// Appends go to a buffer; sync writes and fsyncs everything buffered, so
// concurrent bulk requests share one fsync (group commit).
type wal struct {
	dir   string
	fsync bool

	mu      sync.Mutex
	cur     *os.File
	curGen  uint64
	buf     []byte
	seq     uint64
	pending []walWrite // buffers of rotated files not yet written
	free    [][]byte   // written buffers kept for reuse (keepBuf)

	syncMu sync.Mutex
	synced uint64     // guarded by syncMu
	writes []walWrite // sync's list, reused; guarded by syncMu
	err    error      // sticky write error, guarded by syncMu
}

type walWrite struct {
	f   *os.File
	buf []byte
}

func walName(gen uint64) string { return fmt.Sprintf("wal-%016d.log", gen) }

func openWAL(dir string, gen uint64, fsync bool) (*wal, error) {
	w := &wal{dir: dir, fsync: fsync}
	f, err := os.OpenFile(filepath.Join(dir, walName(gen)), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open wal: %w", err)
	}
	w.cur, w.curGen = f, gen
	if fsync {
		if err := syncDir(dir); err != nil {
			return nil, err
		}
	}
	return w, nil
}

// recHeader is the size of a record's frame header: the payload's length
// and its CRC-32C, little endian.
const recHeader = 8

// frameRecord fills the header of rec, a record whose payload follows
// recHeader reserved bytes.
func frameRecord(rec []byte) {
	p := rec[recHeader:]
	binary.LittleEndian.PutUint32(rec[0:4], uint32(len(p)))
	binary.LittleEndian.PutUint32(rec[4:8], crc32.Checksum(p, castagnoli))
}

// appendRecords frames payloads into the buffer and returns their sequence.
func (w *wal) appendRecords(payloads ...[]byte) uint64 {
	w.mu.Lock()
	w.takeBuf()
	size := 0
	for _, p := range payloads {
		size += recHeader + len(p)
	}
	w.buf = slices.Grow(w.buf, size)
	for _, p := range payloads {
		start := len(w.buf)
		w.buf = append(w.buf, make([]byte, recHeader)...)
		w.buf = append(w.buf, p...)
		frameRecord(w.buf[start:])
	}
	w.seq++
	s := w.seq
	w.mu.Unlock()
	return s
}

// appendFramed appends records already framed (frameRecord) to the buffer
// and returns their sequence.
func (w *wal) appendFramed(recs []byte) uint64 {
	w.mu.Lock()
	w.takeBuf()
	w.buf = append(w.buf, recs...)
	w.seq++
	s := w.seq
	w.mu.Unlock()
	return s
}

// takeBuf starts an empty buffer with a written one, if one is kept
// (w.mu held).
func (w *wal) takeBuf() {
	if w.buf == nil && len(w.free) > 0 {
		w.buf = w.free[len(w.free)-1]
		w.free[len(w.free)-1] = nil
		w.free = w.free[:len(w.free)-1]
	}
}

// keepBuf keeps a written buffer for reuse (w.mu held): at most
// maxFreeBufs of them, none larger than maxFreeBuf.
func (w *wal) keepBuf(b []byte) {
	if b != nil && cap(b) <= maxFreeBuf && len(w.free) < maxFreeBufs {
		w.free = append(w.free, b[:0])
	}
}

// The WAL keeps up to maxFreeBufs written buffers (one being filled while
// another is written, and a spare) of at most maxFreeBuf bytes.
const (
	maxFreeBufs = 3
	maxFreeBuf  = 16 << 20
)

// sync makes every record up to seq durable.
func (w *wal) sync(seq uint64) error {
	w.syncMu.Lock()
	defer w.syncMu.Unlock()
	if w.err != nil {
		return w.err
	}
	if w.synced >= seq {
		w.mu.Lock()
		w.closeWritten()
		w.mu.Unlock()
		return nil
	}
	w.mu.Lock()
	writes := append(append(w.writes[:0], w.pending...), walWrite{w.cur, w.buf})
	clear(w.pending)
	w.pending = w.pending[:0]
	w.buf = nil
	top := w.seq
	w.mu.Unlock()
	for _, wr := range writes {
		if len(wr.buf) > 0 {
			if _, err := wr.f.Write(wr.buf); err != nil {
				w.err = fmt.Errorf("write wal: %w", err)
				return w.err
			}
		}
		if w.fsync {
			if err := wr.f.Sync(); err != nil {
				w.err = fmt.Errorf("sync wal: %w", err)
				return w.err
			}
		}
	}
	for _, wr := range writes[:len(writes)-1] {
		_ = wr.f.Close()
	}
	w.synced = top
	w.mu.Lock()
	for _, wr := range writes {
		w.keepBuf(wr.buf)
	}
	w.mu.Unlock()
	clear(writes)
	w.writes = writes[:0]
	return nil
}

// rotate starts generation gen; records appended so far stay with the old
// file. The caller holds the store's seal lock, so no append races it.
func (w *wal) rotate(gen uint64) error {
	f, err := os.OpenFile(filepath.Join(w.dir, walName(gen)), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open wal: %w", err)
	}
	w.mu.Lock()
	w.pending = append(w.pending, walWrite{w.cur, w.buf})
	w.buf = nil
	w.cur, w.curGen = f, gen
	w.mu.Unlock()
	return nil
}

// closeWritten closes the rotated files that have nothing left to write
// (everything up to the synced sequence is in them). The caller holds mu.
func (w *wal) closeWritten() {
	keep := w.pending[:0]
	for _, wr := range w.pending {
		if len(wr.buf) > 0 {
			keep = append(keep, wr)
			continue
		}
		_ = wr.f.Close()
	}
	clear(w.pending[len(keep):])
	w.pending = keep
}

func (w *wal) close() error {
	w.mu.Lock()
	seq := w.seq
	w.mu.Unlock()
	err := w.sync(seq)
	w.mu.Lock()
	defer w.mu.Unlock()
	// A rotation after the last sync left its old file here; after a
	// failed sync, whatever is left is closed unwritten (the error says so).
	for _, wr := range w.pending {
		_ = wr.f.Close()
	}
	w.pending = nil
	if w.cur != nil {
		if cerr := w.cur.Close(); err == nil {
			err = cerr
		}
		w.cur = nil
	}
	return err
}

// removeGen deletes the file of a generation whose blocks are durable.
func (w *wal) removeGen(gen uint64) error {
	err := os.Remove(filepath.Join(w.dir, walName(gen)))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// walGens lists the generations of WAL files in dir, oldest first.
func walGens(dir string) ([]uint64, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var gens []uint64
	for _, e := range ents {
		n := e.Name()
		if !strings.HasPrefix(n, "wal-") || !strings.HasSuffix(n, ".log") {
			continue
		}
		g, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(n, "wal-"), ".log"), 10, 64)
		if err == nil {
			gens = append(gens, g)
		}
	}
	sort.Slice(gens, func(i, j int) bool { return gens[i] < gens[j] })
	return gens, nil
}

// readWAL calls fn for each intact record of a WAL file; a torn or corrupt
// tail (a crash mid-write, never acknowledged) ends the file.
func readWAL(path string, fn func(payload []byte) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	var hdr [8]byte
	var buf []byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return nil
		}
		n := binary.LittleEndian.Uint32(hdr[0:4])
		if n > maxRecord {
			return nil
		}
		if cap(buf) < int(n) {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil
		}
		if crc32.Checksum(buf, castagnoli) != binary.LittleEndian.Uint32(hdr[4:8]) {
			return nil
		}
		if err := fn(buf); err != nil {
			return err
		}
	}
}

// maxRecord bounds one WAL record (a document plus its names).
const maxRecord = 256 << 20

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

func appendUvarint(b []byte, v uint64) []byte { return binary.AppendUvarint(b, v) }

func appendBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

func appendString(b []byte, v string) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

// readBytes reads a length-prefixed field from b.
func readBytes(b []byte) (v, rest []byte, ok bool) {
	n, k := binary.Uvarint(b)
	if k <= 0 || uint64(len(b)-k) < n {
		return nil, nil, false
	}
	return b[k : k+int(n)], b[k+int(n):], true
}
