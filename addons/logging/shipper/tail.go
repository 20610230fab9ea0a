package shipper

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"syscall"
	"time"

	"github.com/skiffhq/skiff/nodeagent/crilog"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

const (
	// maxRawLine bounds one line of a file; longer lines (not written by
	// crilog, which splits at 16 KiB) are cut into several records.
	maxRawLine = 2 << 20
	// maxMessage bounds a reassembled P...F message; beyond it the parts
	// so far are shipped as one record and the rest as the next.
	maxMessage = 4 << 20
	// readBufSize is a tailer's read buffer, held only while it reads.
	readBufSize = 64 << 10
	// keepLineCap: a line buffer grown beyond it (a long line) is let go
	// once the line is shipped rather than kept by the tailer.
	keepLineCap = 64 << 10
)

// readers are the tailers' read buffers. A tailer takes one when it starts
// reading and gives it back at the end of its file (where the buffer is
// empty), so the many idle containers of a node hold none.
var readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, readBufSize) }}

// entry is one document in flight; commitAt is the file offset that may
// be checkpointed once it and every earlier entry are acknowledged.
type entry struct {
	commitAt int64
	acked    bool
}

// tailer reads one log file (by inode, across its rotation) and ships it.
type tailer struct {
	s   *Shipper
	ctx context.Context // the shipper's Run context
	id  fileID
	key string
	// slot is the tailer's key in Shipper.tailers (guarded by Shipper.mu):
	// key, until a new file reusing the inode moves it aside
	// (tailerOfLocked).
	slot string
	fp   string
	meta *Meta
	// join joins multi-line records when the pod asks for it
	// (MultilineAnnotation); nextStart is the pattern the pod's metadata
	// asks for now, applied by refresh. Both belong to run's goroutine.
	join      joiner
	nextStart *regexp.Regexp
	badStart  string // an invalid pattern already logged
	// idPrefix is docIDPrefix(id, fp), set with fp.
	idPrefix []byte
	// body is where emit renders a document (run's goroutine only; send
	// copies it into a batch).
	body bytes.Buffer

	abandonOnce sync.Once
	abandoned   chan struct{}
	lost        int64 // lines read but not sent when abandoned

	// wake is signalled (capacity 1) when the file was written to, so a
	// tailer waiting at its end reads on at once rather than at the next
	// poll; sleepTimer is the poll, reused.
	wake       chan struct{}
	sleepTimer *time.Timer
	woken      time.Time // when a write last woke the tailer (sleep)

	mu sync.Mutex
	// pending are the entries read, in order; those before head are
	// acknowledged and gone.
	pending   []*entry
	head      int
	committed int64
	finished  bool
}

func (t *tailer) isFinished() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.finished
}

// ended reports whether the tailer's file is done with: abandoned at the
// hard limit, or read and shipped to its end.
func (t *tailer) ended() bool {
	select {
	case <-t.abandoned:
		return true
	default:
		return t.isFinished()
	}
}

func (t *tailer) abandon() { t.abandonOnce.Do(func() { close(t.abandoned) }) }

// wakeUp tells the tailer its file was written to (it never blocks).
func (t *tailer) wakeUp() {
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// mark is the tailer's checkpoint entry (false before the file had a
// first line).
func (t *tailer) mark() (fileMark, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.fp == "" {
		return fileMark{}, false
	}
	return fileMark{FP: t.fp, Offset: t.committed, Done: t.finished}, true
}

// ack marks e acknowledged and advances the committed offset over the
// acknowledged prefix.
func (t *tailer) ack(e *entry) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e.acked = true
	// The acknowledged prefix is passed over (head), not copied away at
	// each acknowledgement, which cost O(pending) per document: the
	// entries are moved only when the prefix is half the slice.
	for t.head < len(t.pending) && t.pending[t.head].acked {
		t.committed = t.pending[t.head].commitAt
		t.pending[t.head] = nil
		t.head++
	}
	switch {
	case t.head == len(t.pending):
		t.pending, t.head = t.pending[:0], 0
	case t.head >= 64 && 2*t.head >= len(t.pending):
		n := copy(t.pending, t.pending[t.head:])
		clear(t.pending[n:])
		t.pending, t.head = t.pending[:n], 0
	}
}

