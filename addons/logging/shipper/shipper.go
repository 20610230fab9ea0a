package shipper

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/skiffhq/skiff/internal/failpoint"
	"github.com/skiffhq/skiff/nodeagent/crilog"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
)

// ExcludeAnnotation on a pod set to "true" keeps its logs from being shipped.
const ExcludeAnnotation = "skiff.io/logs-exclude"

// IndexPrefix names the index (or data stream) of a namespace's logs:
// logs-kubernetes-<namespace>.
const IndexPrefix = "logs-kubernetes-"

// Config configures a Shipper.
type Config struct {
	// PodLogDir is the agent's pod log folder
	// (<ns>_<pod>_<uid>/<container>/<restart>.log).
	PodLogDir string
	// StateDir holds checkpoints.json and deadletter.log.
	StateDir string
	// NodeName is kubernetes.host.
	NodeName string
	// Pod returns the pod with this UID from the agent's cache (nil when
	// unknown; records then carry what the folder name says).
	Pod func(uid types.UID) *corev1.Pod
	// Events, if set, receives LogsDropped warnings (the agent's event
	// recorder).
	Events EventRecorder

	// URL of the Elasticsearch-compatible API (the base the client adds
	// /_bulk to).
	URL string
	// APIKey (base64 id:key) or Username/Password authenticate to the sink.
	APIKey, Username, Password string
	// CACert is a PEM bundle that verifies the sink (nil: the system's).
	CACert []byte
	// ClientCert is presented to the sink (the node's client certificate
	// for the embedded store).
	ClientCert *tls.Certificate
	// Header is added to every request (VictoriaLogs wants VL-Time-Field).
	Header http.Header
	// Setup, if set, puts an index template and ILM policy on the sink
	// before shipping (external Elasticsearch; the embedded store keeps
	// its own mapping and retention).
	Setup *Setup
	// Transport, if set, carries the requests instead of one built from
	// CACert and ClientCert (the agent passes its API client's, which
	// authenticates as the node).
	Transport http.RoundTripper

	// PollInterval is how often files are looked for and idle files
	// re-read (default 250ms).
	PollInterval time.Duration
	// FlushInterval and FlushBytes tune the _bulk requests (default
	// 250ms, 512 KiB): the sink keeps three request buffers of up to
	// FlushBytes (one filling, two sent by its workers, each with its gzip
	// copy to a remote sink). The interval is how long the last lines of a
	// burst, or a container's occasional line, wait before they are sent:
	// a quarter second keeps live tail in the log search page live, for
	// at most four small requests a second from a quiet node (Fluent Bit
	// and Vector flush every second).
	FlushInterval time.Duration
	FlushBytes    int
	// BulkWorkers is how many _bulk requests are in flight at once
	// (default 2); the sink keeps one request buffer more than that.
	BulkWorkers int
	// MaxInFlight bounds the documents read but not yet acknowledged
	// (default 20000): the shipper stops reading when it is reached.
	MaxInFlight int
	// MaxInFlightBytes bounds the bytes those documents hold: their
	// rendered bodies plus docOverhead each (default 4 MiB, at least
	// 2 × (BulkWorkers+2) × FlushBytes). The shipper stops reading when it is reached; a
	// single document larger than the bound is shipped alone. Together with
	// FlushBytes it bounds the shipper's memory, whatever the lines' size
	// and however long the sink is down or slow.
	MaxInFlightBytes int64
	// CheckpointInterval is how often acknowledged offsets are written
	// (default 1s).
	CheckpointInterval time.Duration
	// MaxAttempts is how often a document the sink rejects (4xx other than
	// 409 and 429) is sent before it is dead-lettered (default 3).
	MaxAttempts int
	// NoFinalFlush makes Run return at once when its context ends, with
	// nothing flushed and no last checkpoint, as a kill -9 would (tests).
	NoFinalFlush bool
	// Registerer receives the metrics (nil: none).
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

func (c *Config) defaults() error {
	if c.PodLogDir == "" || c.StateDir == "" || c.URL == "" {
		return errors.New("shipper: PodLogDir, StateDir and URL are required")
	}
	if c.PollInterval <= 0 {
		c.PollInterval = 250 * time.Millisecond
	}
	if c.FlushInterval <= 0 {
		c.FlushInterval = 250 * time.Millisecond
	}
	if c.FlushBytes <= 0 {
		// 512 KiB since 2026-12-04 (256 KiB before): half the requests,
		// WAL syncs and per-request work in the store. skiff-bench logs,
		// 100 B lines: median 202k lines/s in 10 runs against 171k in 5,
		// shipper RSS 24.4-25.3 MiB against 22-24; 1 MiB reached 228k
		// but 29-32 MiB, over the 30 MiB target.
		c.FlushBytes = 512 << 10
	}
	if c.BulkWorkers <= 0 {
		c.BulkWorkers = 2
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = 20000
	}
	if c.MaxInFlightBytes <= 0 {
		c.MaxInFlightBytes = 4 << 20
	}
	// The sink fills requests of FlushBytes before they are sent
	// (BulkWorkers at a time), and a document weighs up to twice its
	// share of a request (docOverhead): below that the requests would
	// only ever be sent by the FlushInterval timer.
	c.MaxInFlightBytes = max(c.MaxInFlightBytes, int64(2*(c.BulkWorkers+2))*int64(c.FlushBytes))
	if c.CheckpointInterval <= 0 {
		c.CheckpointInterval = time.Second
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 3
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return nil
}

// EventRecorder is the part of client-go's record.EventRecorder the
// shipper uses.
type EventRecorder interface {
	Eventf(object runtime.Object, eventtype, reason, messageFmt string, args ...any)
}

// Shipper tails container logs and ships them. It is a crilog.Retainer.
type Shipper struct {
	cfg      Config
	log      *slog.Logger
	m        *metrics
	sink     *sink
	inflight chan struct{}
	// bytes bounds the bytes of the documents in flight (MaxInFlightBytes).
	bytes  *budget
	cpPath string

	mu      sync.Mutex
	marks   map[string]fileMark // checkpoint as loaded, then as committed
	tailers map[string]*tailer
	dirty   bool

	// sendCtx bounds sends and retries; it ends after the last flush.
	sendCtx    context.Context
	sendCancel context.CancelFunc
	// ship sends one document (sink.send; benchmarks replace it).
	ship func(ctx context.Context, d *doc)

	// watch wakes discovery and the tailers on changes (nil: polling
	// only); set by Run.
	watch atomic.Pointer[watcher]

	// reading counts the tailers reading (not waiting at the end of
	// their file); the last to stop tells the sink (sink.idle).
	reading atomic.Int32
	dropped atomic.Int64
	// wakeReads counts the reads of a file that a write woke (tests).
	wakeReads atomic.Int64
	closing   atomic.Bool
	wg        sync.WaitGroup
}

var _ crilog.Retainer = (*Shipper)(nil)

// New prepares a shipper (nothing runs until Run).
func New(cfg Config) (*Shipper, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	dir := filepath.Join(cfg.StateDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("shipper: %w", err)
	}
	s := &Shipper{
		cfg: cfg, log: cfg.Logger.With("component", "logshipper"), m: newMetrics(cfg.Registerer),
		inflight: make(chan struct{}, cfg.MaxInFlight), bytes: newBudget(cfg.MaxInFlightBytes),
		cpPath:  filepath.Join(dir, "checkpoints.json"),
		tailers: map[string]*tailer{},
	}
	cp, err := loadCheckpoint(s.cpPath)
	if err != nil {
		// A torn checkpoint cannot happen (rename); a corrupt one means
		// re-shipping from the start, which the IDs make harmless.
		s.log.Warn("checkpoint unreadable, starting over", "err", err)
	}
	s.marks = cp.Files
	s.sendCtx, s.sendCancel = context.WithCancel(context.Background())
	s.sink, err = newSink(s)
	if err != nil {
		return nil, err
	}
	s.ship = s.sink.send
	s.m.registerBuffered(cfg.Registerer, func() float64 { used, _ := s.bytes.usage(); return float64(used) })
	return s, nil
}

// Run tails and ships until ctx ends, then writes a last checkpoint of
// what was acknowledged.
func (s *Shipper) Run(ctx context.Context) error {
	s.log.Info("log shipper running", "url", s.cfg.URL, "dir", s.cfg.PodLogDir)
	defer s.sendCancel()
	if s.cfg.Setup != nil {
		s.runSetup(ctx, s.sink.es)
	}
	var discoverNow <-chan struct{}
	if w, err := newWatcher(); err != nil {
		s.log.Warn("log files are polled", "interval", s.cfg.PollInterval, "err", err)
	} else {
		s.watch.Store(w)
		discoverNow = w.discover
		go w.run()
		defer w.close()
	}
	tick := time.NewTicker(s.cfg.PollInterval)
	defer tick.Stop()
	cpTick := time.NewTicker(s.cfg.CheckpointInterval)
	defer cpTick.Stop()
	for {
		s.discover(ctx)
		select {
		case <-ctx.Done():
			// Tailers stay registered from now on, so that documents
			// acknowledged while the indexer closes are checkpointed.
			s.closing.Store(true)
			if s.cfg.NoFinalFlush {
				return nil
			}
			s.wg.Wait()
			// A last flush, so that a clean stop re-ships nothing; what is
			// not acknowledged by then is re-shipped after the restart.
			closeCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			s.sink.close(closeCtx)
			cancel()
			s.saveCheckpoint()
			return nil
		case <-cpTick.C:
			s.saveCheckpoint()
		case <-tick.C:
		case <-discoverNow:
		}
	}
}

// Stats are counters for tests and benchmarks.
type Stats struct {
	Shipped, Duplicates, Dropped, DeadLettered, Retries int64
	// InFlightBytes and PeakInFlightBytes are what the documents read but
	// not acknowledged hold of MaxInFlightBytes, now and at most.
	InFlightBytes, PeakInFlightBytes int64
}

// release returns what an acknowledged (or given up) document held of the
// in-flight bounds.
func (s *Shipper) release(d *doc) {
	s.releaseN(d.weight, 1)
	d.weight = 0
}

// releaseN returns what n acknowledged documents held, weight bytes in
// all, at once.
func (s *Shipper) releaseN(weight int64, n int) {
	s.bytes.release(weight)
	for range n {
		<-s.inflight
	}
}

// fileID identifies one log file across renames by rotation.
type fileID struct {
	rel     string // <ns>_<pod>_<uid>/<container>
	restart string
	dev     uint64
	ino     uint64
}

func (f fileID) String() string { return fmt.Sprintf("%s/%s@%d:%d", f.rel, f.restart, f.dev, f.ino) }

// identify returns the identity of the log file at path (under root).
func identify(root, path string) (fileID, os.FileInfo, bool) {
	st, err := os.Stat(path)
	if err != nil || !st.Mode().IsRegular() {
		return fileID{}, nil, false
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}, nil, false
	}
	rel, err := filepath.Rel(root, filepath.Dir(path))
	if err != nil {
		return fileID{}, nil, false
	}
	base := filepath.Base(path)
	restart, _, _ := strings.Cut(base, ".")
	return fileID{rel: rel, restart: restart, dev: uint64(sys.Dev), ino: sys.Ino}, st, true
}

// fingerprint hashes the file's first line (at most 256 bytes); "" while
// the file has no complete first line.
func fingerprint(f *os.File) string {
	buf := make([]byte, 256)
	n, _ := f.ReadAt(buf, 0)
	i := strings.IndexByte(string(buf[:n]), '\n')
	if i < 0 {
		if n < len(buf) {
			return ""
		}
		i = n - 1
	}
	sum := sha256.Sum256(buf[:i+1])
	return hex.EncodeToString(sum[:8])
}

// isLogName is <restart>.log or a rotated <restart>.log.<time>.
func isLogName(name string) bool {
	return strings.HasSuffix(name, ".log") || crilog.IsRotatedName(name)
}

// discover starts a tailer for every log file without one and forgets
// checkpoint entries of files that are gone.
func (s *Shipper) discover(ctx context.Context) {
	if ctx.Err() != nil {
		return
	}
	seen := map[string]bool{}
	s.watchDir(s.cfg.PodLogDir)
	pods, _ := os.ReadDir(s.cfg.PodLogDir)
	for _, p := range pods {
		if !p.IsDir() {
			continue
		}
		podDir := filepath.Join(s.cfg.PodLogDir, p.Name())
		s.watchDir(podDir)
		ctrs, _ := os.ReadDir(podDir)
		for _, c := range ctrs {
			if !c.IsDir() {
				continue
			}
			dir := filepath.Join(podDir, c.Name())
			s.watchDir(dir)
			files, _ := os.ReadDir(dir)
			for _, f := range files {
				if !isLogName(f.Name()) {
					continue
				}
				path := filepath.Join(dir, f.Name())
				id, _, ok := identify(s.cfg.PodLogDir, path)
				if !ok {
					continue
				}
				key := id.String()
				seen[key] = true
				s.mu.Lock()
				// Only a tailer whose file went away (abandoned or
				// finished) can hold the identity of a new file: the
				// fingerprint is read for those alone, not for every
				// file on every poll.
				t := s.tailers[key]
				if t != nil && t.ended() {
					t = s.tailerOfLocked(key, path)
				}
				mark, known := s.marks[key]
				s.mu.Unlock()
				if t != nil {
					continue
				}
				if known && !s.sameFile(path, mark) {
					// A reused inode: another file than the one checkpointed.
					s.mu.Lock()
					delete(s.marks, key)
					s.mu.Unlock()
					known = false
				}
				if known && mark.Done {
					continue
				}
				s.startTailer(ctx, id, path)
			}
		}
	}
	s.mu.Lock()
	for k := range s.marks {
		if !seen[k] && s.tailers[k] == nil {
			delete(s.marks, k)
			s.dirty = true
		}
	}
	s.mu.Unlock()
}

// watchDir watches folder dir for new entries and writes, before it is
// listed (a no-op without a watcher or for a folder already watched).
func (s *Shipper) watchDir(dir string) {
	w := s.watcher()
	if w == nil {
		return
	}
	if err := w.watch(dir); err != nil {
		s.log.Warn("log folder is polled", "err", err)
	}
}

// watcher is Run's inotify watcher (nil: none, or Run not started).
func (s *Shipper) watcher() *watcher { return s.watch.Load() }

func (s *Shipper) saveCheckpoint() {
	s.mu.Lock()
	cp := checkpoint{Files: make(map[string]fileMark, len(s.marks))}
	for k, t := range s.tailers {
		if m, ok := t.mark(); ok {
			if old := s.marks[k]; old != m {
				s.marks[k] = m
				s.dirty = true
			}
		}
	}
	if !s.dirty {
		s.mu.Unlock()
		return
	}
	for k, m := range s.marks {
		cp.Files[k] = m
	}
	s.dirty = false
	s.mu.Unlock()
	// Lines acknowledged since the last save are not yet recorded: a crash
	// here must cost duplicates the sink refuses (same IDs), never lines.
	err := failpoint.Inject("shipper/before-checkpoint", s.cpPath)
	if err == nil {
		err = cp.save(s.cpPath)
	}
	if err != nil {
		s.log.Error("write checkpoint", "err", err)
		s.mu.Lock()
		s.dirty = true
		s.mu.Unlock()
	}
}

// Retain implements crilog.Retainer: a rotated file is kept while the
// shipper has not read and shipped all of it.
func (s *Shipper) Retain(path string) bool {
	id, st, ok := identify(s.cfg.PodLogDir, path)
	if !ok {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	key := id.String()
	if t := s.tailerOfLocked(key, path); t != nil {
		return !t.isFinished()
	}
	m, known := s.marks[key]
	if known && !s.sameFile(path, m) {
		return true // a reused inode: a new file, not read yet
	}
	return !known || (!m.Done && m.Offset < st.Size())
}

// sameFile reports whether the file at path is the one m was recorded for
// (same first line).
func (s *Shipper) sameFile(path string, m fileMark) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	return fingerprint(f) == m.FP
}

// Dropped implements crilog.Retainer: rotation removes a file the shipper
// has not finished. What was not read yet is counted and reported.
func (s *Shipper) Dropped(path string) {
	id, _, ok := identify(s.cfg.PodLogDir, path)
	if !ok {
		return
	}
	key := id.String()
	s.mu.Lock()
	t := s.tailerOfLocked(key, path)
	m, known := s.marks[key]
	s.mu.Unlock()
	var from int64
	if known && s.sameFile(path, m) {
		from = m.Offset
	}
	if t != nil {
		t.abandon() // the tailer counts what it has not read
		return
	}
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	n := countLines(f, from)
	s.reportDropped(id, n)
}

func (s *Shipper) reportDropped(id fileID, lines int64) {
	if lines <= 0 {
		return
	}
	s.m.dropped.Add(float64(lines))
	s.dropped.Add(lines)
	s.log.Warn("log lines dropped: rotation removed a file the shipper had not finished", "file", id.String(), "lines", lines)
	if s.cfg.Events == nil {
		return
	}
	ns, name, uid := splitPodDir(filepath.Dir(id.rel))
	var obj *corev1.ObjectReference
	if p := s.pod(types.UID(uid)); p != nil {
		obj = &corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: p.Namespace, Name: p.Name, UID: p.UID}
	} else {
		obj = &corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: ns, Name: name, UID: types.UID(uid)}
	}
	s.cfg.Events.Eventf(obj, corev1.EventTypeWarning, "LogsDropped",
		"%d log lines of container %s were not shipped: the sink was unreachable for too long and log rotation reached its hard limit", lines, filepath.Base(id.rel))
}

