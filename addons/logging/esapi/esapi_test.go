package esapi

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/skiffhq/skiff/addons/logging/store"
)

func newTestServer(t *testing.T, maxBody int64) *httptest.Server {
	t.Helper()
	st, err := store.Open(store.Options{Dir: t.TempDir(), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	srv := httptest.NewServer(http.StripPrefix("/logs", &Handler{Store: st, MaxBodyBytes: maxBody}))
	t.Cleanup(srv.Close)
	return srv
}

func do(t *testing.T, method, url string, body []byte, hdr ...string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

func TestRootAndBulk(t *testing.T) {
	srv := newTestServer(t, 0)
	code, hdr, body := do(t, "GET", srv.URL+"/logs/", nil)
	if code != 200 || hdr.Get("X-Elastic-Product") != "Elasticsearch" {
		t.Fatalf("root: %d %v", code, hdr)
	}
	var root struct {
		Version struct{ Number string } `json:"version"`
	}
	if err := json.Unmarshal(body, &root); err != nil || root.Version.Number != Version {
		t.Fatalf("root body %s: %v", body, err)
	}

	bulk := `{"create":{"_index":"logs-kubernetes-default","_id":"a","_type":"_doc"}}
{"@timestamp":"2026-01-01T00:00:00Z","message":"hello"}
{"create":{"_index":"logs-kubernetes-default","_id":"a"}}
{"@timestamp":"2026-01-01T00:00:00Z","message":"hello again"}
junk line
{"index":{"_index":"logs-kubernetes-default"}}
{"message":"not json
{"index":{"_index":"logs-kubernetes-default"}}
{"@timestamp":"2026-01-01T00:00:01Z","message":"third"}
`
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write([]byte(bulk))
	_ = zw.Close()
	code, _, body = do(t, "POST", srv.URL+"/logs/_bulk", gz.Bytes(), "Content-Encoding", "gzip", "Content-Type", "application/x-ndjson")
	if code != 200 {
		t.Fatalf("bulk: %d %s", code, body)
	}
	var resp struct {
		Errors bool
		Items  []map[string]struct {
			Index  string `json:"_index"`
			ID     string `json:"_id"`
			Status int
			Result string
			Error  *struct{ Type string }
		}
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		t.Fatalf("bulk body %s: %v", body, err)
	}
	want := []struct {
		action string
		status int
	}{{"create", 201}, {"create", 409}, {"index", 400}, {"index", 400}, {"index", 201}}
	if !resp.Errors || len(resp.Items) != len(want) {
		t.Fatalf("bulk response %s", body)
	}
	for i, w := range want {
		it, ok := resp.Items[i][w.action]
		if !ok || it.Status != w.status {
			t.Errorf("item %d = %+v, want %s %d (%s)", i, resp.Items[i], w.action, w.status, body)
		}
	}
	if resp.Items[1]["create"].Error.Type != "version_conflict_engine_exception" {
		t.Errorf("409 error type: %s", body)
	}

	code, _, _ = do(t, "POST", srv.URL+"/logs/_bulk", []byte(strings.Repeat("x", 10)))
	if code != 200 {
		t.Fatalf("junk-only bulk: %d", code)
	}
}

func TestBodyTooLarge(t *testing.T) {
	srv := newTestServer(t, 1024)
	code, _, body := do(t, "POST", srv.URL+"/logs/_bulk", bytes.Repeat([]byte("a"), 2048))
	if code != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d %s", code, body)
	}
	// A small gzip body that inflates beyond the limit too.
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write(bytes.Repeat([]byte("a"), 1<<20))
	_ = zw.Close()
	code, _, _ = do(t, "POST", srv.URL+"/logs/_bulk", gz.Bytes(), "Content-Encoding", "gzip")
	if code != http.StatusRequestEntityTooLarge {
		t.Fatalf("gzip status %d", code)
	}
}