func (t *tailer) push(e *entry) {
	t.mu.Lock()
	t.pending = append(t.pending, e)
	t.mu.Unlock()
}

func (t *tailer) drained() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.head == len(t.pending)
}

// tailerOfLocked returns the tailer of the file at path, whose identity
// is key, or nil; s.mu is held. Inode numbers are reused: the tailer of a
// removed file that has not stopped yet (abandoned, or blocked sending to
// a sink that is down) can hold the key of a new file. It is moved aside
// to a slot of its own, so that the new file is tailed, retained and, if
// rotation removes it, counted on its own rather than through the old
// tailer (which would count nothing of it).
func (s *Shipper) tailerOfLocked(key, path string) *tailer {
	t := s.tailers[key]
	if t == nil {
		return nil
	}
	t.mu.Lock()
	fp := t.fp
	t.mu.Unlock()
	if fp == "" {
		return t
	}
	f, err := os.Open(path)
	if err != nil {
		return t
	}
	cur := fingerprint(f)
	f.Close()
	if cur == "" || cur == fp {
		return t
	}
	delete(s.tailers, key)
	t.slot = key + "#" + fp
	s.tailers[t.slot] = t
	return nil
}

func (s *Shipper) startTailer(ctx context.Context, id fileID, path string) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	// The file may have been replaced between stat and open.
	if nid, _, ok := identify(s.cfg.PodLogDir, path); !ok || nid != id {
		f.Close()
		return
	}
	t := &tailer{s: s, ctx: ctx, id: id, key: id.String(), slot: id.String(), abandoned: make(chan struct{}), wake: make(chan struct{}, 1)}
	s.mu.Lock()
	s.tailers[t.slot] = t
	s.mu.Unlock()
	s.m.files.Inc()
	w := s.watcher()
	if w != nil {
		w.wait(path, t)
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer s.m.files.Dec()
		defer f.Close()
		if w != nil {
			defer w.unwait(path, t)
		}
		t.run(ctx, f, path)
	}()
}

// partial is a line being reassembled from P records.
type partial struct {
	start int64
	time  time.Time
	msg   []byte
}

