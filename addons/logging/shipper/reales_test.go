package shipper

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	elasticsearch "github.com/elastic/go-elasticsearch/v8"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// TestRealElasticsearch ships to a real Elasticsearch 8 when one is named
// by SKIFF_TEST_ELASTICSEARCH_URL (with SKIFF_TEST_ELASTICSEARCH_API_KEY or
// _USERNAME/_PASSWORD, and _CA_FILE): the setup creates the template and
// policy, the namespace's data stream uses them, and every line of a pod
// whose labels clash under a dynamic mapping (app and
// app.kubernetes.io/name) is indexed. None is reachable on the build
// machines, so there it is skipped.
func TestRealElasticsearch(t *testing.T) {
	url := os.Getenv("SKIFF_TEST_ELASTICSEARCH_URL")
	if url == "" {
		t.Skip("no Elasticsearch to test against: set SKIFF_TEST_ELASTICSEARCH_URL (and _API_KEY or _USERNAME/_PASSWORD, _CA_FILE) to run this test")
	}
	cfg := elasticsearch.Config{Addresses: []string{url}, APIKey: os.Getenv("SKIFF_TEST_ELASTICSEARCH_API_KEY"),
		Username: os.Getenv("SKIFF_TEST_ELASTICSEARCH_USERNAME"), Password: os.Getenv("SKIFF_TEST_ELASTICSEARCH_PASSWORD")}
	var ca []byte
	if f := os.Getenv("SKIFF_TEST_ELASTICSEARCH_CA_FILE"); f != "" {
		var err error
		if ca, err = os.ReadFile(f); err != nil {
			t.Fatal(err)
		}
		cfg.CACert = ca
	}
	es, err := elasticsearch.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ns := fmt.Sprintf("skiff-test-%d", time.Now().UnixNano())
	stream := IndexPrefix + ns
	t.Cleanup(func() { _, _ = es.Indices.DeleteDataStream([]string{stream}) })

	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web-0", UID: "uid-1",
		Labels: map[string]string{"app": "web", "app.kubernetes.io/name": "web"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "busybox"}}}}
	root := t.TempDir()
	logDir := filepath.Join(root, "logs")
	path := filepath.Join(logDir, ns+"_web-0_uid-1", "app", "0.log")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	const n = 200
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "%s stdout F %s\n", time.Now().UTC().Format(time.RFC3339Nano), line(i))
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	startShipper(t, Config{PodLogDir: logDir, StateDir: filepath.Join(root, "state"), NodeName: "node-a", URL: url,
		APIKey: cfg.APIKey, Username: cfg.Username, Password: cfg.Password, CACert: ca,
		Pod:   func(types.UID) *corev1.Pod { return pod },
		Setup: &Setup{Retention: 24 * time.Hour}})

	deadline := time.Now().Add(60 * time.Second)
	got := 0
	for time.Now().Before(deadline) {
		_, _ = es.Indices.Refresh(es.Indices.Refresh.WithIndex(stream))
		res, err := es.Count(es.Count.WithIndex(stream), es.Count.WithContext(context.Background()))
		if err == nil {
			var c struct{ Count int }
			_ = json.NewDecoder(res.Body).Decode(&c)
			res.Body.Close()
			if got = c.Count; got >= n {
				break
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	if got != n {
		t.Fatalf("%s holds %d documents, want %d", stream, got, n)
	}
	res, err := es.Indices.GetDataStream(es.Indices.GetDataStream.WithName(stream))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var ds struct {
		DataStreams []struct {
			Template  string `json:"template"`
			ILMPolicy string `json:"ilm_policy"`
		} `json:"data_streams"`
	}
	if err := json.NewDecoder(res.Body).Decode(&ds); err != nil || len(ds.DataStreams) != 1 {
		t.Fatalf("data stream %s: %v %+v", stream, err, ds)
	}
	if d := ds.DataStreams[0]; d.Template != SetupName || d.ILMPolicy != SetupName {
		t.Fatalf("data stream %s uses template %q and policy %q, want %q", stream, d.Template, d.ILMPolicy, SetupName)
	}
}
