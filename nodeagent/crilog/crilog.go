// Package crilog writes and reads container logs in the CRI format that
// kubelets keep under /var/log/pods: one record per line,
//
//	<RFC3339Nano timestamp> <stdout|stderr> <P|F> <message>
//
// where F closes a line and P is a part of a longer line (or output that
// ended without a newline). Files are rotated by size as the kubelet's
// containerLogMaxSize/containerLogMaxFiles (rotate.go). The reader serves
// what `kubectl logs` asks for: tail, since, timestamps, byte limits and
// follow (across rotations).
package crilog

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Stream names.
const (
	Stdout = "stdout"
	Stderr = "stderr"
)

// maxLine is the longest message written in one record; longer lines are
// split into P records (containerd's CRI plugin uses 16 KiB too).
const maxLine = 16 * 1024

// maxUnwritten bounds a stream's output kept while the file cannot be
// written (a full disk): past it, the stream's complete lines are dropped
// and counted (Dropped), as containerd's CRI plugin drops a line it fails
// to write, rather than growing the agent's memory with the container's
// output.
const maxUnwritten = 1 << 20

// Writer appends records of both streams of one container to one file,
// rotating it by size (see Rotation).
type Writer struct {
	mu   sync.Mutex
	path string
	// f is the current file, an *os.File (tests wrap it: file writes are
	// counted, failures injected).
	f    io.WriteCloser
	size int64 // bytes in f
	rot  Rotation
	bufs map[string]*bytes.Buffer
	open map[string]bool // streams whose last record was P
	now  func() time.Time
	// out holds the records of one Write formatted and not yet written
	// to f: they go out in one file write (see write). It is taken from
	// outPool for the Write and given back after it, so an idle container
	// keeps no write buffer.
	out []byte
	// dropped counts the bytes of output dropped (maxUnwritten).
	dropped int64
}

// outPool holds the write buffers of Writers between Writes.
var outPool = sync.Pool{New: func() any { return new([]byte) }}

// flushAt bounds out: a Write whose records format to more than this is
// written in several file writes of about this size (out never holds
// more than flushAt plus one record).
const flushAt = 64 << 10

// Open opens (creating folders) a log file for appending, without rotation.
func Open(path string) (*Writer, error) { return OpenRotating(path, Rotation{}) }

// OpenRotating opens (creating folders) a log file for appending that is
// rotated by rot.
func OpenRotating(path string, rot Rotation) (*Writer, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("crilog: %w", err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("crilog: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("crilog: %w", err)
	}
	open, err := openLines(path, st.Size())
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("crilog: %w", err)
	}
	return &Writer{path: path, f: f, size: st.Size(), rot: rot.withDefaults(), bufs: map[string]*bytes.Buffer{}, open: open, now: time.Now}, nil
}

// openLines finds the streams whose last record in the file is P: a
// previous Writer (an agent before its restart) closed in the middle of
// their lines, and the rest follows. Rotation waits for those lines too,
// so that their parts stay in one file. Only the end of the file is read:
// a stream with no record there is taken as closed.
func openLines(path string, size int64) (map[string]bool, error) {
	const window = 256 << 10
	if size == 0 {
		return map[string]bool{}, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	from := max(0, size-window)
	b := make([]byte, size-from)
	if _, err := f.ReadAt(b, from); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	if from > 0 {
		// The window starts inside a record.
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		} else {
			b = nil
		}
	}
	open := map[string]bool{}
	seen := map[string]bool{}
	for len(b) > 0 && len(seen) < 2 {
		b = bytes.TrimSuffix(b, []byte{'\n'})
		i := bytes.LastIndexByte(b, '\n')
		line := b[i+1:]
		b = b[:i+1]
		rec, err := Parse(line)
		if err != nil || seen[rec.Stream] {
			continue
		}
		seen[rec.Stream] = true
		if rec.Partial {
			open[rec.Stream] = true
		}
	}
	return open, nil
}

// Stream returns an io.Writer for one stream.
func (w *Writer) Stream(name string) io.Writer { return streamWriter{w: w, name: name} }

type streamWriter struct {
	w    *Writer
	name string
}

func (s streamWriter) Write(p []byte) (int, error) {
	return len(p), s.w.write(s.name, p)
}

// Dropped returns the bytes of container output dropped so far because
// the file could not be written.
func (w *Writer) Dropped() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.dropped
}