func (t *tailer) run(ctx context.Context, f *os.File, path string) {
	s := t.s
	s.reading.Add(1)
	defer s.resting()
	// Wait for a first line: it fingerprints the file. The file can be
	// rotated meanwhile: renamed, it is still this tailer's (a tailer
	// follows its inode), so it is read on; only a file that is gone
	// without ever having had a line ends the tailer. Abandoned (removed at
	// the hard limit) before its first line was seen, it is counted here.
	fp := fingerprint(f)
	for fp == "" {
		if !t.sleep(ctx) {
			t.stop(false)
			return
		}
		// gone before the fingerprint: a file that is no longer current
		// gets no more writes, so an empty fingerprint then is final.
		gone := t.gone(f, path)
		if fp = fingerprint(f); fp != "" {
			break
		}
		select {
		case <-t.abandoned:
			s.reportDropped(t.id, countLines(f, 0))
			t.stop(true)
			return
		default:
		}
		if gone {
			t.stop(false)
			return
		}
	}
	t.mu.Lock()
	t.fp = fp
	t.idPrefix = docIDPrefix(t.id, fp)
	t.mu.Unlock()
	var off int64
	s.mu.Lock()
	if m, ok := s.marks[t.key]; ok && m.FP == t.fp {
		off = m.Offset
	}
	s.mu.Unlock()
	t.mu.Lock()
	t.committed = off
	t.mu.Unlock()
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		t.stop(false)
		return
	}
	var rd *bufio.Reader
	var (
		line     []byte
		parts    = map[string]*partial{}
		rotated  bool
		lastMeta time.Time
		looked   time.Time // when rotation and truncation were last looked for
	)
	if !t.refresh(ctx, off, parts) {
		t.stop(false)
		return
	}
	for {
		select {
		case <-t.abandoned:
			n := countLines(f, off) + t.lost
			s.reportDropped(t.id, n)
			t.stop(true)
			return
		default:
		}
		if rd == nil {
			rd = readers.Get().(*bufio.Reader)
			rd.Reset(f)
		}
		chunk, err := rd.ReadSlice('\n')
		line = append(line, chunk...)
		if errors.Is(err, bufio.ErrBufferFull) && len(line) < maxRawLine {
			continue
		}
		if err == nil || errors.Is(err, bufio.ErrBufferFull) {
			start := off
			off += int64(len(line))
			if !t.handle(ctx, line, start, off, parts) {
				t.stop(false)
				return
			}
			line = line[:0]
			if cap(line) > keepLineCap {
				line = nil
			}
			if time.Since(lastMeta) > 5*time.Second {
				if !t.refresh(ctx, off, parts) {
					t.stop(false)
					return
				}
				lastMeta = time.Now()
			}
			continue
		}
		if !errors.Is(err, io.EOF) {
			t.stop(false)
			return
		}
		// At EOF the reader holds nothing: give it back while waiting.
		rd.Reset(nil)
		readers.Put(rd)
		rd = nil
		// At the end of what was written so far. A file that is no longer
		// the current one gets no more writes: once read to the end after
		// noticing that, flush its partial lines and finish.
		if rotated {
			for stream, p := range parts {
				delete(parts, stream)
				t.deliver(ctx, logLine{time: p.time, stream: stream, msg: p.msg, offset: p.start}, off, parts)
			}
			for _, r := range t.join.idle(time.Time{}) {
				t.emit(ctx, r, t.commitPoint(off, parts))
			}
			t.finish(ctx)
			return
		}
		// A joined record that got no continuation for a while is
		// complete as far as anyone can tell.
		for _, r := range t.join.idle(time.Now()) {
			if !t.emit(ctx, r, t.commitPoint(off, parts)) {
				t.stop(false)
				return
			}
		}
		// Whether the file was rotated or truncated is looked at once a
		// poll interval, not after every write the tailer is woken for.
		look := time.Since(looked) >= s.cfg.PollInterval
		if look {
			looked = time.Now()
			if t.gone(f, path) {
				rotated = true
				continue
			}
		}
		if !t.sleep(ctx) {
			t.stop(false)
			return
		}
		if !look {
			continue
		}
		// A truncated file (copytruncate) starts over.
		if st, err := f.Stat(); err == nil && st.Size() < off {
			s.log.Warn("log file truncated, reading it from the start", "file", t.key)
			off = 0
			_, _ = f.Seek(0, io.SeekStart)
			line = line[:0]
			clear(parts)
			t.join.pending = nil
		}
	}
}

// gone reports whether f is no longer the file at its original path: it
// was rotated (renamed), or removed.
func (t *tailer) gone(f *os.File, path string) bool {
	cur, err := f.Stat()
	if err != nil {
		return true
	}
	if sys, ok := cur.Sys().(*syscall.Stat_t); ok && sys.Nlink == 0 {
		return true
	}
	st, err := os.Stat(path)
	if err != nil {
		return true
	}
	// A rotated file's own path never becomes current again.
	return !os.SameFile(cur, st) || crilog.IsRotatedName(filepath.Base(path))
}

