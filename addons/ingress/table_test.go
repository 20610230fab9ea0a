package ingress

import (
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
)

// p is a path rule "<type>:<path>=><service>".
func p(pt networkingv1.PathType, path, svc string) networkingv1.HTTPIngressPath {
	return networkingv1.HTTPIngressPath{
		Path: path, PathType: ptr.To(pt),
		Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: svc, Port: networkingv1.ServiceBackendPort{Number: 80}}},
	}
}

func ing(name string, age int, host string, paths ...networkingv1.HTTPIngressPath) *networkingv1.Ingress {
	return &networkingv1.Ingress{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: "default",
			CreationTimestamp: metav1.NewTime(time.Unix(1000-int64(age), 0)),
		},
		Spec: networkingv1.IngressSpec{
			IngressClassName: ptr.To("skiff"),
			Rules:            []networkingv1.IngressRule{{Host: host, IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{Paths: paths}}}},
		},
	}
}

// input builds an Input with class "skiff" and a ready service (port 80,
// one endpoint) for every backend the Ingresses name.
func input(ings ...*networkingv1.Ingress) *Input {
	in := &Input{
		Ingresses: ings,
		Classes:   []*networkingv1.IngressClass{{ObjectMeta: metav1.ObjectMeta{Name: "skiff"}, Spec: networkingv1.IngressClassSpec{Controller: DefaultController}}},
		Services:  map[types.NamespacedName]*corev1.Service{},
		Slices:    map[types.NamespacedName][]*discoveryv1.EndpointSlice{},
		Secrets:   map[types.NamespacedName]*corev1.Secret{},
	}
	add := func(ns string, b *networkingv1.IngressBackend) {
		if b == nil || b.Service == nil {
			return
		}
		id := types.NamespacedName{Namespace: ns, Name: b.Service.Name}
		in.Services[id] = &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: id.Name},
			Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}},
		}
		in.Slices[id] = []*discoveryv1.EndpointSlice{{
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080)}},
			Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.0.0.1"}}},
		}}
	}
	for _, i := range ings {
		add(i.Namespace, i.Spec.DefaultBackend)
		for _, r := range i.Spec.Rules {
			if r.HTTP != nil {
				for k := range r.HTTP.Paths {
					add(i.Namespace, &r.HTTP.Paths[k].Backend)
				}
			}
		}
	}
	return in
}

func target(r *route) string {
	if r == nil {
		return "404"
	}
	return r.backend.service
}

const (
	exact  = networkingv1.PathTypeExact
	prefix = networkingv1.PathTypePrefix
	impl   = networkingv1.PathTypeImplementationSpecific
)