// discard drops the oldest lines stream kept unwritten, keeping the
// latest whole lines within maxUnwritten/2 (and an unterminated line of
// at most maxLine; a longer one is dropped too). A line begun by a P
// record that is dropped is ended by an empty F record once the file can
// be written again, so it is not joined to the lines after it.
func (w *Writer) discard(stream string, buf *bytes.Buffer) int {
	b := buf.Bytes()
	cut := max(0, len(b)-maxUnwritten/2)
	n := bytes.IndexByte(b[cut:], '\n') + cut + 1
	if n == cut {
		if n = bytes.LastIndexByte(b, '\n') + 1; len(b)-n > maxLine {
			n = len(b)
		}
	}
	if n == 0 {
		return 0
	}
	if w.open[stream] {
		// Keep the last dropped byte, as a line end.
		n--
		b[n] = '\n'
	}
	buf.Next(n)
	w.dropped += int64(n)
	return n
}

// write turns the complete lines of p (with what the stream's earlier
// writes left unterminated) into records: F for a line, P for each maxLine
// piece of a longer one. The records are formatted into w.out and written
// with one file write, not one per record: the agent gets container output
// from containerd's copy of the FIFO, in reads of up to 32 KiB that hold
// many lines when a container logs fast. Rotation still comes between
// records exactly where writing them one by one put it: when the records
// so far bring the file to the rotation condition they are written, the
// file is rotated, and the rest goes to the new one.
//
// Each record is stamped with its own w.now(), as containerd's CRI plugin
// stamps each record when it formats it (redirectLogs calls time.Now()
// per line, not once per read from the FIFO).
func (w *Writer) write(stream string, p []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return os.ErrClosed
	}
	buf := w.bufs[stream]
	if buf == nil {
		buf = &bytes.Buffer{}
		w.bufs[stream] = buf
	}
	buf.Write(p)
	err := w.format(stream, buf)
	if err != nil && buf.Len() > maxUnwritten {
		if n := w.discard(stream, buf); n > 0 {
			err = fmt.Errorf("%w (%d bytes of %s dropped, %d in all)", err, n, stream, w.dropped)
		}
	}
	return err
}

// format writes the records of buf's complete lines (see write).
func (w *Writer) format(stream string, buf *bytes.Buffer) error {
	pb := outPool.Get().(*[]byte)
	w.out = (*pb)[:0]
	defer func() {
		*pb = w.out[:0]
		w.out = nil
		if cap(*pb) <= 2*flushAt {
			outPool.Put(pb)
		}
	}()
	// Rotation waits for the lines of both streams (see rotateDue); only
	// this stream's state changes here.
	othersOpen := len(w.open) > 0 && (len(w.open) > 1 || !w.open[stream])
	var (
		in   int  // bytes of buf formatted into w.out
		open bool // this stream is inside a line after the records in w.out
	)
	for {
		b := buf.Bytes()[in:]
		i := bytes.IndexByte(b, '\n')
		switch {
		case i >= 0 && i <= maxLine:
			w.add(stream, "F", b[:i])
			in += i + 1
			open = false
		case len(b) > maxLine:
			w.add(stream, "P", b[:maxLine])
			in += maxLine
			open = true
		default:
			return w.flush(stream, buf, in, open)
		}
		switch {
		case w.rotateDue(int64(len(w.out)), open || othersOpen):
			if err := w.flush(stream, buf, in, open); err != nil {
				return err
			}
			in = 0
			if err := w.rotate(); err != nil {
				return err
			}
		case len(w.out) >= flushAt:
			if err := w.flush(stream, buf, in, open); err != nil {
				return err
			}
			in = 0
		}
	}
}

// add formats one record into w.out.
func (w *Writer) add(stream, tag string, msg []byte) {
	w.out = w.now().UTC().AppendFormat(w.out, time.RFC3339Nano)
	w.out = append(w.out, ' ')
	w.out = append(w.out, stream...)
	w.out = append(w.out, ' ')
	w.out = append(w.out, tag...)
	w.out = append(w.out, ' ')
	w.out = append(w.out, msg...)
	w.out = append(w.out, '\n')
}

// rotateDue reports whether the file, once pending bytes more are written,
// is to be rotated; open is whether a stream is then inside a line.
// Rotation comes between lines, so that a line's P records and its F stay
// in one file (readers reassemble them there), unless a partial line goes
// on for another MaxSize.
func (w *Writer) rotateDue(pending int64, open bool) bool {
	size := w.size + pending
	return w.rot.MaxSize > 0 && (size >= w.rot.MaxSize && !open || size >= 2*w.rot.MaxSize)
}