// sleep waits at the end of the file until it is written to (wake), the
// poll interval passed, or the tailer is abandoned. false: ctx ended.
func (t *tailer) sleep(ctx context.Context) bool {
	t.s.resting()
	defer t.s.reading.Add(1)
	if t.sleepTimer == nil {
		t.sleepTimer = time.NewTimer(t.s.cfg.PollInterval)
	} else {
		t.sleepTimer.Reset(t.s.cfg.PollInterval)
	}
	defer t.sleepTimer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.abandoned:
		return true
	case <-t.wake:
		// A tailer woken by a write reads at most every wakeGap: a
		// container writing line by line would otherwise cost a read (and
		// its wake-up) per line, for no gain, since the lines then wait
		// for the sink's FlushInterval anyway.
		if d := wakeGap - time.Since(t.woken); d > 0 {
			t.sleepTimer.Reset(d)
			select {
			case <-ctx.Done():
				return false
			case <-t.abandoned:
			case <-t.sleepTimer.C:
			}
		}
		t.woken = time.Now()
		t.s.wakeReads.Add(1)
		return true
	case <-t.sleepTimer.C:
		return true
	}
}

// wakeGap is the least time between two reads of a file that writes woke.
const wakeGap = 20 * time.Millisecond

// handle parses one line [start, end) and ships it (or adds it to its
// stream's partial line). false: the shipper is stopping.
func (t *tailer) handle(ctx context.Context, line []byte, start, end int64, parts map[string]*partial) bool {
	rec, err := crilog.Parse(bytes.TrimSuffix(line, []byte{'\n'}))
	if err != nil {
		// Not a CRI record (junk, or a cut overlong line): ship as is.
		return t.deliver(ctx, logLine{time: time.Now(), stream: "stdout", msg: bytes.TrimSuffix(line, []byte{'\n'}), offset: start}, end, parts)
	}
	p := parts[rec.Stream]
	if rec.Partial {
		if p == nil {
			p = &partial{start: start, time: rec.Time}
			parts[rec.Stream] = p
		}
		p.msg = append(p.msg, rec.Message...)
		if len(p.msg) < maxMessage {
			return true
		}
		delete(parts, rec.Stream)
		return t.deliver(ctx, logLine{time: p.time, stream: rec.Stream, msg: p.msg, offset: p.start}, end, parts)
	}
	ts, _, _ := bytes.Cut(line, []byte{' '}) // what rec.Time was parsed from
	r := logLine{time: rec.Time, ts: ts, stream: rec.Stream, msg: rec.Message, offset: start}
	if p != nil {
		delete(parts, rec.Stream)
		r.time, r.ts, r.offset, r.msg = p.time, nil, p.start, append(p.msg, rec.Message...)
	}
	return t.deliver(ctx, r, end, parts)
}

// deliver passes on a complete record read up to end: through the joiner
// when the pod asks for multi-line records, else straight to emit.
func (t *tailer) deliver(ctx context.Context, r logLine, end int64, parts map[string]*partial) bool {
	if t.join.start != nil {
		// The joiner keeps the record: only then is it on the heap.
		rec := new(logLine)
		*rec = r
		rec.ts = nil // points into the line buffer, which the record outlives
		if rec = t.join.add(rec, time.Now()); rec == nil {
			return true
		}
		return t.emit(ctx, rec, t.commitPoint(end, parts))
	}
	return t.emit(ctx, &r, t.commitPoint(end, parts))
}

// commitPoint is end unless another stream's partial line, or a joined
// record still open, started before it: a restart must re-read it from
// its first line.
func (t *tailer) commitPoint(end int64, parts map[string]*partial) int64 {
	for _, p := range parts {
		if p.start < end {
			end = p.start
		}
	}
	return t.join.earliest(end)
}

// refresh reads the pod's metadata again and applies a changed
// multi-line pattern: the records joined so far under the old one are
// shipped first. false: the shipper is stopping.
func (t *tailer) refresh(ctx context.Context, off int64, parts map[string]*partial) bool {
	t.refreshMeta()
	if samePattern(t.join.start, t.nextStart) {
		return true
	}
	for _, r := range t.join.idle(time.Time{}) {
		if !t.emit(ctx, r, t.commitPoint(off, parts)) {
			return false
		}
	}
	t.join.start = t.nextStart
	return true
}

