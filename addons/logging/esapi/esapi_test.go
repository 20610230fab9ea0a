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
	check := func(what string, code int, body []byte) {
		t.Helper()
		if code != http.StatusRequestEntityTooLarge {
			t.Fatalf("%s: status %d %s", what, code, body)
		}
		var e struct {
			Error struct {
				RootCause []struct{ Type, Reason string } `json:"root_cause"`
				Type      string
				Reason    string
			}
			Status int
		}
		if err := json.Unmarshal(body, &e); err != nil || e.Status != 413 || e.Error.Type != "content_too_long_exception" ||
			len(e.Error.RootCause) != 1 || e.Error.RootCause[0].Type != e.Error.Type ||
			e.Error.Reason != "request body is larger than the limit of [1024] bytes" {
			t.Fatalf("%s: error body %s (%v)", what, body, err)
		}
	}
	code, _, body := do(t, "POST", srv.URL+"/logs/_bulk", bytes.Repeat([]byte("a"), 2048))
	check("known length", code, body)
	// Without a length (chunked): found while reading.
	req, _ := http.NewRequest("POST", srv.URL+"/logs/_bulk", io.MultiReader(bytes.NewReader(bytes.Repeat([]byte("a"), 2048))))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	check("chunked", resp.StatusCode, body)
	// A small gzip body that inflates beyond the limit too.
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write(bytes.Repeat([]byte("a"), 1<<20))
	_ = zw.Close()
	code, _, body = do(t, "POST", srv.URL+"/logs/_bulk", gz.Bytes(), "Content-Encoding", "gzip")
	check("gzip", code, body)
	// Exactly the limit is accepted, and the buffers the refused bodies
	// were read into serve the next requests.
	line := `{"create":{"_index":"logs-a","_id":"x"}}` + "\n"
	src := `{"message":"` + strings.Repeat("m", 1024-len(line)-len(`{"message":""}`)-1) + `"}` + "\n"
	exact := []byte(line + src)
	if len(exact) != 1024 {
		t.Fatalf("body of %d bytes", len(exact))
	}
	code, _, body = do(t, "POST", srv.URL+"/logs/_bulk", exact)
	if code != 200 || !strings.Contains(string(body), `"status":201`) {
		t.Fatalf("body at the limit: %d %s", code, body)
	}
}
