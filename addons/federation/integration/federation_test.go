// Package integration runs the federation add-on against real in-process
// Skiff servers: one host and up to three members with hollow nodes, each
// member reached through a TCP proxy the test can close (a real network
// failure from federation's view).
package integration

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiffhq/skiff/addons/federation"
	"github.com/skiffhq/skiff/addons/federation/apis/v1alpha1"
	"github.com/skiffhq/skiff/internal/testserver"
	"github.com/skiffhq/skiff/nodeagent/hollow"
	"github.com/skiffhq/skiff/server"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
)

const (
	credNS = "federation-system"
	ns     = "fed"
)

// proxy forwards loopback TCP to a member's API server; Close cuts every
// connection and stops listening, Reopen listens on the same port again.
type proxy struct {
	target string
	addr   string
	mu     sync.Mutex
	ln     net.Listener
	conns  map[net.Conn]struct{}
}

func newProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{target: target, addr: ln.Addr().String(), ln: ln, conns: map[net.Conn]struct{}{}}
	go p.serve(ln)
	t.Cleanup(p.Close)
	return p
}

func (p *proxy) serve(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go p.handle(c)
	}
}

func (p *proxy) track(c net.Conn, add bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if add {
		if p.ln == nil {
			return false
		}
		p.conns[c] = struct{}{}
	} else {
		delete(p.conns, c)
	}
	return true
}

func (p *proxy) handle(c net.Conn) {
	defer c.Close()
	u, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer u.Close()
	if !p.track(c, true) || !p.track(u, true) {
		return
	}
	defer p.track(c, false)
	defer p.track(u, false)
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(u, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, u); done <- struct{}{} }()
	<-done
}

func (p *proxy) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		_ = p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		_ = c.Close()
	}
}

func (p *proxy) Reopen(t *testing.T) {
	t.Helper()
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ {
		if ln, err = net.Listen("tcp", p.addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("reopen proxy on %s: %v", p.addr, err)
	}
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go p.serve(ln)
}

// memberCluster is a started member: server, hollow nodes, proxy.
type memberCluster struct {
	name  string
	srv   *testserver.Server
	proxy *proxy
}

func startMember(ctx context.Context, t *testing.T, host *testserver.Server, name string) *memberCluster {
	t.Helper()
	s := testserver.Start(t)
	if _, err := hollow.Start(ctx, s.Config, hollow.Options{Nodes: 2, NamePrefix: name + "-node-"}); err != nil {
		t.Fatal(err)
	}
	target := strings.TrimPrefix(s.URL(), "https://")
	m := &memberCluster{name: name, srv: s, proxy: newProxy(t, target)}
	kc, err := os.ReadFile(s.Kubeconfig())
	if err != nil {
		t.Fatal(err)
	}
	createSecret(ctx, t, host, name+"-credentials", map[string][]byte{"kubeconfig": kc})
	createMember(ctx, t, host, name, "https://"+m.proxy.addr, name+"-credentials", map[string]string{v1alpha1.ZoneLabel: "zone-" + name})
	return m
}

func createSecret(ctx context.Context, t *testing.T, host *testserver.Server, name string, data map[string][]byte) {
	t.Helper()
	if _, err := host.Client.CoreV1().Secrets(credNS).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: data}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func createMember(ctx context.Context, t *testing.T, host *testserver.Server, name, endpoint, secret string, labels map[string]string) {
	t.Helper()
	mc := v1alpha1.MemberCluster{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: v1alpha1.KindMemberCluster},
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec:       v1alpha1.MemberClusterSpec{APIEndpoint: endpoint, SecretRef: &v1alpha1.SecretReference{Namespace: credNS, Name: secret}},
	}
	create(ctx, t, host, v1alpha1.MemberClusterGVR.Resource, "", mc)
}