// emit ships one record. Records of excluded pods are acknowledged at
// once. It renders the document (rec's bytes are the tailer's to reuse
// once it returns) and blocks while MaxInFlight documents or
// MaxInFlightBytes are unacknowledged.
func (t *tailer) emit(ctx context.Context, rec *logLine, commitAt int64) bool {
	meta := t.meta
	if meta == nil {
		e := &entry{commitAt: commitAt}
		t.push(e)
		t.ack(e)
		return true
	}
	d := newDoc(t, rec, meta, &t.body)
	d.ent.commitAt = commitAt
	defer func() {
		// A buffer grown by a long line is let go.
		if t.body.Cap() > keepLineCap {
			t.body = bytes.Buffer{}
		}
	}()
	select {
	case t.s.inflight <- struct{}{}: // the common case, without a blocking select
	default:
		select {
		case t.s.inflight <- struct{}{}:
		case <-ctx.Done():
			return false
		case <-t.abandoned:
			t.lost++ // read, never sent
			return true
		}
	}
	w, err := t.s.bytes.acquire(d.size(), ctx.Done(), t.abandoned)
	if err != nil {
		<-t.s.inflight
		if ctx.Err() != nil {
			return false
		}
		t.lost++
		return true
	}
	d.weight = w
	t.push(d.e)
	// Sends outlive the tailers' context: a clean stop lets what was read
	// reach the sink (Run cancels sendCtx after the last flush).
	t.s.ship(t.s.sendCtx, d)
	return true
}

// refreshMeta reads the pod's metadata from the agent's cache; nil meta
// means excluded.
func (t *tailer) refreshMeta() {
	podDir := filepath.Dir(t.id.rel)
	ns, name, uid := splitPodDir(podDir)
	m := &Meta{NamespaceName: ns, PodName: name, PodID: uid, ContainerName: filepath.Base(t.id.rel), Host: t.s.cfg.NodeName}
	if p := t.s.pod(types.UID(uid)); p != nil {
		if p.Annotations[ExcludeAnnotation] == "true" {
			t.meta = nil
			return
		}
		m.Labels, m.Annotations = p.Labels, p.Annotations
		m.ContainerImage = containerImage(p, m.ContainerName)
		re, err := multilineStart(p.Annotations, m.ContainerName)
		if err != nil {
			if v := p.Annotations[MultilineAnnotation]; v != t.badStart {
				t.badStart = v
				t.s.log.Warn("multi-line joining off: invalid pattern", "pod", ns+"/"+name, "container", m.ContainerName, "err", err)
			}
		}
		t.nextStart = re
	} else if t.meta != nil {
		return // keep what the pod said while it existed
	}
	t.meta = m.encoded()
}

func containerImage(p *corev1.Pod, name string) string {
	for _, st := range append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
		if st.Name == name && st.Image != "" {
			return st.Image
		}
	}
	for _, c := range append(append([]corev1.Container{}, p.Spec.InitContainers...), p.Spec.Containers...) {
		if c.Name == name {
			return c.Image
		}
	}
	return ""
}

// finish waits until everything read was acknowledged, then marks the
// file done (rotation may remove it).
func (t *tailer) finish(ctx context.Context) {
	for !t.drained() {
		select {
		case <-ctx.Done():
			t.stop(false)
			return
		case <-t.abandoned:
			t.stop(true)
			return
		case <-time.After(t.s.cfg.PollInterval):
		}
	}
	t.stop(true)
}

// stop removes the tailer; done records the file as finished.
func (t *tailer) stop(done bool) {
	s := t.s
	t.mu.Lock()
	t.finished = done
	t.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if m, ok := t.mark(); ok {
		s.marks[t.slot] = m
		s.dirty = true
	}
	// While the shipper stops, tailers stay registered, so that documents
	// acknowledged by the last flush are checkpointed.
	if t.ctx.Err() == nil && !s.closing.Load() {
		delete(s.tailers, t.slot)
	}
}
