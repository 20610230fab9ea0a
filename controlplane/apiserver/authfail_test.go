package apiserver

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestFailureThrottle(t *testing.T) {
	th := newFailureThrottle(AuthFailureLimits{Rate: 10, Burst: 3, MaxWait: 500 * time.Millisecond})
	req := func(addr string) *testRequest { return &testRequest{addr} }
	now := time.Unix(1000, 0)
	a := req("10.0.0.1:4000")
	for i := 0; i < 3; i++ {
		if d := th.delay(a.r(), now); d != 0 {
			t.Fatalf("failure %d within the burst delayed %v", i, d)
		}
	}
	// Beyond the burst each failure waits one more tenth of a second.
	if d := th.delay(a.r(), now); d != 100*time.Millisecond {
		t.Fatalf("4th failure delay = %v, want 100ms", d)
	}
	if d := th.delay(a.r(), now); d != 200*time.Millisecond {
		t.Fatalf("5th failure delay = %v, want 200ms", d)
	}
	// The wait is capped.
	for i := 0; i < 20; i++ {
		if d := th.delay(a.r(), now); d > 500*time.Millisecond {
			t.Fatalf("delay %v beyond MaxWait", d)
		}
	}
	// Another source (another port of the same IP is the same source) is
	// not held back by the first.
	if d := th.delay(req("10.0.0.2:5000").r(), now); d != 0 {
		t.Fatalf("other IP delayed %v", d)
	}
	if d := th.delay(req("10.0.0.1:4001").r(), now); d == 0 {
		t.Fatal("same IP on another port not throttled")
	}
	// Quiet sources are forgotten and start afresh.
	later := now.Add(2 * time.Minute)
	th.delay(req("10.0.0.3:1").r(), later)
	if _, ok := th.sources["10.0.0.1"]; ok {
		t.Fatal("quiet source not swept")
	}
	// A negative rate turns the throttle off.
	if off := newFailureThrottle(AuthFailureLimits{Rate: -1}); off.delay(a.r(), now) != 0 {
		t.Fatal("disabled throttle delays")
	}
}

type testRequest struct{ addr string }

func (h *testRequest) r() *http.Request {
	r := httptest.NewRequest("GET", "/api", nil)
	r.RemoteAddr = h.addr
	return r
}