// TestPathMatchingSpecExamples is the table of examples in the Kubernetes
// Ingress documentation ("Examples" under "Path types"), one Ingress per
// row, plus the multiple-match precedence rules.
func TestPathMatchingSpecExamples(t *testing.T) {
	cases := []struct {
		paths []networkingv1.HTTPIngressPath
		req   string
		want  string // service, or 404
	}{
		{[]networkingv1.HTTPIngressPath{p(prefix, "/", "a")}, "/anything/at/all", "a"},
		{[]networkingv1.HTTPIngressPath{p(exact, "/foo", "a")}, "/foo", "a"},
		{[]networkingv1.HTTPIngressPath{p(exact, "/foo", "a")}, "/bar", "404"},
		{[]networkingv1.HTTPIngressPath{p(exact, "/foo", "a")}, "/foo/", "404"},
		{[]networkingv1.HTTPIngressPath{p(exact, "/foo/", "a")}, "/foo", "404"},
		{[]networkingv1.HTTPIngressPath{p(prefix, "/foo", "a")}, "/foo", "a"},
		{[]networkingv1.HTTPIngressPath{p(prefix, "/foo", "a")}, "/foo/", "a"},
		{[]networkingv1.HTTPIngressPath{p(prefix, "/foo/", "a")}, "/foo", "a"},
		{[]networkingv1.HTTPIngressPath{p(prefix, "/foo/", "a")}, "/foo/", "a"},
		{[]networkingv1.HTTPIngressPath{p(prefix, "/aaa/bb", "a")}, "/aaa/bbb", "404"},
		{[]networkingv1.HTTPIngressPath{p(prefix, "/aaa/bbb", "a")}, "/aaa/bbb", "a"},
		{[]networkingv1.HTTPIngressPath{p(prefix, "/aaa/bbb/", "a")}, "/aaa/bbb", "a"},
		{[]networkingv1.HTTPIngressPath{p(prefix, "/aaa/bbb", "a")}, "/aaa/bbb/", "a"},
		{[]networkingv1.HTTPIngressPath{p(prefix, "/aaa/bbb", "a")}, "/aaa/bbb/ccc", "a"},
		{[]networkingv1.HTTPIngressPath{p(prefix, "/aaa/bbb", "a")}, "/aaa/bbbxyz", "404"},
		{[]networkingv1.HTTPIngressPath{p(prefix, "/", "root"), p(prefix, "/aaa", "aaa")}, "/aaa/ccc", "aaa"},
		{[]networkingv1.HTTPIngressPath{p(prefix, "/", "root"), p(prefix, "/aaa", "aaa"), p(prefix, "/aaa/bbb", "bbb")}, "/aaa/bbb", "bbb"},
		{[]networkingv1.HTTPIngressPath{p(prefix, "/", "root"), p(prefix, "/aaa", "aaa"), p(prefix, "/aaa/bbb", "bbb")}, "/ccc", "root"},
		{[]networkingv1.HTTPIngressPath{p(prefix, "/aaa", "a")}, "/ccc", "404"},
		{[]networkingv1.HTTPIngressPath{p(prefix, "/foo", "prefix"), p(exact, "/foo", "exact")}, "/foo", "exact"},
		{[]networkingv1.HTTPIngressPath{p(exact, "/foo", "exact"), p(prefix, "/foo", "prefix")}, "/foo", "exact"},
		{[]networkingv1.HTTPIngressPath{p(exact, "/foo", "exact"), p(prefix, "/foo", "prefix")}, "/foo/x", "prefix"},
		// Paths are case-sensitive.
		{[]networkingv1.HTTPIngressPath{p(prefix, "/Foo", "a")}, "/foo", "404"},
		{[]networkingv1.HTTPIngressPath{p(exact, "/foo", "a")}, "/FOO", "404"},
		// ImplementationSpecific is served as Prefix.
		{[]networkingv1.HTTPIngressPath{p(impl, "/foo", "a")}, "/foo/bar", "a"},
		{[]networkingv1.HTTPIngressPath{p(impl, "/foo", "a")}, "/foobar", "404"},
		// Longest prefix wins regardless of order.
		{[]networkingv1.HTTPIngressPath{p(prefix, "/a/b/c", "c"), p(prefix, "/a", "a"), p(prefix, "/a/b", "b")}, "/a/b/x", "b"},
	}
	for i, c := range cases {
		var desc []string
		for _, x := range c.paths {
			desc = append(desc, fmt.Sprintf("%s:%s", *x.PathType, x.Path))
		}
		t.Run(fmt.Sprintf("%d %s %s", i, strings.Join(desc, ","), c.req), func(t *testing.T) {
			tb, problems := newBuilder().build(input(ing("x", 0, "", c.paths...)))
			if len(problems) != 0 {
				t.Fatalf("problems: %v", problems)
			}
			if got := target(tb.Match("example.com", c.req)); got != c.want {
				t.Errorf("got %s, want %s", got, c.want)
			}
		})
	}
}

// TestHostMatching: exact hosts, "*." wildcards covering exactly one
// label, rules without a host for everything else; ports and case in the
// Host header are ignored.
func TestHostMatching(t *testing.T) {
	in := input(
		ing("exact", 0, "foo.bar.com", p(prefix, "/", "exact")),
		ing("wild", 0, "*.bar.com", p(prefix, "/", "wild")),
		ing("any", 0, "", p(prefix, "/", "any")),
	)
	tb, problems := newBuilder().build(in)
	if len(problems) != 0 {
		t.Fatal(problems)
	}
	for host, want := range map[string]string{
		"foo.bar.com":      "exact",
		"FOO.Bar.com:8080": "exact",
		"foo.bar.com.":     "exact",
		"baz.bar.com":      "wild",
		"baz.bar.com:443":  "wild",
		"x.baz.bar.com":    "any", // wildcard covers one label only
		"bar.com":          "any",
		"other.org":        "any",
		"127.0.0.1:80":     "any",
		"[::1]:80":         "any",
	} {
		if got := target(tb.Match(host, "/")); got != want {
			t.Errorf("host %s: got %s, want %s", host, got, want)
		}
	}
	// Without a catch-all rule, unknown hosts get 404.
	tb, _ = newBuilder().build(input(ing("exact", 0, "foo.bar.com", p(prefix, "/", "exact"))))
	if got := target(tb.Match("other.org", "/")); got != "404" {
		t.Errorf("unknown host: %s", got)
	}
}