// flush writes w.out, the records of stream made of the first in bytes of
// buf (open: whether the last of them is P), and empties it. The records
// written are done: their input leaves buf and they set whether the stream
// is inside a line. If the write fails, only the records written in full
// are done; the rest of their input stays in buf and is written again by
// the stream's next Write, as when each record had its own file write.
func (w *Writer) flush(stream string, buf *bytes.Buffer, in int, open bool) error {
	if len(w.out) == 0 {
		return nil
	}
	n, err := w.f.Write(w.out)
	w.size += int64(n)
	if err != nil {
		in, open = 0, w.open[stream]
		for rest := w.out[:n]; ; {
			i := bytes.IndexByte(rest, '\n')
			if i < 0 {
				break
			}
			rec, _ := Parse(rest[:i]) // written by add: it parses
			in += len(rec.Message)
			if !rec.Partial {
				in++
			}
			open = rec.Partial
			rest = rest[i+1:]
		}
	}
	buf.Next(in)
	if open {
		w.open[stream] = true
	} else {
		delete(w.open, stream)
	}
	w.out = w.out[:0]
	return err
}

// Close writes what is left of unterminated lines as P records and closes
// the file. Safe to call twice.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return nil
	}
	for _, s := range []string{Stdout, Stderr} {
		if b := w.bufs[s]; b != nil && b.Len() > 0 {
			w.add(s, "P", b.Bytes())
			if w.flush(s, b, b.Len(), true) == nil && w.rotateDue(0, len(w.open) > 0) {
				_ = w.rotate()
			}
			b.Reset()
		}
	}
	err := w.f.Close()
	w.f = nil
	w.out = nil
	return err
}

// Record is one parsed log record.
type Record struct {
	Time    time.Time
	Stream  string
	Partial bool
	Message []byte
}

// ErrBadRecord is a line that is not a CRI record.
var ErrBadRecord = errors.New("crilog: malformed record")

// Parse parses one line (without its newline).
func Parse(line []byte) (Record, error) {
	ts, rest, ok := bytes.Cut(line, []byte{' '})
	if !ok {
		return Record{}, ErrBadRecord
	}
	t, err := time.Parse(time.RFC3339Nano, string(ts))
	if err != nil {
		return Record{}, ErrBadRecord
	}
	stream, rest, ok := bytes.Cut(rest, []byte{' '})
	if !ok {
		return Record{}, ErrBadRecord
	}
	tag, msg, ok := bytes.Cut(rest, []byte{' '})
	if !ok {
		// An empty full line is written as "... F " — tolerate a missing
		// trailing space too.
		tag, msg = rest, nil
	}
	return Record{Time: t, Stream: streamName(stream), Partial: string(tag) == "P", Message: msg}, nil
}

// streamName is the stream as a string, without allocating one for the two
// streams a runtime writes.
func streamName(b []byte) string {
	switch string(b) { // compared in place
	case "stdout":
		return "stdout"
	case "stderr":
		return "stderr"
	}
	return string(b)
}

// Options select what Read returns, as the pods/log query does.
type Options struct {
	// TailLines keeps only the last N lines (negative = all).
	TailLines int64
	// Since drops records before this time (zero = all).
	Since time.Time
	// Timestamps prefixes each line with its RFC3339Nano time.
	Timestamps bool
	// LimitBytes stops after this many bytes (0 = no limit).
	LimitBytes int64
	// Follow keeps reading until ctx ends or Done reports true once the
	// file is drained.
	Follow bool
	Done   func() bool
}

