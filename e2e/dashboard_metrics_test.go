package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/pki"
)

// The dashboard browser test runs without node agents (--disable-agent),
// so nothing would feed the metrics add-on. startFakeAgent serves the
// kubelet Summary API (/stats/summary) on loopback with a serving
// certificate of the cluster's CA (which the add-on's scraper trusts) and
// registers Node "fake-agent" pointing at it (unschedulable, so no pod is
// placed on a node that runs nothing). Its summary reports pod
// demo/metrics-demo (container "app": 0.25 cores as a cumulative
// counter, 64 MiB) and the volume of claim demo/data (256 MiB of
// 1 GiB), so the browser sees charts with real points and claim usage
// that went through the real scraper, collector, backend and websocket.
func startFakeAgent(t *testing.T, c *cluster, dataDir string) {
	t.Helper()
	ca, err := pki.LoadOrCreateCA(filepath.Join(dataDir, "tls"), "server-ca", "unused")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.EnsureServing(t.TempDir(), "fake-agent", []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now().Add(-time.Minute)
	mux := http.NewServeMux()
	mux.HandleFunc("/stats/summary", func(w http.ResponseWriter, r *http.Request) {
		now := time.Now()
		ts := now.UTC().Format(time.RFC3339Nano)
		el := now.Sub(start).Seconds()
		cpu := func(cores float64) map[string]any {
			return map[string]any{"time": ts, "usageNanoCores": uint64(cores * 1e9), "usageCoreNanoSeconds": uint64(cores * el * 1e9)}
		}
		sum := map[string]any{
			"node": map[string]any{"nodeName": "fake-agent", "cpu": cpu(0.5), "memory": map[string]any{"time": ts, "workingSetBytes": 512 << 20}},
			"pods": []any{map[string]any{
				"podRef":     map[string]any{"name": "metrics-demo", "namespace": "demo", "uid": "fake-uid"},
				"containers": []any{map[string]any{"name": "app", "cpu": cpu(0.25), "memory": map[string]any{"time": ts, "workingSetBytes": 64 << 20}}},
				"volume": []any{map[string]any{"name": "data", "time": ts, "usedBytes": 256 << 20, "capacityBytes": 1 << 30,
					"availableBytes": 768 << 20, "pvcRef": map[string]any{"name": "data", "namespace": "demo"}}},
			}},
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(sum)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	port := ln.Addr().(*net.TCPAddr).Port
	c.kIn(t, `apiVersion: v1
kind: Node
metadata:
  name: fake-agent
spec:
  unschedulable: true
`, "create", "-f", "-")
	c.k(t, "patch", "node", "fake-agent", "--subresource=status", "--type=merge", "-p",
		fmt.Sprintf(`{"status":{"addresses":[{"type":"InternalIP","address":"127.0.0.1"}],"daemonEndpoints":{"kubeletEndpoint":{"Port":%d}}}}`, port))
}

// createStorageObjects makes a static PersistentVolume e2e-pv and the claim
// demo/data it binds to (no class on either, so the default class's
// provisioner stays out), and pod metrics-demo that mounts the claim.
func createStorageObjects(t *testing.T, c *cluster) {
	t.Helper()
	const objects = `apiVersion: v1
kind: Namespace
metadata:
  name: demo
---
apiVersion: v1
kind: PersistentVolume
metadata:
  name: e2e-pv
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: ""
  hostPath: {path: /tmp/skiff-e2e-pv}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: data
  namespace: demo
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: ""
  resources: {requests: {storage: 1Gi}}
---
apiVersion: v1
kind: Pod
metadata:
  name: metrics-demo
  namespace: demo
spec:
  automountServiceAccountToken: false
  containers:
  - name: app
    image: busybox
    volumeMounts: [{name: data, mountPath: /data}]
  volumes:
  - name: data
    persistentVolumeClaim: {claimName: data}
`
	// The namespace's service account may still be on its way.
	eventually(t, 60*time.Second, func() string {
		if out, err := c.runIn(objects, nil, "apply", "-f", "-"); err != nil {
			return out
		}
		return ""
	})
	eventually(t, 60*time.Second, func() string {
		out, err := c.run("get", "pvc", "data", "-n", "demo", "-o", "jsonpath={.status.phase}/{.spec.volumeName}")
		if err != nil {
			return err.Error()
		}
		if out != "Bound/e2e-pv" {
			return "claim demo/data is " + out
		}
		return ""
	})
}