func TestDefaultBackend(t *testing.T) {
	withDef := ing("with-def", 0, "foo.com", p(prefix, "/api", "api"))
	withDef.Spec.DefaultBackend = &networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: "def", Port: networkingv1.ServiceBackendPort{Name: "http"}}}
	only := &networkingv1.Ingress{
		ObjectMeta: metav1.ObjectMeta{Name: "only", Namespace: "default", CreationTimestamp: metav1.NewTime(time.Unix(2000, 0))},
		Spec: networkingv1.IngressSpec{
			IngressClassName: ptr.To("skiff"),
			DefaultBackend:   &networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: "newer", Port: networkingv1.ServiceBackendPort{Number: 80}}},
		},
	}
	tb, problems := newBuilder().build(input(withDef, only))
	if len(problems) != 0 {
		t.Fatal(problems)
	}
	for _, c := range []struct{ host, path, want string }{
		{"foo.com", "/api/x", "api"},
		{"foo.com", "/other", "def"}, // the host's Ingress default
		{"elsewhere", "/", "def"},    // the oldest Ingress's default
	} {
		if got := target(tb.Match(c.host, c.path)); got != c.want {
			t.Errorf("%s%s: got %s, want %s", c.host, c.path, got, c.want)
		}
	}
}

func TestIngressClassSelection(t *testing.T) {
	mk := func(name string, class *string, ann string) *networkingv1.Ingress {
		i := ing(name, 0, name+".com", p(prefix, "/", name))
		i.Spec.IngressClassName = class
		if ann != "" {
			i.Annotations = map[string]string{annotationLegacyClass: ann}
		}
		return i
	}
	in := input(
		mk("ours", ptr.To("skiff"), ""),
		mk("theirs", ptr.To("nginx"), ""),
		mk("missing", ptr.To("nope"), ""),
		mk("legacy", nil, "skiff"),
		mk("legacy-other", nil, "nginx"),
		mk("classless", nil, ""),
	)
	in.Classes = append(in.Classes, &networkingv1.IngressClass{ObjectMeta: metav1.ObjectMeta{Name: "nginx"}, Spec: networkingv1.IngressClassSpec{Controller: "k8s.io/ingress-nginx"}})
	served := func(in *Input) map[string]bool {
		tb, _ := newBuilder().build(in)
		out := map[string]bool{}
		for _, n := range []string{"ours", "theirs", "missing", "legacy", "legacy-other", "classless"} {
			out[n] = tb.Match(n+".com", "/") != nil
		}
		return out
	}
	got := served(in)
	want := map[string]bool{"ours": true, "legacy": true}
	for n, v := range got {
		if v != want[n] {
			t.Errorf("without a default class: %s served=%v", n, v)
		}
	}
	// Marking our class default adopts class-less Ingresses only.
	in.Classes[0].Annotations = map[string]string{annotationDefaultClass: "true"}
	got = served(in)
	want["classless"] = true
	for n, v := range got {
		if v != want[n] {
			t.Errorf("with our class default: %s served=%v", n, v)
		}
	}
}

