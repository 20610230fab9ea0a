package shipper

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skiffhq/skiff/nodeagent/crilog"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
)

// retainer hands rotation to whichever shipper runs (holding every file
// while none does), as the agent does across a shipper restart.
type retainer struct{ s atomic.Pointer[Shipper] }

func (r *retainer) Retain(p string) bool {
	if s := r.s.Load(); s != nil {
		return s.Retain(p)
	}
	return true
}

func (r *retainer) Dropped(p string) {
	if s := r.s.Load(); s != nil {
		s.Dropped(p)
	}
}

type running struct {
	s      *Shipper
	cancel context.CancelFunc
	done   chan struct{}
}

func (r *running) stop() {
	r.cancel()
	<-r.done
}

func startShipper(t *testing.T, cfg Config) *running {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{s: s, cancel: cancel, done: make(chan struct{})}
	go func() { defer close(r.done); _ = s.Run(ctx) }()
	t.Cleanup(r.stop)
	return r
}

func testPod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns1", Name: "web-0", UID: "uid-1",
			Labels:      map[string]string{"app": "web", "app.kubernetes.io/name": "web"},
			Annotations: map[string]string{"team": "a"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "busybox"}}},
	}
}

// line is the i-th test line: mostly plain, some JSON, some longer than
// crilog's 16 KiB record (written as P...F), some invalid UTF-8.
func line(i int) string {
	switch {
	case i%1000 == 999:
		return fmt.Sprintf("line %06d %s", i, strings.Repeat("y", 40<<10))
	case i%100 == 7:
		return fmt.Sprintf(`{"level":"info","n":%d,"msg":"line %06d"}`, i, i)
	case i%100 == 13:
		return fmt.Sprintf("line %06d \xff\xfe binary", i)
	}
	return fmt.Sprintf("line %06d", i)
}