func (s *Shipper) pod(uid types.UID) *corev1.Pod {
	if s.cfg.Pod == nil || uid == "" {
		return nil
	}
	return s.cfg.Pod(uid)
}

// splitPodDir splits <ns>_<pod>_<uid> (names and UIDs have no '_').
func splitPodDir(dir string) (ns, name, uid string) {
	parts := strings.SplitN(filepath.Base(dir), "_", 3)
	if len(parts) != 3 {
		return "", filepath.Base(dir), ""
	}
	return parts[0], parts[1], parts[2]
}

// countLines counts newline-terminated lines from offset to EOF.
func countLines(f *os.File, from int64) int64 {
	buf := make([]byte, 64*1024)
	var n int64
	for off := from; ; {
		k, err := f.ReadAt(buf, off)
		for _, c := range buf[:k] {
			if c == '\n' {
				n++
			}
		}
		off += int64(k)
		if err != nil {
			return n
		}
	}
}

// tlsConfig is the sink's TLS configuration.
func (c *Config) tlsConfig() (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if len(c.CACert) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(c.CACert) {
			return nil, errors.New("shipper: CA bundle holds no certificate")
		}
		tc.RootCAs = pool
	}
	if c.ClientCert != nil {
		tc.Certificates = []tls.Certificate{*c.ClientCert}
	}
	return tc, nil
}

// resting is a tailer's stop reading (it waits at the end of its file or
// ends); when none is left reading, the sink may send what it holds.
func (s *Shipper) resting() {
	if s.reading.Add(-1) == 0 && s.sink != nil {
		s.sink.idle()
	}
}
