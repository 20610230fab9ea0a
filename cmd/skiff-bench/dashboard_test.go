package main

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestDashFilter(t *testing.T) {
	for _, n := range []int{20, 21, 99, 3000, 3005, 30000, 29999} {
		f, m := dashFilter(n)
		want := 0
		for i := 0; i < n; i++ {
			if strings.Contains(fmt.Sprintf("pod-%05d", i), f) {
				want++
			}
		}
		if m != want || m != 10 {
			t.Errorf("dashFilter(%d) = %q matching %d, counted %d, want 10", n, f, m, want)
		}
	}
	if f, _ := dashFilter(30000); f != "pod-1500" {
		t.Errorf("dashFilter(30000) = %q, want pod-1500", f)
	}
}

func TestParseBrowserResult(t *testing.T) {
	if _, ok, err := parseBrowserResult("step: log in"); ok || err != nil {
		t.Fatalf("a step line: ok %v err %v", ok, err)
	}
	r, ok, err := parseBrowserResult(`RESULT {"login_ms":12,"first_render_ms":850.5,"first_render_warm_ms":300,"filter_ms":90,"filter_rows":10,"update_ms":[120,80,200]}` + "\n")
	if !ok || err != nil {
		t.Fatalf("ok %v err %v", ok, err)
	}
	if r.FirstRenderMs != 850.5 || r.FilterRows != 10 || len(r.UpdateMs) != 3 || r.UpdateMs[2] != 200 {
		t.Fatalf("parsed %+v", r)
	}
	if _, ok, err := parseBrowserResult("RESULT {broken"); !ok || err == nil {
		t.Fatalf("a broken result: ok %v err %v", ok, err)
	}
}

func TestUpdateLatencyQuantiles(t *testing.T) {
	d := msDurations([]float64{300, 100, 200.5, 400, 50})
	if d[0] != 50*time.Millisecond || d[4] != 400*time.Millisecond {
		t.Fatalf("not sorted: %v", d)
	}
	if p := pctMs(d, 0.5); p != 200.5 {
		t.Errorf("p50 = %v, want 200.5 (nearest rank)", p)
	}
	if p := pctMs(d, 0.99); p != 400 {
		t.Errorf("p99 = %v, want 400", p)
	}
	if p := pctMs(nil, 0.5); p != 0 {
		t.Errorf("p50 of nothing = %v", p)
	}
}