// waitCount polls until the sink holds want lines (or fails).
func waitCount(t *testing.T, vl *victoriaLogs, filter string, want int, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	got := 0
	for time.Now().Before(deadline) {
		if got = vl.count(t, filter); got >= want {
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("sink holds %d lines matching %s, want %d", got, filter, want)
}

// TestVictoriaLogs ships a rotating container log to VictoriaLogs, stops
// the shipper halfway while the container keeps writing (rotation holds
// the files it has not finished), restarts it from its checkpoint, and
// finds every line exactly once with its metadata.
func TestVictoriaLogs(t *testing.T) {
	vl := startVictoriaLogs(t)
	root := t.TempDir()
	logDir, state := filepath.Join(root, "logs"), filepath.Join(root, "state")
	pod := testPod()
	cfg := Config{
		PodLogDir: logDir, StateDir: state, NodeName: "node-a", URL: vl.sinkURL(), Header: vl.headers(),
		Pod: func(uid types.UID) *corev1.Pod {
			if uid == pod.UID {
				return pod
			}
			return nil
		},
		PollInterval: 50 * time.Millisecond, FlushInterval: 200 * time.Millisecond,
		// As --logs-elasticsearch-setup defaults: VictoriaLogs v1.52.1
		// answers 200 {} to the policy and template and ignores them.
		Setup: &Setup{Retention: 24 * time.Hour},
	}
	ret := &retainer{}
	w, err := crilog.OpenRotating(filepath.Join(logDir, "ns1_web-0_uid-1", "app", "0.log"),
		crilog.Rotation{MaxSize: 32 << 10, MaxFiles: 2, Retainer: ret, HardMaxFiles: 1000})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	const n = 20000
	write := func(from, to int) {
		for i := from; i < to; i++ {
			s := w.Stream(crilog.Stdout)
			if i%10 == 3 {
				s = w.Stream(crilog.Stderr)
			}
			if _, err := s.Write([]byte(line(i) + "\n")); err != nil {
				t.Fatal(err)
			}
		}
	}

	r1 := startShipper(t, cfg)
	ret.s.Store(r1.s)
	write(0, n/2)
	waitCount(t, vl, "*", 2000, 60*time.Second)
	r1.stop()
	ret.s.Store(nil)
	time.Sleep(2 * time.Second)
	t.Logf("after the first shipper: stats %+v, sink holds %d", r1.s.Stats(), vl.count(t, "*"))
	write(n/2, n) // rotates many times with no shipper running
	if r, _ := crilog.RotatedFiles(filepath.Join(logDir, "ns1_web-0_uid-1", "app", "0.log")); len(r) < 5 {
		t.Fatalf("only %d rotated files: the test does not exercise rotation", len(r))
	}
	r2 := startShipper(t, cfg)
	ret.s.Store(r2.s)
	waitCount(t, vl, "*", n, 120*time.Second)
	time.Sleep(2 * time.Second) // anything beyond n would be a duplicate: let it arrive
	rows := vl.rows(t, "* | fields _msg, stream, level, kubernetes.namespace_name, kubernetes.pod_name, kubernetes.pod_id, kubernetes.container_name, kubernetes.container_image, kubernetes.host, kubernetes.labels.app.kubernetes.io/name, kubernetes.annotations.team")
	seen := make(map[string]int, n)
	for _, r := range rows {
		msg := r["_msg"]
		var i int
		if strings.HasPrefix(msg, "{") {
			fmt.Sscanf(msg[strings.Index(msg, `"n":`)+4:], "%d", &i)
			if r["level"] != "info" {
				t.Fatalf("JSON line %d: level not lifted: %v", i, r)
			}
		} else if _, err := fmt.Sscanf(msg, "line %d", &i); err != nil {
			t.Fatalf("unexpected row %v", r)
		}
		seen[fmt.Sprint(i)]++
		want := map[string]string{"kubernetes.namespace_name": "ns1", "kubernetes.pod_name": "web-0", "kubernetes.pod_id": "uid-1",
			"kubernetes.container_name": "app", "kubernetes.container_image": "busybox", "kubernetes.host": "node-a",
			"kubernetes.labels.app.kubernetes.io/name": "web", "kubernetes.annotations.team": "a"}
		for k, v := range want {
			if r[k] != v {
				t.Fatalf("row %d: %s = %q, want %q", i, k, r[k], v)
			}
		}
		if (i%10 == 3) != (r["stream"] == "stderr") {
			t.Fatalf("row %d: stream %q", i, r["stream"])
		}
		if i%1000 == 999 && len(msg) != len(line(i)) {
			t.Fatalf("long line %d was not reassembled: %d bytes", i, len(msg))
		}
		if i%100 == 13 && !strings.Contains(msg, "\uFFFD") {
			t.Fatalf("invalid UTF-8 line %d: %q", i, msg)
		}
	}
	var dups []int
	for i := 0; i < n; i++ {
		if seen[fmt.Sprint(i)] > 1 {
			dups = append(dups, i)
		}
	}
	if len(dups) > 0 {
		t.Logf("duplicates: %d, first %d last %d: %v", len(dups), dups[0], dups[len(dups)-1], dups[:min(len(dups), 200)])
	}
	for i := 0; i < n; i++ {
		if seen[fmt.Sprint(i)] != 1 {
			t.Fatalf("line %d stored %d times (of %d rows)", i, seen[fmt.Sprint(i)], len(rows))
		}
	}
	if len(rows) != n {
		t.Fatalf("%d rows, want %d", len(rows), n)
	}
	// The rotated files were kept until shipped, then released.
	w.Close()
}

// TestSinkDownHardLimit: with the sink unreachable the shipper reads
// nothing past its in-flight bound, rotation keeps its unfinished files up
// to the hard limit, and what the limit forces out is counted and
// reported as an event, never dropped silently.
func TestSinkDownHardLimit(t *testing.T) {
	root := t.TempDir()
	logDir := filepath.Join(root, "logs")
	pod := testPod()
	events := record.NewFakeRecorder(100)
	r := startShipper(t, Config{
		PodLogDir: logDir, StateDir: filepath.Join(root, "state"), NodeName: "node-a",
		URL: "http://127.0.0.1:1", // nothing listens on port 1
		Pod: func(types.UID) *corev1.Pod { return pod }, Events: events,
		PollInterval: 20 * time.Millisecond, FlushInterval: 50 * time.Millisecond, MaxInFlight: 10,
	})
	path := filepath.Join(logDir, "ns1_web-0_uid-1", "app", "0.log")
	w, err := crilog.OpenRotating(path, crilog.Rotation{MaxSize: 4 << 10, MaxFiles: 2, HardMaxFiles: 4, Retainer: r.s})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	const n = 2000
	for i := 0; i < n; i++ {
		fmt.Fprintf(w.Stream(crilog.Stdout), "line %06d\n", i)
		if i == 100 {
			// Let the shipper find the file and fill its in-flight bound.
			deadline := time.Now().Add(10 * time.Second)
			for len(r.s.inflight) < cap(r.s.inflight) && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
		}
	}
	rotated, _ := crilog.RotatedFiles(path)
	if len(rotated) != 3 {
		t.Fatalf("%d rotated files kept, want HardMaxFiles-1 = 3 (the shipper holds them)", len(rotated))
	}
	onDisk := 0
	for _, p := range append(rotated, path) {
		b, _ := os.ReadFile(p)
		onDisk += strings.Count(string(b), "\n")
	}
	// Dropped + still on disk + in flight (read before the sink was known
	// to be down, retried) covers every line: nothing is lost without
	// being counted. Tailers of removed files count asynchronously, and a
	// tailer inside the sink's send (waiting for a request buffer while its
	// workers retry the down sink with backoff) notices the removal only
	// when send returns: on a
	// loaded machine that took over 10 s once.
	var st Stats
	for deadline := time.Now().Add(45 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if st = r.s.Stats(); int(st.Dropped)+onDisk >= n-cap(r.s.inflight) {
			break
		}
	}
	if int(st.Dropped)+onDisk < n-cap(r.s.inflight) || int(st.Dropped)+onDisk > n {
		t.Fatalf("dropped %d + on disk %d: want between %d written - %d in flight and %d", st.Dropped, onDisk, n, cap(r.s.inflight), n)
	}
	if st.Shipped != 0 {
		t.Fatalf("stats %+v: shipped to a sink that is down", st)
	}
	select {
	case e := <-events.Events:
		if !strings.Contains(e, "LogsDropped") || !strings.Contains(e, "Warning") {
			t.Fatalf("event %q", e)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no LogsDropped event")
	}
}

// TestReusedInodeCountedOnItsOwn: a tailer of a removed file that has not
// stopped yet (blocked on a sink that is down) holds the identity of its
// inode; a new file that reuses the inode must still be retained, tailed
// and, when rotation removes it, counted as dropped. Before, rotation's
// Dropped went to the old tailer and the new file's lines vanished
// uncounted.
func TestReusedInodeCountedOnItsOwn(t *testing.T) {
	root := t.TempDir()
	logDir := filepath.Join(root, "logs")
	s, err := New(Config{PodLogDir: logDir, StateDir: filepath.Join(root, "state"), NodeName: "node-a", URL: "http://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(logDir, "ns1_web-0_uid-1", "app", "0.log")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for i := range 5 {
		fmt.Fprintf(&b, "2026-11-29T00:00:0%d.000000000Z stdout F line %d\n", i, i)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	id, _, ok := identify(logDir, path)
	if !ok {
		t.Fatal("identify")
	}
	key := id.String()
	stale := &tailer{s: s, id: id, key: key, slot: key, fp: "00112233deadbeef", abandoned: make(chan struct{})}
	s.tailers[key] = stale

	if !s.Retain(path) {
		t.Fatal("an unread file whose inode a stale tailer holds was not retained")
	}
	if s.tailers[key] != nil {
		t.Fatal("the stale tailer still holds the new file's identity")
	}
	if s.tailers[key+"#"+stale.fp] != stale {
		t.Fatal("the stale tailer was not kept under a slot of its own")
	}
	s.tailers[key] = stale // as if it had just been registered again
	stale.slot = key
	s.Dropped(path)
	if got := s.Stats().Dropped; got != 5 {
		t.Fatalf("dropped %d lines of the new file, want 5", got)
	}
	select {
	case <-stale.abandoned:
		t.Fatal("the new file's removal abandoned the old file's tailer")
	default:
	}
}

// TestRotatedBeforeFirstLineCounted: a tailer started on a file that had
// no complete line yet, which the writer then filled and rotated, reads
// it on under its rotated name; removed at the hard limit, its lines are
// counted as dropped. Before, the tailer quit when the file was renamed
// and rotation's Dropped, which went to it, counted nothing: a whole
// file's lines vanished (the TestSinkDownHardLimit flake under load).
func TestRotatedBeforeFirstLineCounted(t *testing.T) {
	root := t.TempDir()
	logDir := filepath.Join(root, "logs")
	// The tailer's poll never fires in the test: it wakes only when
	// abandoned, after the rotation.
	s, err := New(Config{PodLogDir: logDir, StateDir: filepath.Join(root, "state"), NodeName: "node-a", URL: "http://127.0.0.1:1", PollInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(logDir, "ns1_web-0_uid-1", "app", "0.log")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	id, _, ok := identify(logDir, path)
	if !ok {
		t.Fatal("identify")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer func() { cancel(); s.wg.Wait() }()
	s.startTailer(ctx, id, path)
	// Let the tailer find the file empty and start waiting for its first
	// line (if it has not yet, it fingerprints the full file instead and
	// the test passes without exercising the wait).
	time.Sleep(200 * time.Millisecond)

	var b strings.Builder
	for i := range 7 {
		fmt.Fprintf(&b, "2026-11-29T00:00:0%d.000000000Z stdout F line %d\n", i, i)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	rotated := path + ".20261129-000000"
	if err := os.Rename(path, rotated); err != nil {
		t.Fatal(err)
	}
	if !s.Retain(rotated) {
		t.Fatal("an unread rotated file was not retained")
	}
	s.Dropped(rotated)
	deadline := time.Now().Add(10 * time.Second)
	for s.Stats().Dropped < 7 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := s.Stats().Dropped; got != 7 {
		t.Fatalf("dropped %d lines of the rotated file, want 7", got)
	}
}