// Read writes the log at path to out as kubectl expects it.
func Read(ctx context.Context, path string, out io.Writer, opts Options) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("crilog: %w", err)
	}
	var next *os.File
	defer func() {
		f.Close()
		if next != nil {
			next.Close()
		}
	}()
	lw := &limitWriter{w: out, left: opts.LimitBytes}
	emit := func(rec Record) error {
		if !opts.Since.IsZero() && rec.Time.Before(opts.Since) {
			return nil
		}
		var b []byte
		if opts.Timestamps {
			b = rec.Time.UTC().AppendFormat(b, time.RFC3339Nano)
			b = append(b, ' ')
		}
		b = append(b, rec.Message...)
		if !rec.Partial {
			b = append(b, '\n')
		}
		_, err := lw.Write(b)
		return err
	}
	rd := bufio.NewReaderSize(f, 64*1024)
	if opts.TailLines >= 0 {
		start, err := tailOffset(f, opts.TailLines)
		if err != nil {
			return err
		}
		if _, err := f.Seek(start, io.SeekStart); err != nil {
			return fmt.Errorf("crilog: %w", err)
		}
		rd.Reset(f)
	}
	var pending []byte
	for {
		chunk, err := rd.ReadBytes('\n')
		pending = append(pending, chunk...)
		if err == nil {
			rec, perr := Parse(bytes.TrimSuffix(pending, []byte{'\n'}))
			pending = pending[:0]
			if perr == nil {
				if werr := emit(rec); werr != nil {
					if errors.Is(werr, errLimit) {
						return nil
					}
					return werr
				}
				if fl, ok := out.(interface{ Flush() }); ok && opts.Follow {
					fl.Flush()
				}
			}
			continue
		}
		if !errors.Is(err, io.EOF) {
			return fmt.Errorf("crilog: %w", err)
		}
		if !opts.Follow {
			return nil
		}
		// Rotation: once path names another file, the old one gets no more
		// writes. Drain it once more, then continue with the new file.
		if next != nil {
			f.Close()
			f, next = next, nil
			rd.Reset(f)
			continue
		}
		if nf, ok := rotatedAway(f, path); ok {
			next = nf
			continue
		}
		if opts.Done != nil && opts.Done() && len(pending) == 0 {
			// The writer is done, so everything is written, a last rotation
			// included: drain once more, and follow that rotation if it came
			// after the check above (its file holds the last lines).
			if more, _ := rd.Peek(1); len(more) > 0 {
				continue
			}
			if nf, ok := rotatedAway(f, path); ok {
				next = nf
				continue
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// rotatedAway opens the file that follows f once f is not the file at
// path any more: the next rotated file (a follower slower than several
// rotations still reads them all), else path.
func rotatedAway(f *os.File, path string) (*os.File, bool) {
	cur, err := f.Stat()
	if err != nil {
		return nil, false
	}
	// The file at path is opened before the rotated files are listed: if
	// f is still the newest rotated file in the listing, no rotation came
	// in between and the file opened is f's successor; if one did, the
	// listing shows the successor under its rotated name. (Opening path
	// after the listing skipped a file the writer rotated meanwhile.)
	pf, err := os.Open(path)
	if err != nil {
		return nil, false
	}
	if st, err := pf.Stat(); err != nil || os.SameFile(cur, st) {
		pf.Close()
		return nil, false
	}
	files, _ := RotatedFiles(path)
	for i, p := range files {
		if st, err := os.Stat(p); err == nil && os.SameFile(cur, st) {
			if i+1 < len(files) {
				if nf, err := os.Open(files[i+1]); err == nil {
					pf.Close()
					return nf, true
				}
			}
			break
		}
	}
	return pf, true
}

// tailOffset is where the last n complete records start.
func tailOffset(f *os.File, n int64) (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("crilog: %w", err)
	}
	size := st.Size()
	if n == 0 {
		return size, nil
	}
	const block = 32 * 1024
	var (
		pos   = size
		count int64
		buf   = make([]byte, block)
	)
	// A trailing newline ends the last record; it does not start one.
	for pos > 0 {
		k := int64(block)
		if pos < k {
			k = pos
		}
		pos -= k
		if _, err := f.ReadAt(buf[:k], pos); err != nil && !errors.Is(err, io.EOF) {
			return 0, fmt.Errorf("crilog: %w", err)
		}
		for i := k - 1; i >= 0; i-- {
			if buf[i] != '\n' || pos+i == size-1 {
				continue
			}
			count++
			if count == n {
				return pos + i + 1, nil
			}
		}
	}
	return 0, nil
}

var errLimit = errors.New("limit reached")

type limitWriter struct {
	w    io.Writer
	left int64 // 0 = unlimited
	used bool
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if l.left == 0 && !l.used {
		return l.w.Write(p)
	}
	l.used = true
	if l.left <= 0 {
		return 0, errLimit
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.w.Write(p)
	l.left -= int64(n)
	if err == nil && l.left <= 0 {
		return n, errLimit
	}
	return n, err
}
