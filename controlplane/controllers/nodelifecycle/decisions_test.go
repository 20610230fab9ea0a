package nodelifecycle

import (
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

func TestComputeZoneState(t *testing.T) {
	ready := &corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionTrue}
	unknown := &corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionUnknown}
	mk := func(r, u int) []*corev1.NodeCondition {
		var out []*corev1.NodeCondition
		for i := 0; i < r; i++ {
			out = append(out, ready)
		}
		for i := 0; i < u; i++ {
			out = append(out, unknown)
		}
		return out
	}
	for _, tc := range []struct {
		ready, notReady int
		want            zoneState
	}{
		{3, 0, stateNormal},
		{0, 1, stateFullDisruption},
		{1, 2, stateNormal},            // two not ready never disrupt a zone
		{2, 3, statePartialDisruption}, // 3/5 = 0.6 >= 0.55
		{3, 3, stateNormal},            // 0.5 < 0.55
		{4, 0, stateNormal},
	} {
		conds := mk(tc.ready, tc.notReady)
		if _, got := computeZoneState(conds, 0.55); got != tc.want {
			t.Errorf("%d ready, %d not: %s, want %s", tc.ready, tc.notReady, got, tc.want)
		}
	}
	// A node without a Ready condition counts as not ready.
	if _, got := computeZoneState([]*corev1.NodeCondition{nil}, 0.55); got != stateFullDisruption {
		t.Errorf("nil condition: %s", got)
	}
}

func TestTolerations(t *testing.T) {
	secs := func(s int64) *int64 { return &s }
	taints := []corev1.Taint{UnreachableTaint}
	for _, tc := range []struct {
		name string
		tols []corev1.Toleration
		all  bool
		wait time.Duration
	}{
		{"none", nil, false, 0},
		{"other key", []corev1.Toleration{{Key: "x", Operator: corev1.TolerationOpExists}}, false, 0},
		{"NoSchedule only", []corev1.Toleration{{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}}, false, 0},
		{"forever", []corev1.Toleration{{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists}}, true, -1},
		{"wildcard", []corev1.Toleration{{Operator: corev1.TolerationOpExists}}, true, -1},
		{"seconds", []corev1.Toleration{{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: secs(30)}}, true, 30 * time.Second},
		{"shortest wins", []corev1.Toleration{
			{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists, TolerationSeconds: secs(30)},
			{Operator: corev1.TolerationOpExists, TolerationSeconds: secs(5)},
		}, true, 5 * time.Second},
		{"negative is zero", []corev1.Toleration{{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists, TolerationSeconds: secs(-3)}}, true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			all, used := matchingTolerations(taints, tc.tols)
			if all != tc.all {
				t.Fatalf("all tolerated = %v", all)
			}
			if all {
				if got := minTolerationTime(used); got != tc.wait {
					t.Fatalf("wait = %v, want %v", got, tc.wait)
				}
			}
		})
	}
}

func TestTainterRate(t *testing.T) {
	var mu sync.Mutex
	tr := newTainter(0.1) // burst 1: one node now, the next in ten seconds
	for _, n := range []string{"a", "b", "c"} {
		tr.add(n, types.UID(n))
	}
	tr.add("a", "a") // queued once
	var got []string
	tr.try(&mu, func(name string, _ types.UID) bool { got = append(got, name); return true })
	if len(got) != 1 || got[0] != "a" || len(tr.queue) != 2 {
		t.Fatalf("first pass tainted %v, queue %v", got, tr.queue)
	}
	tr.setRate(0) // partial disruption of a small zone: nothing more
	tr.try(&mu, func(name string, _ types.UID) bool { got = append(got, name); return true })
	if len(got) != 1 {
		t.Fatalf("rate 0 tainted %v", got)
	}
	tr.setRate(1)
	tr.try(&mu, func(name string, _ types.UID) bool { got = append(got, name); return true })
	if len(got) != 2 {
		t.Fatalf("burst 1 tainted %v in one pass", got)
	}
	tr.remove("c")
	if len(tr.queue) != 0 {
		t.Fatalf("queue %v", tr.queue)
	}
}
