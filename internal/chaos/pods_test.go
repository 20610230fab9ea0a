package chaos

import (
	"strings"
	"testing"
)

func cleanPods() *PodsReport {
	return &PodsReport{
		Faults:          []Fault{{Target: "agent a", ConvergeSeconds: 3}, {Target: "containerd", ConvergeSeconds: 4}},
		IngressAnswered: 500, DNSAnswered: 900, LogLinesWritten: 2000, OpsAcknowledged: 300,
	}
}

func TestPodsReportBroken(t *testing.T) {
	if b := cleanPods().Broken(); len(b) != 0 {
		t.Fatalf("a clean run is broken: %v", b)
	}
	for name, tc := range map[string]struct {
		change func(*PodsReport)
		want   string
	}{
		"ingress failure": {func(r *PodsReport) { r.IngressFailures = []string{"10:00:00.000 502"} }, "ingress: 10:00:00.000 502"},
		"dns failure":     {func(r *PodsReport) { r.DNSFailures = []string{"timeout"} }, "DNS: timeout"},
		"idle load":       {func(r *PodsReport) { r.DNSAnswered = 3 }, "the load did not run"},
		"line lost":       {func(r *PodsReport) { r.LogLinesLost = 1 }, "1 of 2000 lines never reached the store"},
		"line twice":      {func(r *PodsReport) { r.LogLinesDuplicated = 2 }, "2 lines stored more than once"},
		"ticker restart":  {func(r *PodsReport) { r.LogProblems = []string{"ticker-0's log has"} }, "logs: ticker-0"},
		"idle ledger":     {func(r *PodsReport) { r.OpsAcknowledged = 5 }, "only 5 writes acknowledged"},
		"write lost":      {func(r *PodsReport) { r.Violations = []string{"key k: lost"} }, "ledger: key k: lost"},
		"pod replaced":    {func(r *PodsReport) { r.PodChanges = []string{"pod web-x is new"} }, "deployment: pod web-x is new"},
		"leak":            {func(r *PodsReport) { r.LeakedResources = []string{"network namespace /run/netns/x remains"} }, "leak: network namespace"},
	} {
		r := cleanPods()
		tc.change(r)
		b := r.Broken()
		if len(b) != 1 || !strings.Contains(b[0], tc.want) {
			t.Errorf("%s: Broken() = %q, want one entry with %q", name, b, tc.want)
		}
	}
	r := cleanPods()
	for range 15 {
		r.IngressFailures = append(r.IngressFailures, "reset")
	}
	if b := r.Broken(); len(b) != 11 || !strings.Contains(b[10], "and 5 more") {
		t.Errorf("15 failures listed as %d entries: %q", len(b), b)
	}
}

func TestReportAddPods(t *testing.T) {
	rep := &Report{OpsAcknowledged: 1000, FaultsInjected: 3, ConvergeSeconds: []float64{1, 1, 1}, MeetsPromises: true}
	p := cleanPods()
	rep.AddPods(p)
	if rep.LogLinesLost == nil || *rep.LogLinesLost != 0 || rep.LeakedResources == nil || *rep.LeakedResources != 0 {
		t.Fatalf("clean real-pod run: log_lines_lost %v, leaked_resources %v, want 0 and 0", rep.LogLinesLost, rep.LeakedResources)
	}
	if rep.FaultsInjected != 5 || len(rep.ConvergeSeconds) != 5 || rep.OpsAcknowledged != 1300 || !rep.MeetsPromises {
		t.Fatalf("totals after a clean run: %+v", rep)
	}
	rep = &Report{MeetsPromises: true}
	p.LogLinesLost = 4
	p.LeakedResources = []string{"a", "b"}
	p.Violations = []string{"key lost"}
	rep.AddPods(p)
	if *rep.LogLinesLost != 4 || *rep.LeakedResources != 2 || rep.OpsLost != 1 || rep.MeetsPromises {
		t.Fatalf("broken real-pod run: lines lost %d, leaked %d, ops lost %d, meets %v", *rep.LogLinesLost, *rep.LeakedResources, rep.OpsLost, rep.MeetsPromises)
	}
}
