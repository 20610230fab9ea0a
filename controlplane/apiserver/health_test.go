package apiserver_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/skiffhq/skiff/internal/testserver"
)

// The root health paths are public and name their checks with ?verbose;
// a single check is an authorized non-resource URL, as upstream's.
func TestHealthChecks(t *testing.T) {
	s := testserver.Start(t)
	anon := &http.Client{Transport: &http.Transport{TLSClientConfig: mustTLS(t, s)}}
	get := func(path string) (int, string) {
		resp, err := anon.Get(s.Config.Host + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, p := range []string{"/healthz", "/livez", "/readyz"} {
		if code, body := get(p); code != 200 || body != "ok" {
			t.Errorf("anonymous %s = %d %q, want 200 ok", p, code, body)
		}
	}
	code, body := get("/readyz?verbose")
	for _, want := range []string{"[+]ping ok", "[+]etcd ok", "[+]informer-sync ok", "[+]poststarthook/skiff-bootstrap ok", "readyz check passed"} {
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("/readyz?verbose = %d %q, want a line %q", code, body, want)
		}
	}
	if code, body := get("/livez?verbose&exclude=etcd"); code != 200 || !strings.Contains(body, "[+]etcd excluded: ok") || !strings.Contains(body, "livez check passed") {
		t.Errorf("/livez?verbose&exclude=etcd = %d %q", code, body)
	}
	// Single checks need credentials, and RBAC allows them to monitoring
	// and admins only.
	for _, p := range []string{"/healthz/etcd", "/readyz/informer-sync", "/livez/ping"} {
		if code, body := get(p); code != 401 {
			t.Errorf("anonymous %s = %d %q, want 401", p, code, body)
		}
	}
	rc := s.Client.CoreV1().RESTClient()
	ctx := context.Background()
	for _, p := range []string{"/healthz/etcd", "/readyz/informer-sync", "/livez/ping", "/readyz/poststarthook/skiff-bootstrap"} {
		if b, err := rc.Get().AbsPath(p).DoRaw(ctx); err != nil || string(b) != "ok" {
			t.Errorf("admin %s = %q, %v", p, b, err)
		}
	}
	if _, err := rc.Get().AbsPath("/readyz/no-such-check").DoRaw(ctx); err == nil || !strings.Contains(err.Error(), "could not find the requested resource") {
		t.Errorf("unknown check: %v, want 404", err)
	}
}