func TestConflictsAndBadInput(t *testing.T) {
	older := ing("older", 10, "foo.com", p(prefix, "/", "old"))
	newer := ing("newer", 0, "foo.com", p(prefix, "/", "new"), p(prefix, "/new", "new"))
	res := ing("res", 0, "res.com", p(prefix, "/", "svc"))
	res.Spec.Rules[0].HTTP.Paths = append(res.Spec.Rules[0].HTTP.Paths, networkingv1.HTTPIngressPath{
		Path: "/bucket", PathType: ptr.To(prefix),
		Backend: networkingv1.IngressBackend{Resource: &corev1.TypedLocalObjectReference{Kind: "StorageBucket", Name: "b"}},
	})
	badRe := ing("bad-re", 0, "re.com", p(impl, "/ok.*", "ok"), p(impl, "/(unclosed", "bad"))
	badRe.Annotations = map[string]string{prefixNginx + "use-regex": "true"}
	missing := ing("missing", 0, "missing.com", p(prefix, "/", "gone"))
	in := input(older, newer, res, badRe, missing)
	delete(in.Services, types.NamespacedName{Namespace: "default", Name: "gone"})
	tb, problems := newBuilder().build(in)
	reasons := map[string]string{}
	for _, pr := range problems {
		reasons[pr.Ingress.Name] += pr.Reason + " "
	}
	for name, want := range map[string]string{"newer": "PathConflict", "res": "UnsupportedBackend", "bad-re": "InvalidPath", "missing": "BackendNotReady"} {
		if !strings.Contains(reasons[name], want) {
			t.Errorf("%s: problems %q, want %s", name, reasons[name], want)
		}
	}
	for _, c := range []struct{ host, path, want string }{
		{"foo.com", "/", "old"},    // oldest Ingress keeps the path
		{"foo.com", "/new", "new"}, // the newer one's other paths still serve
		{"res.com", "/", "svc"},    // the rest of an Ingress with a resource backend
		{"res.com", "/bucket", "svc"},
		{"re.com", "/OK/x", "ok"}, // regexes are case-insensitive as in nginx
		{"re.com", "/(unclosed", "404"},
		{"missing.com", "/", "gone"}, // routed; answers 503
	} {
		if got := target(tb.Match(c.host, c.path)); got != c.want {
			t.Errorf("%s%s: got %s, want %s", c.host, c.path, got, c.want)
		}
	}
	if r := tb.Match("missing.com", "/"); r.backend.unavailable == "" {
		t.Error("missing service has no 503 reason")
	}
}

func TestBackendPortsAndEndpoints(t *testing.T) {
	i := ing("x", 0, "", p(prefix, "/num", "svc"), p(prefix, "/name", "svc"))
	i.Spec.Rules[0].HTTP.Paths[1].Backend.Service.Port = networkingv1.ServiceBackendPort{Name: "admin"}
	in := input(i)
	id := types.NamespacedName{Namespace: "default", Name: "svc"}
	in.Services[id].Spec.Ports = []corev1.ServicePort{{Name: "http", Port: 80}, {Name: "admin", Port: 9000, AppProtocol: ptr.To(appProtocolH2C)}}
	in.Slices[id] = []*discoveryv1.EndpointSlice{{
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080)}, {Name: ptr.To("admin"), Port: ptr.To[int32](9090)}},
		Endpoints: []discoveryv1.Endpoint{
			{Addresses: []string{"10.0.0.1"}},
			{Addresses: []string{"10.0.0.2"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(false)}},
			{Addresses: []string{"10.0.0.3"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}},
		},
	}}
	tb, problems := newBuilder().build(in)
	if len(problems) != 0 {
		t.Fatal(problems)
	}
	addrs := func(r *route) []string {
		var out []string
		for _, e := range *r.backend.pool.eps.Load() {
			out = append(out, e.addr)
		}
		return out
	}
	if got := fmt.Sprint(addrs(tb.Match("h", "/num"))); got != "[10.0.0.1:8080 10.0.0.3:8080]" {
		t.Errorf("by number: %s", got)
	}
	r := tb.Match("h", "/name")
	if got := fmt.Sprint(addrs(r)); got != "[10.0.0.1:9090 10.0.0.3:9090]" {
		t.Errorf("by name: %s", got)
	}
	if !r.backend.h2c {
		t.Error("appProtocol kubernetes.io/h2c not seen")
	}
	// Only not-ready endpoints that still serve (terminating) are a last resort.
	in.Slices[id][0].Endpoints = []discoveryv1.Endpoint{
		{Addresses: []string{"10.0.0.4"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(false), Serving: ptr.To(true), Terminating: ptr.To(true)}},
		{Addresses: []string{"10.0.0.5"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(false)}},
	}
	tb, _ = newBuilder().build(in)
	if got := fmt.Sprint(addrs(tb.Match("h", "/num"))); got != "[10.0.0.4:8080]" {
		t.Errorf("serving-terminating fallback: %s", got)
	}
	// A port the service lacks routes to a 503 with a reason.
	i.Spec.Rules[0].HTTP.Paths[0].Backend.Service.Port.Number = 81
	tb, problems = newBuilder().build(in)
	if len(problems) != 1 || !strings.Contains(tb.Match("h", "/num").backend.unavailable, "no TCP port 81") {
		t.Errorf("missing port: %v", problems)
	}
}

