// Package integration ships container logs to the embedded log store of a
// real in-process server (internal/testserver) with a node's client
// certificate, as the agent does.
package integration

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	elasticsearch "github.com/elastic/go-elasticsearch/v8"
	"github.com/skiffhq/skiff/addons/logging/shipper"
	"github.com/skiffhq/skiff/internal/testserver"
	"github.com/skiffhq/skiff/nodeagent/crilog"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
)

func run(t *testing.T, cfg shipper.Config) (*shipper.Shipper, func()) {
	t.Helper()
	s, err := shipper.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Run(ctx) }()
	stop := func() { cancel(); <-done }
	t.Cleanup(stop)
	return s, stop
}

func count(t *testing.T, es *elasticsearch.Client, index string) int {
	t.Helper()
	res, err := es.Count(es.Count.WithIndex(index))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var c struct{ Count int }
	if res.IsError() {
		return 0
	}
	_ = json.NewDecoder(res.Body).Decode(&c)
	return c.Count
}

// storeServer starts a server and returns node-a's client configuration
// and certificate (what the shipper sends with) and an admin client of
// the embedded store.
func storeServer(t *testing.T) (*rest.Config, tls.Certificate, *elasticsearch.Client) {
	t.Helper()
	srv := testserver.Start(t)
	node, err := srv.ComponentConfig("system:node:node-a", []string{"system:nodes"})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(node.CertFile, node.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	rt, err := rest.TransportFor(srv.Config)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := elasticsearch.NewClient(elasticsearch.Config{Addresses: []string{strings.TrimSuffix(srv.Config.Host, "/") + "/logs"}, Transport: rt})
	if err != nil {
		t.Fatal(err)
	}
	return node, cert, admin
}

// TestEmbeddedStore ships a container log to the server's /logs with the
// node's certificate; then the shipper restarts from an older checkpoint
// (what a kill -9 leaves: acknowledged lines after the last checkpoint)
// and the store answers 409 for what it has, so every line is stored once.
func TestEmbeddedStore(t *testing.T) {
	node, cert, admin := storeServer(t)

	root := t.TempDir()
	logDir, state := filepath.Join(root, "logs"), filepath.Join(root, "state")
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns1", Name: "web-0", UID: "uid-1",
		Labels: map[string]string{"app": "web", "app.kubernetes.io/name": "web"}}}
	cfg := shipper.Config{
		PodLogDir: logDir, StateDir: state, NodeName: "node-a",
		URL: strings.TrimSuffix(node.Host, "/") + "/logs", CACert: node.CAData, ClientCert: &cert,
		Pod:          func(types.UID) *corev1.Pod { return pod },
		PollInterval: 50 * time.Millisecond, FlushInterval: 200 * time.Millisecond, CheckpointInterval: 100 * time.Millisecond,
	}
	w, err := crilog.OpenRotating(filepath.Join(logDir, "ns1_web-0_uid-1", "app", "0.log"), crilog.Rotation{MaxSize: 64 << 10, MaxFiles: 20})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	const n = 10000
	for i := 0; i < n/2; i++ {
		fmt.Fprintf(w.Stream(crilog.Stdout), "line %06d\n", i)
	}
	_, stop := run(t, cfg)
	wait := func(want int) {
		t.Helper()
		deadline := time.Now().Add(90 * time.Second)
		got := 0
		for time.Now().Before(deadline) {
			if got = count(t, admin, "logs-kubernetes-ns1"); got >= want {
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
		t.Fatalf("store holds %d lines, want %d", got, want)
	}
	wait(1000)
	// A checkpoint from early on: the later acknowledgements are "lost".
	// One bulk request may already have covered every line, so the files'
	// offsets are also rewound to their starts: whatever the timing, the
	// restarted shipper sends lines the store already has.
	// The lines may be stored before the first checkpoint is written
	// (every CheckpointInterval): wait for it.
	var old []byte
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if old, err = os.ReadFile(filepath.Join(state, "checkpoints.json")); err == nil || !errors.Is(err, fs.ErrNotExist) || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	var cp struct {
		Files map[string]map[string]any `json:"files"`
	}
	if err := json.Unmarshal(old, &cp); err != nil || len(cp.Files) == 0 {
		t.Fatalf("checkpoint %s: %v", old, err)
	}
	for _, m := range cp.Files {
		m["offset"] = 0
		delete(m, "done")
	}
	if old, err = json.Marshal(cp); err != nil {
		t.Fatal(err)
	}
	wait(n / 2)
	stop()
	if err := os.WriteFile(filepath.Join(state, "checkpoints.json"), old, 0o600); err != nil {
		t.Fatal(err)
	}
	for i := n / 2; i < n; i++ {
		fmt.Fprintf(w.Stream(crilog.Stdout), "line %06d\n", i)
	}
	s2, _ := run(t, cfg)
	wait(n)
	deadline := time.Now().Add(30 * time.Second)
	for s2.Stats().Shipped+s2.Stats().Duplicates < int64(n)-1000 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if got := count(t, admin, "logs-kubernetes-ns1"); got != n {
		t.Fatalf("store holds %d lines, want exactly %d", got, n)
	}
	if st := s2.Stats(); st.Duplicates == 0 {
		dl, _ := os.ReadFile(filepath.Join(state, "deadletter.log"))
		if len(dl) > 2000 {
			dl = dl[:2000]
		}
		t.Fatalf("stats %+v: the re-shipped lines were not answered 409; DL %s", st, dl)
	}
}

// TestMultilineRecordsJoined: a pod annotated for multi-line joining gets
// a stack trace stored as one document (its frames joined with "\n",
// including a frame longer than a CRI record, which crilog splits), while
// another stream's line in between stays its own record and the last
// record is shipped once nothing follows it.
func TestMultilineRecordsJoined(t *testing.T) {
	node, cert, admin := storeServer(t)
	root := t.TempDir()
	logDir := filepath.Join(root, "logs")
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ml", Name: "java-0", UID: "uid-ml",
		Annotations: map[string]string{shipper.MultilineAnnotation: "indented"}}}
	w, err := crilog.OpenRotating(filepath.Join(logDir, "ml_java-0_uid-ml", "app", "0.log"), crilog.Rotation{MaxSize: 1 << 20, MaxFiles: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	long := "\tat " + strings.Repeat("x", 20<<10)
	trace := []string{`Exception in thread "main" java.lang.IllegalStateException: boom`, "\tat com.example.A.run(A.java:10)", long, "\tat com.example.Main.main(Main.java:3)"}
	out, errw := w.Stream(crilog.Stdout), w.Stream(crilog.Stderr)
	fmt.Fprintln(out, "request 1 ok")
	fmt.Fprintln(out, trace[0])
	fmt.Fprintln(out, trace[1])
	fmt.Fprintln(errw, "stderr between frames")
	fmt.Fprintln(out, trace[2])
	fmt.Fprintln(out, trace[3])
	fmt.Fprintln(out, "request 2 ok")

	run(t, shipper.Config{
		PodLogDir: logDir, StateDir: filepath.Join(root, "state"), NodeName: "node-a",
		URL: strings.TrimSuffix(node.Host, "/") + "/logs", CACert: node.CAData, ClientCert: &cert,
		Pod:          func(types.UID) *corev1.Pod { return pod },
		PollInterval: 50 * time.Millisecond, FlushInterval: 100 * time.Millisecond,
	})
	deadline := time.Now().Add(60 * time.Second)
	for count(t, admin, "logs-kubernetes-ml") < 4 && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(time.Second) // a fifth document would be a split record: let it arrive
	res, err := admin.Search(admin.Search.WithIndex("logs-kubernetes-ml"), admin.Search.WithSize(20),
		admin.Search.WithContext(context.Background()))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var body struct {
		Hits struct {
			Hits []struct {
				Source struct {
					Message string `json:"message"`
					Stream  string `json:"stream"`
				} `json:"_source"`
			} `json:"hits"`
		} `json:"hits"`
	}
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, h := range body.Hits.Hits {
		got[h.Source.Message] = h.Source.Stream
	}
	want := map[string]string{
		"request 1 ok":            "stdout",
		strings.Join(trace, "\n"): "stdout",
		"stderr between frames":   "stderr",
		"request 2 ok":            "stdout",
	}
	if len(got) != len(want) || len(body.Hits.Hits) != len(want) {
		short := map[string]string{}
		for m, s := range got {
			short[m[:min(len(m), 80)]] = s
		}
		t.Fatalf("stored %d documents %v, want the %d records", len(body.Hits.Hits), short, len(want))
	}
	for m, s := range want {
		if got[m] != s {
			t.Fatalf("record %.80q on %s not stored whole", m, s)
		}
	}
}
