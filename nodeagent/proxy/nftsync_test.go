package proxy

import (
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	corev1 "k8s.io/api/core/v1"
)

// ruleHandles reads every chain of the table with its rules' handles
// (a rewritten rule gets a new handle), by hash-elided chain name.
func ruleHandles(t *testing.T, c *nftables.Conn, table string) map[string][]uint64 {
	t.Helper()
	tb := &nftables.Table{Name: table, Family: nftables.TableFamilyIPv4}
	chs, err := c.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]uint64{}
	for _, ch := range chs {
		if ch.Table.Name != table {
			continue
		}
		rules, err := c.GetRules(tb, ch)
		if err != nil {
			t.Fatalf("rules of %s: %v", ch.Name, err)
		}
		hs := []uint64{}
		for _, r := range rules {
			hs = append(hs, r.Handle)
		}
		out[elideHash(ch.Name)] = hs
	}
	return out
}

func setKeys(t *testing.T, c *nftables.Conn, table, set string) []string {
	t.Helper()
	s, err := c.GetSetByName(&nftables.Table{Name: table, Family: nftables.TableFamilyIPv4}, set)
	if err != nil {
		t.Fatalf("set %s: %v", set, err)
	}
	es, err := c.GetSetElements(s)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, net.IP(e.Key).String())
	}
	slices.Sort(out)
	return out
}