func TestPoolRoundRobinAndEjection(t *testing.T) {
	var p pool
	p.set([]string{"a", "b", "c"})
	seen := map[string]int{}
	for range 30 {
		seen[p.pick(nil, false).addr]++
	}
	if seen["a"] != 10 || seen["b"] != 10 || seen["c"] != 10 {
		t.Fatalf("round robin: %v", seen)
	}
	eps := *p.eps.Load()
	eps[1].fail()
	for range 20 {
		if e := p.pick(nil, false); e.addr == "b" {
			t.Fatal("ejected endpoint picked")
		}
	}
	// State survives an update that keeps the address.
	p.set([]string{"a", "b", "d"})
	for range 20 {
		if e := p.pick(nil, false); e.addr == "b" {
			t.Fatal("ejection lost on update")
		}
	}
	// Tried endpoints are skipped; when all untried are ejected, the one
	// ejected first is still tried; when all were tried, nil.
	eps = *p.eps.Load()
	eps[0].fail()
	eps[2].fail()
	if e := p.pick([]*endpoint{eps[0]}, false); e == nil || e.addr == "a" {
		t.Fatalf("all ejected: %v", e)
	}
	if e := p.pick(eps, false); e != nil {
		t.Fatalf("all tried: %v", e.addr)
	}
	eps[1].ok()
	if e := p.pick(nil, false); e.addr != "b" {
		t.Fatalf("recovered endpoint not picked: %s", e.addr)
	}
}

// TestPoolLeastRequest: the endpoint with the fewest requests in flight
// wins, ties go round-robin, ejected and tried endpoints are skipped.
func TestPoolLeastRequest(t *testing.T) {
	var p pool
	p.set([]string{"a", "b", "c"})
	eps := *p.eps.Load()
	seen := map[string]int{}
	for range 30 {
		seen[p.pick(nil, true).addr]++
	}
	if seen["a"] != 10 || seen["b"] != 10 || seen["c"] != 10 {
		t.Fatalf("ties are not round-robin: %v", seen)
	}
	eps[0].active.Store(3)
	eps[1].active.Store(1)
	eps[2].active.Store(2)
	for range 10 {
		if e := p.pick(nil, true); e.addr != "b" {
			t.Fatalf("picked %s with %d in flight, want b with 1", e.addr, e.active.Load())
		}
	}
	if e := p.pick([]*endpoint{eps[1]}, true); e.addr != "c" {
		t.Fatalf("tried endpoint skipped: picked %s, want c", e.addr)
	}
	eps[1].fail()
	if e := p.pick(nil, true); e.addr != "c" {
		t.Fatalf("ejected endpoint skipped: picked %s, want c", e.addr)
	}
	// Round-robin ignores the counts: a, with the most in flight, is picked.
	seen = map[string]int{}
	for range 30 {
		seen[p.pick(nil, false).addr]++
	}
	if seen["a"] == 0 || seen["b"] != 0 || seen["a"]+seen["c"] != 30 {
		t.Fatalf("round robin with b ejected: %v", seen)
	}
}

func TestHtpasswd(t *testing.T) {
	// openssl passwd -apr1 -salt rsTkZ1uM secret
	for hash, ok := range map[string]bool{
		"$apr1$rsTkZ1uM$yW.Y41cifHnyxsO0iCZBe/": true,
		"$apr1$rsTkZ1uM$yW.Y41cifHnyxsO0iCZBe0": false,
		"{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=":     true, // printf secret | sha1sum | base64
		"plain-secret":                          false,
	} {
		if got := checkHtpasswd(hash, "secret"); got != ok {
			t.Errorf("%s: %v", hash, got)
		}
	}
}
