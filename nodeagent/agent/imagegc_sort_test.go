package agent

import (
	"testing"
	"time"
)

// TestImageGCOrder: the least recently used image goes first (never used
// before used), ties broken by the earliest detected, as the kubelet's.
func TestImageGCOrder(t *testing.T) {
	t0 := time.Unix(1000, 0)
	cs := []gcCandidate{
		{digest: "used-late", imageRecord: imageRecord{lastUsed: t0.Add(2 * time.Minute), firstDetected: t0}},
		{digest: "never-new", imageRecord: imageRecord{firstDetected: t0.Add(time.Minute)}},
		{digest: "used-early", imageRecord: imageRecord{lastUsed: t0.Add(time.Minute), firstDetected: t0}},
		{digest: "never-old", imageRecord: imageRecord{firstDetected: t0}},
	}
	sortCandidates(cs)
	want := []string{"never-old", "never-new", "used-early", "used-late"}
	for i, c := range cs {
		if c.digest != want[i] {
			t.Fatalf("order %d: %s, want %s (all: %v)", i, c.digest, want[i], cs)
		}
	}
}

// TestImageGCPolicyDefaults: zero fields take the kubelet's defaults; a
// low threshold above the high one is refused.
func TestImageGCPolicyDefaults(t *testing.T) {
	var p ImageGCPolicy
	if err := p.defaults(); err != nil {
		t.Fatal(err)
	}
	if p.HighThresholdPercent != 85 || p.LowThresholdPercent != 80 || p.MinAge != 2*time.Minute || p.Period != 5*time.Minute || p.FsUsage == nil {
		t.Fatalf("defaults: %+v", p)
	}
	bad := ImageGCPolicy{HighThresholdPercent: 70, LowThresholdPercent: 75}
	if err := bad.defaults(); err == nil {
		t.Fatal("low 75% above high 70% accepted")
	}
}
