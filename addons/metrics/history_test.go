package metrics

import (
	"math"
	"testing"
	"time"
)

func TestHistoryRingGapsAndExpiry(t *testing.T) {
	h := NewHistory(4)
	t0 := time.Unix(1000, 0)
	at := func(i int) time.Time { return t0.Add(time.Duration(i) * 15 * time.Second) }
	for i := 0; i < 3; i++ {
		h.Begin(at(i))
		h.Put(KindNode, "a", float64(i), 100)
		if i != 1 { // b misses round 1: a gap, not a zero
			h.Put(KindNode, "b", 1, 1)
		}
		h.Add(KindNamespace, "ns", 1, 10)
		h.Add(KindNamespace, "ns", 2, 20)
	}
	if got := h.Series(KindNode, "a"); len(got) != 3 || got[2].CPU != 2 || !got[0].Time.Equal(at(0)) || !got[2].Time.Equal(at(2)) {
		t.Fatalf("a = %+v", got)
	}
	if got := h.Series(KindNode, "b"); len(got) != 2 || !got[0].Time.Equal(at(0)) || !got[1].Time.Equal(at(2)) {
		t.Fatalf("b = %+v", got)
	}
	if got := h.Series(KindNamespace, "ns"); len(got) != 3 || got[0].CPU != 3 || got[0].Memory != 30 {
		t.Fatalf("ns sums = %+v", got)
	}
	// Three more rounds: the window keeps the last 4; a stops at round 3.
	for i := 3; i < 6; i++ {
		h.Begin(at(i))
		if i == 3 {
			h.Put(KindNode, "a", 3, 100)
		}
		h.Put(KindNode, "b", float64(i), 1)
	}
	got := h.Series(KindNode, "a")
	if len(got) != 2 || got[0].CPU != 2 || got[1].CPU != 3 {
		t.Fatalf("a after wrap = %+v", got)
	}
	for _, p := range h.Series(KindNode, "b") {
		if math.IsNaN(p.CPU) || p.Time.Before(at(2)) {
			t.Fatalf("b after wrap = %+v", h.Series(KindNode, "b"))
		}
	}
	// a is dropped once it has not been written for a whole window.
	for i := 6; i < 9; i++ {
		h.Begin(at(i))
		h.Put(KindNode, "b", 1, 1)
	}
	if h.Len(KindNode) != 1 || h.Series(KindNode, "a") != nil {
		t.Fatalf("expired series kept: %v", h.Keys(KindNode))
	}
}

func TestRateFromCumulative(t *testing.T) {
	t0 := time.Unix(0, 0)
	if _, _, ok := rate(cum{}, t0, 5); ok {
		t.Error("rate without a previous sample")
	}
	if r, d, ok := rate(cum{t0, 1e9}, t0.Add(2*time.Second), 3e9); !ok || r != 1e9 || d != 2*time.Second {
		t.Errorf("rate = %v %v %v", r, d, ok)
	}
	if _, _, ok := rate(cum{t0, 5e9}, t0.Add(time.Second), 1e9); ok {
		t.Error("rate across a counter reset")
	}
}
