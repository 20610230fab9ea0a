package apiserver

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// A failing check turns the root path into a 500 listing every check with
// the reason withheld, and the single check into a 500 with its reason.
func TestHealthFailureOutput(t *testing.T) {
	s := &Server{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	checks := func() []healthCheck {
		return []healthCheck{
			{"ping", func(context.Context) error { return nil }},
			{"etcd", func(context.Context) error { return errors.New("context deadline exceeded") }},
		}
	}
	rec := httptest.NewRecorder()
	s.healthRoot("livez", checks)(rec, httptest.NewRequest(http.MethodGet, "/livez", nil))
	want := "[+]ping ok\n[-]etcd failed: reason withheld\nlivez check failed\n"
	if rec.Code != http.StatusInternalServerError || rec.Body.String() != want {
		t.Errorf("/livez with etcd down = %d %q, want 500 %q", rec.Code, rec.Body.String(), want)
	}
	rec = httptest.NewRecorder()
	s.healthRoot("livez", checks)(rec, httptest.NewRequest(http.MethodGet, "/livez?exclude=etcd", nil))
	if rec.Code != http.StatusOK || rec.Body.String() != "ok" {
		t.Errorf("/livez?exclude=etcd = %d %q, want 200 ok", rec.Code, rec.Body.String())
	}
	rec = httptest.NewRecorder()
	s.healthOne(checks)(rec, httptest.NewRequest(http.MethodGet, "/livez/etcd", nil))
	if rec.Code != http.StatusInternalServerError || !strings.Contains(rec.Body.String(), "context deadline exceeded") {
		t.Errorf("/livez/etcd = %d %q", rec.Code, rec.Body.String())
	}
	// The etcd probe reads at most once a second.
	n := 0
	p := &etcdProbe{get: func(context.Context) error { n++; return nil }}
	for range 5 {
		_ = p.check(context.Background())
	}
	if n != 1 {
		t.Errorf("etcd read %d times for 5 probes within a second", n)
	}
}
