// Package integration ships container logs to the embedded log store of a
// real in-process server (internal/testserver) with a node's client
// certificate, as the agent does.
package integration

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
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

// TestEmbeddedStore ships a container log to the server's /logs with the
// node's certificate; then the shipper restarts from an older checkpoint
// (what a kill -9 leaves: acknowledged lines after the last checkpoint)
// and the store answers 409 for what it has, so every line is stored once.
func TestEmbeddedStore(t *testing.T) {
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
	old, err := os.ReadFile(filepath.Join(state, "checkpoints.json"))
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
		t.Fatalf("stats %+v: the re-shipped lines were not answered 409", st)
	}
}