// TestPartialSyncKernel programs the sample table, then changes one
// service's endpoints, removes one service and adds one, and reads the
// kernel's table back: the partial sync rewrote only the chains of the
// changed and new services (all other rules keep their handles), deleted
// the removed service's and the dropped endpoint's chains and moved the
// map and ClusterIP set elements. Then it breaks a chain behind the
// proxy's back: a partial sync with nothing changed leaves it so, a full
// sync repairs it.
func TestPartialSyncKernel(t *testing.T) {
	needRoot(t)
	table := fmt.Sprintf("skiff_proxy_p%d", os.Getpid())
	c, err := newConn("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = deleteTable(c, table); _ = c.CloseLasting() })
	_, cidr, _ := net.ParseCIDR("10.42.0.0/16")
	s := &syncer{cfg: Config{Table: table, ClusterCIDR: cidr, LocalhostNodePorts: true}}
	sps := sampleServicePorts()
	if st, err := s.sync(stage(t), sps, false); err != nil || !st.Full {
		t.Fatalf("first sync: %+v %v (must be full)", st, err)
	}
	before := ruleHandles(t, c, table)

	// web (index 0) loses 10.42.250.3; dns (2) goes; "new" comes.
	next := sampleServicePorts()
	web := next[0]
	web.Cluster, web.All = web.Cluster[:1], web.All[:1]
	ep := Endpoint{IP: net.ParseIP("10.42.250.9").To4(), Port: 80}
	next = append(next[:2], next[3:]...)
	next = append(next, &ServicePort{Namespace: "default", Name: "new", Protocol: corev1.ProtocolTCP,
		ClusterIP: net.ParseIP("10.43.250.7").To4(), Port: 80, Cluster: []Endpoint{ep}, All: []Endpoint{ep}, HasEndpoints: true})
	st, err := s.sync(stage(t), next, false)
	if err != nil {
		t.Fatalf("partial sync: %v", err)
	}
	if st.Full || st.Changed != 2 || st.Removed != 1 {
		t.Fatalf("partial sync did %+v, want 2 changed and 1 removed", st)
	}
	after := ruleHandles(t, c, table)
	touched := func(ch string) bool {
		return strings.Contains(ch, "default/web/") || strings.Contains(ch, "default/dns/") || strings.Contains(ch, "default/new/")
	}
	for ch, hs := range before {
		if touched(ch) {
			continue
		}
		if !slices.Equal(after[ch], hs) {
			t.Errorf("chain %s of an unchanged service was rewritten: rules %v, then %v", ch, hs, after[ch])
		}
	}
	for _, gone := range []string{"svc-*-default/dns/udp/53"} {
		if _, ok := after[gone]; ok {
			t.Errorf("chain %s still there", gone)
		}
	}
	if len(after["pick-cluster-1-0"]) == 0 {
		t.Errorf("pick chain for web's and new's one endpoint missing: %v", after)
	}
	// web's second endpoint and dns's are gone from the endpoint map,
	// new's is there; the hairpin set lost dns's endpoint only (the
	// others are still used) and gained new's.
	wantEps := []string{
		"10.43.250.1 . tcp . 80 . 0 -> 10.42.250.2 . 8080",
		"10.43.250.6 . tcp . 80 . 0 -> 10.42.250.2 . 8080",
		"10.43.250.6 . tcp . 80 . 1 -> 10.42.250.3 . 8080",
		"10.43.250.7 . tcp . 80 . 0 -> 10.42.250.9 . 80",
		"tcp . 30080 . 0 -> 10.42.250.2 . 8080",
		"tcp . 30082 . 0 -> 10.42.250.3 . 8080",
		"tcp . 30083 . 0 -> 10.42.250.2 . 8080",
		"tcp . 30083 . 1 -> 10.42.250.3 . 8080",
		"tcp . 30083 . 2 -> 10.42.250.2 . 8080",
	}
	if got := endpointElems(t, table); !slices.Equal(got, wantEps) {
		t.Errorf("endpoint map after partial sync:\n got %q\nwant %q", got, wantEps)
	}
	if got, want := hairpinKeys(t, table), []string{"10.42.250.2 . 10.42.250.2", "10.42.250.3 . 10.42.250.3", "10.42.250.9 . 10.42.250.9"}; !slices.Equal(got, want) {
		t.Errorf("hairpin set after partial sync: %q, want %q", got, want)
	}
	elems := mapElems(t, table)
	want := []string{
		"10.43.250.1 . tcp . 80 -> goto pick-cluster-1-0",
		"10.43.250.2 . tcp . 80 -> goto svc-*-default/sticky/tcp/80",
		"10.43.250.6 . tcp . 80 -> goto pick-cluster-2-0",
		"10.43.250.7 . tcp . 80 -> goto pick-cluster-1-0",
	}
	if got := elems[mapServiceIPs]; !slices.Equal(got, want) {
		t.Errorf("service-ips after partial sync:\n got %q\nwant %q", got, want)
	}
	if got, want := setKeys(t, c, table, setClusterIPs), []string{"10.43.250.1", "10.43.250.2", "10.43.250.4", "10.43.250.5", "10.43.250.6", "10.43.250.7"}; !slices.Equal(got, want) {
		t.Errorf("cluster-ips: %v, want %v", got, want)
	}

	// Drift: someone flushes sticky's service chain.
	sticky := &nftables.Chain{Name: chainName("svc", "default/sticky/tcp/80"), Table: &nftables.Table{Name: table, Family: nftables.TableFamilyIPv4}}
	c.FlushChain(sticky)
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	if st, err := s.sync(stage(t), next, false); err != nil || st.Full || st.Changed+st.Removed != 0 {
		t.Fatalf("partial sync without changes: %+v %v", st, err)
	}
	if n := len(ruleHandles(t, c, table)["svc-*-default/sticky/tcp/80"]); n != 0 {
		t.Fatalf("a partial sync without changes wrote the flushed chain (%d rules)", n)
	}
	if st, err := s.sync(stage(t), next, true); err != nil || !st.Full {
		t.Fatalf("full sync: %+v %v", st, err)
	}
	repaired := ruleHandles(t, c, table)
	if got, want := len(repaired["svc-*-default/sticky/tcp/80"]), len(before["svc-*-default/sticky/tcp/80"]); got != want || got == 0 {
		t.Fatalf("full sync left sticky's chain with %d rules, want %d", got, want)
	}
	// And a partial sync after it starts from the full one's state.
	if st, err := s.sync(stage(t), sampleServicePorts(), false); err != nil || st.Full || st.Changed != 2 || st.Removed != 1 {
		t.Fatalf("partial sync back to the sample: %+v %v", st, err)
	}
	if got := mapElems(t, table)[mapServiceIPs]; len(got) != 4 || !strings.Contains(strings.Join(got, "\n"), "10.43.250.3 . udp . 53") {
		t.Errorf("service-ips back at the sample: %q", got)
	}
	if got, want := hairpinKeys(t, table), []string{"10.42.250.2 . 10.42.250.2", "10.42.250.3 . 10.42.250.3", "10.42.250.4 . 10.42.250.4"}; !slices.Equal(got, want) {
		t.Errorf("hairpin set back at the sample: %q, want %q", got, want)
	}
	if got := endpointElems(t, table); len(got) != 11 {
		t.Errorf("endpoint map back at the sample: %q", got)
	}
	// A service port with more endpoints than any before: a partial sync
	// adds the index chain for the new index.
	more := sampleServicePorts()
	third := Endpoint{IP: net.ParseIP("10.42.250.5").To4(), Port: 8080}
	more[0].Cluster = append(more[0].Cluster, third)
	if st, err := s.sync(stage(t), more, false); err != nil || st.Full || st.Changed != 1 {
		t.Fatalf("partial sync to three endpoints: %+v %v", st, err)
	}
	if got := ruleExprs(t, table)["endpoint-2"]; len(got) != 1 || got[0] != "lookup(service-endpoints) dnat" {
		t.Errorf("index chain endpoint-2 after growing: %q", got)
	}
	if got := endpointElems(t, table); !slices.Contains(got, "10.43.250.1 . tcp . 80 . 2 -> 10.42.250.5 . 8080") {
		t.Errorf("third endpoint missing: %q", got)
	}

	// sticky loses its affinity: its chains and affinity sets go, its
	// endpoints become map elements; and back.
	plain := sampleServicePorts()
	plain[1].Affinity = 0
	if st, err := s.sync(stage(t), plain, false); err != nil || st.Full || st.Changed != 2 {
		t.Fatalf("partial sync without affinity: %+v %v", st, err)
	}
	for ch := range ruleHandles(t, c, table) {
		if strings.Contains(ch, "/sticky/") {
			t.Errorf("chain %s left after sticky lost its affinity", ch)
		}
	}
	if sets, err := c.GetSets(&nftables.Table{Name: table, Family: nftables.TableFamilyIPv4}); err != nil {
		t.Fatal(err)
	} else {
		for _, set := range sets {
			if strings.HasPrefix(set.Name, "aff-") {
				t.Errorf("affinity set %s left", set.Name)
			}
		}
	}
	if got := mapElems(t, table)[mapServiceIPs]; !slices.Contains(got, "10.43.250.2 . tcp . 80 -> goto pick-cluster-2-0") {
		t.Errorf("sticky without affinity: %q", got)
	}
	if st, err := s.sync(stage(t), sampleServicePorts(), false); err != nil || st.Full || st.Changed != 1 {
		t.Fatalf("partial sync back to affinity: %+v %v", st, err)
	}
	if got := len(ruleHandles(t, c, table)["svc-*-default/sticky/tcp/80"]); got != len(before["svc-*-default/sticky/tcp/80"]) {
		t.Errorf("sticky's chain has %d rules after getting its affinity back, want %d", got, len(before["svc-*-default/sticky/tcp/80"]))
	}
	if got := endpointElems(t, table); slices.ContainsFunc(got, func(e string) bool { return strings.HasPrefix(e, "10.43.250.2 ") }) {
		t.Errorf("sticky's endpoints still in the endpoint map: %q", got)
	}
}

// stage is a transaction in our own namespace.
func stage(t *testing.T) *txn {
	t.Helper()
	tx, err := newTxn("")
	if err != nil {
		t.Fatal(err)
	}
	return tx
}

// TestTxnErrors: a transaction sent without per-message ACKs still
// reports the kernel's error for a failing message, and the kernel
// applies none of it; a good one is applied.
func TestTxnErrors(t *testing.T) {
	needRoot(t)
	table := fmt.Sprintf("skiff_proxy_x%d", os.Getpid())
	tb := &nftables.Table{Name: table, Family: nftables.TableFamilyIPv4}
	c, err := newConn("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = deleteTable(c, table); _ = c.CloseLasting() })
	chains := func() []string {
		chs, err := c.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, ch := range chs {
			if ch.Table.Name == table {
				out = append(out, ch.Name)
			}
		}
		return out
	}

	tx := stage(t)
	tx.AddTable(tb)
	tx.AddChain(&nftables.Chain{Name: "good", Table: tb})
	tx.DelChain(&nftables.Chain{Name: "missing", Table: tb})
	tx.AddChain(&nftables.Chain{Name: "after", Table: tb})
	err = tx.Flush()
	if !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("deleting a missing chain: %v, want ENOENT", err)
	}
	if got := chains(); len(got) != 0 {
		t.Fatalf("a failed transaction left chains %v", got)
	}

	tx = stage(t)
	tx.AddTable(tb)
	for i := 0; i < 1000; i++ {
		tx.AddChain(&nftables.Chain{Name: fmt.Sprintf("c%d", i), Table: tb})
	}
	if err := tx.Flush(); err != nil {
		t.Fatal(err)
	}
	if got := chains(); len(got) != 1000 {
		t.Fatalf("%d chains, want 1000", len(got))
	}
	// Many rules in one batch: the library asks an echo of each, which
	// would overflow the reply buffer (ENOBUFS) unless turned off.
	tx = stage(t)
	for i := 0; i < 30000; i++ {
		tx.AddRule(&nftables.Rule{Table: tb, Chain: &nftables.Chain{Name: fmt.Sprintf("c%d", i%1000), Table: tb},
			Exprs: []expr.Any{&expr.Counter{}}})
	}
	if err := tx.Flush(); err != nil {
		t.Fatalf("30,000 rules: %v", err)
	}
	// The last message failing is reported too.
	tx = stage(t)
	tx.AddChain(&nftables.Chain{Name: "c1000", Table: tb})
	tx.DelChain(&nftables.Chain{Name: "missing", Table: tb})
	if err := tx.Flush(); !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("last message failing: %v, want ENOENT", err)
	}
	if got := chains(); len(got) != 1000 {
		t.Fatalf("%d chains after a failed transaction, want 1000", len(got))
	}
}