func create(ctx context.Context, t *testing.T, host *testserver.Server, resource, namespace string, obj any) {
	t.Helper()
	u, err := v1alpha1.ToUnstructured(obj)
	if err != nil {
		t.Fatal(err)
	}
	unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
	unstructured.RemoveNestedField(u.Object, "status")
	if _, err := host.Dynamic.Resource(v1alpha1.GroupVersion.WithResource(resource)).Namespace(namespace).Create(ctx, u, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create %s: %v", resource, err)
	}
}

func eventually(t *testing.T, what string, d time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func getMember(ctx context.Context, host *testserver.Server, name string) (*v1alpha1.MemberCluster, error) {
	u, err := host.Dynamic.Resource(v1alpha1.MemberClusterGVR).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	var mc v1alpha1.MemberCluster
	return &mc, v1alpha1.FromUnstructured(u, &mc)
}

func readyCond(mc *v1alpha1.MemberCluster) metav1.Condition {
	for _, c := range mc.Status.Conditions {
		if c.Type == v1alpha1.ConditionReady {
			return c
		}
	}
	return metav1.Condition{}
}

func waitMemberReady(ctx context.Context, t *testing.T, host *testserver.Server, name string, want metav1.ConditionStatus, reason string) *v1alpha1.MemberCluster {
	t.Helper()
	var mc *v1alpha1.MemberCluster
	eventually(t, "member "+name+" Ready="+string(want)+" "+reason, 60*time.Second, func() error {
		var err error
		if mc, err = getMember(ctx, host, name); err != nil {
			return err
		}
		c := readyCond(mc)
		if c.Status != want || (reason != "" && c.Reason != reason) {
			return fmt.Errorf("Ready=%s reason %s: %s", c.Status, c.Reason, c.Message)
		}
		return nil
	})
	return mc
}

// expectReplicas waits until each named member's copy of the Deployment
// has the given spec.replicas (-1 = the member must not hold it).
func expectReplicas(ctx context.Context, t *testing.T, what string, want map[*memberCluster]int32) {
	t.Helper()
	eventually(t, what, 60*time.Second, func() error {
		var errs []string
		for m, r := range want {
			d, err := m.srv.Client.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
			switch {
			case r < 0 && apierrors.IsNotFound(err):
			case r < 0:
				errs = append(errs, fmt.Sprintf("%s still holds it (%v)", m.name, err))
			case err != nil:
				errs = append(errs, fmt.Sprintf("%s: %v", m.name, err))
			case *d.Spec.Replicas != r:
				errs = append(errs, fmt.Sprintf("%s has %d replicas, want %d", m.name, *d.Spec.Replicas, r))
			}
		}
		if len(errs) > 0 {
			return errors.New(strings.Join(errs, "; "))
		}
		return nil
	})
}

func expectHostReady(ctx context.Context, t *testing.T, host *testserver.Server, want int32) {
	t.Helper()
	eventually(t, fmt.Sprintf("host status %d ready", want), 60*time.Second, func() error {
		d, err := host.Client.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if d.Status.ReadyReplicas != want || d.Status.AvailableReplicas != want || d.Status.Replicas != want {
			return fmt.Errorf("host status %+v", d.Status)
		}
		return nil
	})
}

func TestFederation(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The host runs no deployment controller: federation writes the
	// status of federated Deployments (see README.md).
	host := testserver.Start(t, func(c *server.Config) { c.Controllers = []string{"*", "-deployment-controller"} })
	for _, n := range []string{credNS, ns} {
		if _, err := host.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: n}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	fed, err := federation.New(federation.Options{
		Config:            host.Config,
		HeartbeatInterval: 300 * time.Millisecond,
		FailureGrace:      1500 * time.Millisecond,
		RecoveryGrace:     1500 * time.Millisecond,
		MemberTimeout:     2 * time.Second,
		ResyncInterval:    500 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	fedErr := make(chan error, 1)
	fedStopped := make(chan struct{})
	fctx, fcancel := context.WithCancel(ctx)
	go func() {
		defer close(fedStopped)
		fedErr <- fed.Run(fctx)
	}()
	t.Cleanup(func() {
		fcancel()
		<-fedStopped
	})
	eventually(t, "federation ready", 30*time.Second, func() error {
		select {
		case err := <-fedErr:
			t.Fatalf("federation stopped: %v", err)
		default:
		}
		if !fed.Ready() {
			return errors.New("not ready")
		}
		return nil
	})

	m1 := startMember(ctx, t, host, "m1")
	m2 := startMember(ctx, t, host, "m2")
	for _, m := range []*memberCluster{m1, m2} {
		mc := waitMemberReady(ctx, t, host, m.name, metav1.ConditionTrue, "Healthy")
		if mc.Status.KubernetesVersion == "" || mc.Status.Nodes == nil || mc.Status.Nodes.Ready != 2 || mc.Status.LastHeartbeatTime == nil {
			t.Fatalf("member %s status incomplete: %+v", m.name, mc.Status)
		}
		if cpu := mc.Status.Allocatable[corev1.ResourceCPU]; cpu.Value() != 8 {
			t.Fatalf("member %s allocatable cpu %s, want 8 (2 hollow nodes of 4)", m.name, cpu.String())
		}
	}

	// A ConfigMap the Deployment needs, a policy dividing it with an
	// image override for m2, and the Deployment.
	if _, err := host.Client.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "web-config"}, Data: map[string]string{"k": "v"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	create(ctx, t, host, "propagationpolicies", ns, v1alpha1.PropagationPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: v1alpha1.KindPropagation},
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
		Spec: v1alpha1.PropagationSpec{
			ResourceSelectors: []v1alpha1.ResourceSelector{{APIVersion: "apps/v1", Kind: "Deployment", Name: "web"}},
			ReplicaScheduling: &v1alpha1.ReplicaScheduling{Type: v1alpha1.ReplicaDivided},
			Overrides:         []v1alpha1.ClusterOverride{{ClusterNames: []string{"m2"}, ImageOverrider: []v1alpha1.ImageOverride{{ContainerName: "web", Image: "registry.m2.example/web:2"}}}},
		},
	})
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns}, Spec: appsv1.DeploymentSpec{
		Replicas: ptr.To[int32](6),
		Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}}, Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "web", Image: "web:1", EnvFrom: []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "web-config"}}}}}}}},
	}}
	if _, err := host.Client.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	t.Run("divided 3/3 with override, dependency and summed status", func(t *testing.T) {
		expectReplicas(ctx, t, "3/3", map[*memberCluster]int32{m1: 3, m2: 3})
		for _, m := range []*memberCluster{m1, m2} {
			d, err := m.srv.Client.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			want := "web:1"
			if m == m2 {
				want = "registry.m2.example/web:2"
			}
			if img := d.Spec.Template.Spec.Containers[0].Image; img != want {
				t.Errorf("%s image %s, want %s", m.name, img, want)
			}
			if d.Annotations[v1alpha1.ManagedByAnnotation] != v1alpha1.ManagedByValue {
				t.Errorf("%s copy lacks the ownership annotation: %v", m.name, d.Annotations)
			}
			cm, err := m.srv.Client.CoreV1().ConfigMaps(ns).Get(ctx, "web-config", metav1.GetOptions{})
			if err != nil || cm.Data["k"] != "v" {
				t.Errorf("%s: dependency ConfigMap not propagated: %v %v", m.name, cm, err)
			}
		}
		expectHostReady(ctx, t, host, 6)
	})

	m3 := startMember(ctx, t, host, "m3")
	t.Run("third member joins: 2/2/2", func(t *testing.T) {
		waitMemberReady(ctx, t, host, "m3", metav1.ConditionTrue, "Healthy")
		expectReplicas(ctx, t, "2/2/2", map[*memberCluster]int32{m1: 2, m2: 2, m3: 2})
		expectHostReady(ctx, t, host, 6)
		eventually(t, "binding lists three members", 30*time.Second, func() error {
			u, err := host.Dynamic.Resource(v1alpha1.ResourceBindingGVR).Namespace(ns).Get(ctx, "web-deployment", metav1.GetOptions{})
			if err != nil {
				return err
			}
			var rb v1alpha1.ResourceBinding
			if err := v1alpha1.FromUnstructured(u, &rb); err != nil {
				return err
			}
			if len(rb.Spec.Clusters) != 3 || len(rb.Status.Members) != 3 || rb.Spec.Policy.Name != "web" {
				return fmt.Errorf("binding %+v", rb)
			}
			for _, st := range rb.Status.Members {
				if !st.Applied || st.Status["readyReplicas"] == nil {
					return fmt.Errorf("member status %+v", st)
				}
			}
			return nil
		})
	})

	t.Run("member dies: replicas move, nothing deleted on it; it returns", func(t *testing.T) {
		m2.proxy.Close()
		mc := waitMemberReady(ctx, t, host, "m2", metav1.ConditionFalse, "Unreachable")
		tainted := false
		for _, tn := range mc.Spec.Taints {
			tainted = tainted || (tn.Key == v1alpha1.NotReadyTaintKey && tn.Effect == corev1.TaintEffectNoExecute)
		}
		if !tainted {
			t.Fatalf("NotReady member not tainted: %+v", mc.Spec.Taints)
		}
		expectReplicas(ctx, t, "3/3 over the living, m2 untouched", map[*memberCluster]int32{m1: 3, m3: 3, m2: 2})
		expectHostReady(ctx, t, host, 6)
		// m2 still holds its copy (read directly, not through the proxy).
		if d, err := m2.srv.Client.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{}); err != nil || *d.Spec.Replicas != 2 {
			t.Fatalf("unreachable member's copy changed: %v %v", d, err)
		}
		m2.proxy.Reopen(t)
		waitMemberReady(ctx, t, host, "m2", metav1.ConditionTrue, "Healthy")
		expectReplicas(ctx, t, "2/2/2 after the return", map[*memberCluster]int32{m1: 2, m2: 2, m3: 2})
		mc, err := getMember(ctx, host, "m2")
		if err != nil {
			t.Fatal(err)
		}
		for _, tn := range mc.Spec.Taints {
			if tn.Key == v1alpha1.NotReadyTaintKey {
				t.Fatalf("taint not removed after recovery: %+v", mc.Spec.Taints)
			}
		}
		expectHostReady(ctx, t, host, 6)
	})

	t.Run("bad members get conditions and block no one", func(t *testing.T) {
		ca := host.Config.CAData // another cluster's CA, from m1's view
		m1CA := m1.srv.Config.CAData
		createSecret(ctx, t, host, "wrong-ca", map[string][]byte{"token": []byte("x"), "ca.crt": ca})
		createMember(ctx, t, host, "bad-ca", "https://"+m1.proxy.addr, "wrong-ca", nil)
		createSecret(ctx, t, host, "wrong-token", map[string][]byte{"token": []byte("not-a-token"), "ca.crt": m1CA})
		createMember(ctx, t, host, "bad-token", "https://"+m1.proxy.addr, "wrong-token", nil)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		closed := ln.Addr().String()
		ln.Close()
		createMember(ctx, t, host, "unreachable", "https://"+closed, "wrong-token", nil)
		createMember(ctx, t, host, "no-secret", "https://"+m1.proxy.addr, "missing", nil)
		waitMemberReady(ctx, t, host, "bad-ca", metav1.ConditionFalse, "TLSError")
		waitMemberReady(ctx, t, host, "bad-token", metav1.ConditionFalse, "Unauthorized")
		waitMemberReady(ctx, t, host, "unreachable", metav1.ConditionFalse, "Unreachable")
		waitMemberReady(ctx, t, host, "no-secret", metav1.ConditionFalse, "CredentialsInvalid")
		// The good members keep their division and their status.
		expectReplicas(ctx, t, "2/2/2 with bad members around", map[*memberCluster]int32{m1: 2, m2: 2, m3: 2})
		waitMemberReady(ctx, t, host, "m1", metav1.ConditionTrue, "Healthy")
	})

	t.Run("policy conditions: no match, superseded, conflict", func(t *testing.T) {
		create(ctx, t, host, "propagationpolicies", ns, v1alpha1.PropagationPolicy{
			TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: v1alpha1.KindPropagation},
			ObjectMeta: metav1.ObjectMeta{Name: "nothing", Namespace: ns},
			Spec:       v1alpha1.PropagationSpec{ResourceSelectors: []v1alpha1.ResourceSelector{{APIVersion: "apps/v1", Kind: "Deployment", Name: "nope"}}},
		})
		create(ctx, t, host, "clusterpropagationpolicies", "", v1alpha1.PropagationPolicy{
			TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: v1alpha1.KindClusterPropagat},
			ObjectMeta: metav1.ObjectMeta{Name: "all-deployments"},
			Spec: v1alpha1.PropagationSpec{ResourceSelectors: []v1alpha1.ResourceSelector{{APIVersion: "apps/v1", Kind: "Deployment"}},
				Placement: v1alpha1.Placement{ClusterNames: []string{"m1"}}},
		})
		// A ConfigMap on m1 not made by federation, and a host one placed there.
		if _, err := m1.srv.Client.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "theirs"}, Data: map[string]string{"owner": "m1"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := host.Client.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "theirs"}, Data: map[string]string{"owner": "host"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		create(ctx, t, host, "propagationpolicies", ns, v1alpha1.PropagationPolicy{
			TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: v1alpha1.KindPropagation},
			ObjectMeta: metav1.ObjectMeta{Name: "theirs", Namespace: ns},
			Spec: v1alpha1.PropagationSpec{ResourceSelectors: []v1alpha1.ResourceSelector{{APIVersion: "v1", Kind: "ConfigMap", Name: "theirs"}},
				Placement: v1alpha1.Placement{ClusterNames: []string{"m1"}}},
		})
		policyCond := func(resource, namespace, name, reason string) {
			t.Helper()
			eventually(t, name+" "+reason, 30*time.Second, func() error {
				u, err := host.Dynamic.Resource(v1alpha1.GroupVersion.WithResource(resource)).Namespace(namespace).Get(ctx, name, metav1.GetOptions{})
				if err != nil {
					return err
				}
				var pp v1alpha1.PropagationPolicy
				if err := v1alpha1.FromUnstructured(u, &pp); err != nil {
					return err
				}
				for _, c := range pp.Status.Conditions {
					if c.Type == v1alpha1.ConditionMatched && c.Reason == reason {
						return nil
					}
				}
				return fmt.Errorf("conditions %+v", pp.Status.Conditions)
			})
		}
		policyCond("propagationpolicies", ns, "nothing", "NoMatch")
		policyCond("clusterpropagationpolicies", "", "all-deployments", "Superseded")
		policyCond("propagationpolicies", ns, "web", "Matched")
		eventually(t, "conflict reported", 30*time.Second, func() error {
			u, err := host.Dynamic.Resource(v1alpha1.ResourceBindingGVR).Namespace(ns).Get(ctx, "theirs-configmap", metav1.GetOptions{})
			if err != nil {
				return err
			}
			var rb v1alpha1.ResourceBinding
			if err := v1alpha1.FromUnstructured(u, &rb); err != nil {
				return err
			}
			for _, c := range rb.Status.Conditions {
				if c.Type == v1alpha1.ConditionConflict && c.Status == metav1.ConditionTrue {
					return nil
				}
			}
			return fmt.Errorf("conditions %+v", rb.Status.Conditions)
		})
		eventually(t, "Warning event on the host object", 30*time.Second, func() error {
			evs, err := host.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				return err
			}
			for _, e := range evs.Items {
				if e.InvolvedObject.Kind == "ConfigMap" && e.InvolvedObject.Name == "theirs" && e.Reason == "MemberConflict" && e.Type == corev1.EventTypeWarning {
					return nil
				}
			}
			return fmt.Errorf("no MemberConflict event among %d", len(evs.Items))
		})
		cm, err := m1.srv.Client.CoreV1().ConfigMaps(ns).Get(ctx, "theirs", metav1.GetOptions{})
		if err != nil || cm.Data["owner"] != "m1" {
			t.Fatalf("an object federation did not make was overwritten: %v %v", cm, err)
		}
		// The overlapping cluster policy did not move web to m1 alone.
		expectReplicas(ctx, t, "2/2/2 under the more specific policy", map[*memberCluster]int32{m1: 2, m2: 2, m3: 2})
	})

	t.Run("a member leaving placement loses its copy and dependency", func(t *testing.T) {
		setNames := func(names []any) {
			t.Helper()
			api := host.Dynamic.Resource(v1alpha1.PropagationPolicyGVR).Namespace(ns)
			eventually(t, "update policy web", 30*time.Second, func() error {
				u, err := api.Get(ctx, "web", metav1.GetOptions{})
				if err != nil {
					return err
				}
				if names == nil {
					unstructured.RemoveNestedField(u.Object, "spec", "placement", "clusterNames")
				} else if err := unstructured.SetNestedSlice(u.Object, names, "spec", "placement", "clusterNames"); err != nil {
					return err
				}
				_, err = api.Update(ctx, u, metav1.UpdateOptions{})
				return err
			})
		}
		setNames([]any{"m1", "m3"})
		expectReplicas(ctx, t, "m2 left placement", map[*memberCluster]int32{m1: 3, m3: 3, m2: -1})
		eventually(t, "m2's dependency copy released", 30*time.Second, func() error {
			if _, err := m2.srv.Client.CoreV1().ConfigMaps(ns).Get(ctx, "web-config", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				return fmt.Errorf("web-config still on m2 (%v)", err)
			}
			return nil
		})
		setNames(nil)
		expectReplicas(ctx, t, "back to 2/2/2", map[*memberCluster]int32{m1: 2, m2: 2, m3: 2})
	})

	t.Run("credentials stay behind RBAC on the Secret", func(t *testing.T) {
		_, err := host.Client.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "federation-viewer"},
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{v1alpha1.Group}, Resources: []string{"*"}, Verbs: []string{"get", "list", "watch"}}}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		_, err = host.Client.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "federation-viewer-alice"},
			RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "federation-viewer"},
			Subjects: []rbacv1.Subject{{Kind: "User", APIGroup: "rbac.authorization.k8s.io", Name: "alice"}}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		rc := rest.CopyConfig(host.Config)
		rc.Impersonate = rest.ImpersonationConfig{UserName: "alice"}
		alice, err := kubernetes.NewForConfig(rc)
		if err != nil {
			t.Fatal(err)
		}
		var raw []byte
		eventually(t, "alice reads MemberClusters", 30*time.Second, func() error {
			raw, err = alice.RESTClient().Get().AbsPath("/apis", v1alpha1.Group, v1alpha1.Version, "memberclusters").DoRaw(ctx)
			return err
		})
		if _, err := alice.CoreV1().Secrets(credNS).Get(ctx, "m1-credentials", metav1.GetOptions{}); !apierrors.IsForbidden(err) {
			t.Fatalf("alice reading the credentials Secret: %v, want Forbidden", err)
		}
		if _, err := alice.CoreV1().Secrets(credNS).List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
			t.Fatalf("alice listing Secrets: %v, want Forbidden", err)
		}
		sec, err := host.Client.CoreV1().Secrets(credNS).Get(ctx, "m1-credentials", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		kc := string(sec.Data["kubeconfig"])
		var secrets []string
		for _, line := range strings.Split(kc, "\n") {
			if _, v, ok := strings.Cut(strings.TrimSpace(line), "client-key-data: "); ok {
				secrets = append(secrets, v)
			}
			if _, v, ok := strings.Cut(strings.TrimSpace(line), "client-certificate-data: "); ok {
				secrets = append(secrets, v)
			}
		}
		secrets = append(secrets, base64.StdEncoding.EncodeToString(sec.Data["kubeconfig"])[:40], "not-a-token", "PRIVATE KEY")
		if len(secrets) < 4 {
			t.Fatalf("kubeconfig without client key data? %d secrets found", len(secrets))
		}
		var list struct{ Items []json.RawMessage }
		if err := json.Unmarshal(raw, &list); err != nil || len(list.Items) < 3 {
			t.Fatalf("member list: %v (%d items)", err, len(list.Items))
		}
		for _, s := range secrets {
			if strings.Contains(string(raw), s) {
				t.Fatalf("MemberCluster list shows credentials (%.20s...)", s)
			}
		}
	})

	t.Run("services are duplicated with member-allocated ClusterIPs and kept in step", func(t *testing.T) {
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns}, Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "web"}, Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}
		if _, err := host.Client.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		create(ctx, t, host, "propagationpolicies", ns, v1alpha1.PropagationPolicy{
			TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: v1alpha1.KindPropagation},
			ObjectMeta: metav1.ObjectMeta{Name: "svc", Namespace: ns},
			Spec:       v1alpha1.PropagationSpec{ResourceSelectors: []v1alpha1.ResourceSelector{{APIVersion: "v1", Kind: "Service", Name: "web"}}},
		})
		check := func(label string) {
			t.Helper()
			eventually(t, "service on every member with label "+label, 30*time.Second, func() error {
				for _, m := range []*memberCluster{m1, m2, m3} {
					s, err := m.srv.Client.CoreV1().Services(ns).Get(ctx, "web", metav1.GetOptions{})
					if err != nil {
						return fmt.Errorf("%s: %w", m.name, err)
					}
					if s.Spec.ClusterIP == "" || s.Annotations[v1alpha1.ManagedByAnnotation] != v1alpha1.ManagedByValue || s.Labels["tier"] != label {
						return fmt.Errorf("%s: clusterIP %q labels %v", m.name, s.Spec.ClusterIP, s.Labels)
					}
				}
				return nil
			})
		}
		check("")
		cur, err := host.Client.CoreV1().Services(ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cur.Labels = map[string]string{"tier": "front"}
		if _, err := host.Client.CoreV1().Services(ns).Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		check("front")
	})

	t.Run("deleting on the host cleans every member", func(t *testing.T) {
		if err := host.Client.AppsV1().Deployments(ns).Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		expectReplicas(ctx, t, "gone everywhere", map[*memberCluster]int32{m1: -1, m2: -1, m3: -1})
		eventually(t, "dependency ConfigMaps removed", 30*time.Second, func() error {
			for _, m := range []*memberCluster{m1, m2, m3} {
				if _, err := m.srv.Client.CoreV1().ConfigMaps(ns).Get(ctx, "web-config", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
					return fmt.Errorf("%s still has web-config (%v)", m.name, err)
				}
			}
			return nil
		})
		eventually(t, "host Deployment gone (finalizer released)", 30*time.Second, func() error {
			if _, err := host.Client.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				return fmt.Errorf("still there: %v", err)
			}
			return nil
		})
		if _, err := host.Client.CoreV1().ConfigMaps(ns).Get(ctx, "web-config", metav1.GetOptions{}); err != nil {
			t.Fatalf("the host's own ConfigMap must stay: %v", err)
		}
	})
}
