package shipper

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/skiffhq/skiff/addons/logging/esapi"
	"github.com/skiffhq/skiff/addons/logging/store"
	"github.com/skiffhq/skiff/nodeagent/crilog"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// storeServer serves an embedded store (no fsync) under /logs, both
// closed when the test ends.
func storeServer(t *testing.T) *httptest.Server {
	t.Helper()
	st, err := store.Open(store.Options{Dir: t.TempDir(), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	srv := httptest.NewServer(http.StripPrefix("/logs", &esapi.Handler{Store: st}))
	t.Cleanup(srv.Close)
	return srv
}

// TestCompactResponsesFromTheStore: against the embedded store's _bulk
// (compact responses, no gzip on loopback), every line counts as shipped,
// and a second shipper without checkpoints counts every line again as a
// duplicate: the sink reads 201 and 409 from the compact items.
func TestCompactResponsesFromTheStore(t *testing.T) {
	srv := storeServer(t)
	const n = 3000
	logDir := t.TempDir()
	w, err := crilog.Open(filepath.Join(logDir, "ns1_web-0_uid-1", "app", "0.log"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		fmt.Fprintf(w.Stream(crilog.Stdout), "line %06d\n", i)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	pod := testPod()
	for round, want := range []func(Stats) int64{
		func(s Stats) int64 { return s.Shipped },
		func(s Stats) int64 { return s.Duplicates },
	} {
		cfg := Config{PodLogDir: logDir, StateDir: t.TempDir(), NodeName: "node-a", URL: srv.URL + "/logs",
			Pod:          func(types.UID) *corev1.Pod { return pod },
			PollInterval: 20 * time.Millisecond, FlushInterval: 50 * time.Millisecond}
		r := startShipper(t, cfg)
		deadline := time.Now().Add(60 * time.Second)
		for want(r.s.Stats()) < n && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		r.stop()
		if s := r.s.Stats(); want(s) != n || s.DeadLettered != 0 || s.Retries != 0 {
			t.Fatalf("round %d: stats %+v, want %d lines counted once", round, s, n)
		}
	}
}
