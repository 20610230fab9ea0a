package apiserver

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"
)

func TestFailureThrottle(t *testing.T) {
	th := newFailureThrottle(AuthFailureLimits{Rate: 10, Burst: 3, GlobalRate: -1, MaxWait: 500 * time.Millisecond})
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

// TestFailureThrottleGlobal: failures spread over many sources, each
// within its own burst, are held back once all together pass GlobalRate.
func TestFailureThrottleGlobal(t *testing.T) {
	th := newFailureThrottle(AuthFailureLimits{Rate: 10, Burst: 3, GlobalRate: 5, MaxWait: 2 * time.Second})
	now := time.Unix(1000, 0)
	for i := range 5 {
		r := &testRequest{"10.0.1." + strconv.Itoa(i) + ":80"}
		if d := th.delay(r.r(), now); d != 0 {
			t.Fatalf("failure %d within the global burst delayed %v", i, d)
		}
	}
	// A sixth source, fresh and within its own burst, still waits its
	// turn behind the other five: one fifth of a second.
	if d := th.delay((&testRequest{"10.0.2.1:80"}).r(), now); d != 200*time.Millisecond {
		t.Fatalf("failure beyond the global burst delayed %v, want 200ms", d)
	}
	// The default is on; a negative GlobalRate turns it off alone.
	if newFailureThrottle(AuthFailureLimits{}).global == nil {
		t.Fatal("no global limit by default")
	}
	off := newFailureThrottle(AuthFailureLimits{Rate: 10, Burst: 3, GlobalRate: -1})
	for i := range 50 {
		if d := off.delay((&testRequest{"10.0.3." + strconv.Itoa(i) + ":80"}).r(), now); d != 0 {
			t.Fatalf("global limit off, failure %d delayed %v", i, d)
		}
	}
}

type testRequest struct{ addr string }

func (h *testRequest) r() *http.Request {
	r := httptest.NewRequest("GET", "/api", nil)
	r.RemoteAddr = h.addr
	return r
}
