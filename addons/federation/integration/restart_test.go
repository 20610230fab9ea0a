package integration

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/skiffhq/skiff/addons/federation"
	"github.com/skiffhq/skiff/addons/federation/apis/v1alpha1"
	"github.com/skiffhq/skiff/internal/testserver"
	"github.com/skiffhq/skiff/server"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// run runs fed until the returned stop is called; stop returns Run's
// error.
func run(ctx context.Context, t *testing.T, fed *federation.Controller) (stop func() error) {
	t.Helper()
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- fed.Run(rctx) }()
	eventually(t, "federation ready", 30*time.Second, func() error {
		select {
		case err := <-done:
			t.Fatalf("federation stopped: %v", err)
		default:
		}
		if !fed.Ready() {
			return errors.New("not ready")
		}
		return nil
	})
	var stopped bool
	stop = func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(30 * time.Second):
			t.Fatal("federation did not stop within 30s")
			return nil
		}
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

// gauge returns the value of the series name{label=value} in reg, and
// whether it is there.
func gauge(t *testing.T, reg *prometheus.Registry, name, label, value string) (float64, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					if m.GetGauge() != nil {
						return m.GetGauge().GetValue(), true
					}
					return m.GetCounter().GetValue(), true
				}
			}
		}
	}
	return 0, false
}

func heartbeat(ctx context.Context, t *testing.T, host *testserver.Server, name string) time.Time {
	t.Helper()
	mc, err := getMember(ctx, host, name)
	if err != nil {
		t.Fatal(err)
	}
	if mc.Status.LastHeartbeatTime == nil {
		return time.Time{}
	}
	return mc.Status.LastHeartbeatTime.Time
}

// TestFederationRestart runs one Controller, stops it, runs it again in
// the same process (as a server that loses and regains its Lease does),
// then builds a second Controller on the same metrics registry (as a
// server building the add-on anew would): each run checks its members,
// places objects and reports its metrics; a stopped one does neither and
// drops its member gauges; overlapping Runs are refused; a new
// Controller takes member health over from the stored status.
func TestFederationRestart(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	host := testserver.Start(t, func(c *server.Config) { c.Controllers = []string{"*", "-deployment-controller"} })
	for _, n := range []string{credNS, ns} {
		if _, err := host.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: n}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	reg := prometheus.NewRegistry()
	opts := federation.Options{
		Config:            host.Config,
		HeartbeatInterval: 300 * time.Millisecond,
		FailureGrace:      1500 * time.Millisecond,
		RecoveryGrace:     1500 * time.Millisecond,
		MemberTimeout:     2 * time.Second,
		ResyncInterval:    500 * time.Millisecond,
		Registerer:        reg,
	}
	fed, err := federation.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	const memberReady = "skiff_federation_member_ready"
	gaugeIs := func(want float64) func() error {
		return func() error {
			if v, ok := gauge(t, reg, memberReady, "member", "m1"); !ok || v != want {
				return fmt.Errorf("%s{member=m1} = %v (present %v), want %v", memberReady, v, ok, want)
			}
			return nil
		}
	}

	// First run: the member becomes Ready and its gauge says so.
	stop := run(ctx, t, fed)
	m1 := startMember(ctx, t, host, "m1")
	waitMemberReady(ctx, t, host, "m1", metav1.ConditionTrue, "Healthy")
	eventually(t, "member gauge 1 in the first run", 10*time.Second, gaugeIs(1))
	rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
	err = fed.Run(rctx)
	rcancel()
	if !errors.Is(err, federation.ErrRunning) {
		t.Fatalf("a second, overlapping Run returned %v, want ErrRunning", err)
	}
	if !fed.Ready() {
		t.Fatal("the refused Run disturbed the running one")
	}

	// Stopped: not ready, no gauge for the member, no more heartbeats.
	if err := stop(); err != nil {
		t.Fatalf("first run: %v", err)
	}
	if fed.Ready() {
		t.Fatal("ready after Run returned")
	}
	if _, ok := gauge(t, reg, memberReady, "member", "m1"); ok {
		t.Error("the stopped controller still reports the member's readiness")
	}
	hb := heartbeat(ctx, t, host, "m1")
	time.Sleep(1500 * time.Millisecond) // five heartbeat intervals
	if now := heartbeat(ctx, t, host, "m1"); !now.Equal(hb) {
		t.Fatalf("heartbeat written after the controller stopped (%v, then %v)", hb, now)
	}

	// Second run of the same Controller: heartbeats resume, the gauge
	// is back, and a Deployment created now is placed on the member.
	stop = run(ctx, t, fed)
	eventually(t, "heartbeat in the second run", 20*time.Second, func() error {
		if now := heartbeat(ctx, t, host, "m1"); !now.After(hb) {
			return fmt.Errorf("last heartbeat %v", now)
		}
		return nil
	})
	eventually(t, "member gauge 1 in the second run", 10*time.Second, gaugeIs(1))
	create(ctx, t, host, "propagationpolicies", ns, v1alpha1.PropagationPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: v1alpha1.KindPropagation},
		ObjectMeta: metav1.ObjectMeta{Name: "deployments", Namespace: ns},
		Spec: v1alpha1.PropagationSpec{
			ResourceSelectors: []v1alpha1.ResourceSelector{{APIVersion: "apps/v1", Kind: "Deployment"}},
			Placement:         v1alpha1.Placement{ClusterNames: []string{"m1"}},
		},
	})
	placed := func(name string) func() error {
		return func() error {
			_, err := m1.srv.Client.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
			return err
		}
	}
	if _, err := host.Client.AppsV1().Deployments(ns).Create(ctx, envFromDeployment("after-restart"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a Deployment placed by the second run", 30*time.Second, placed("after-restart"))
	// Counted once the reconcile that placed it returns.
	eventually(t, "reconciles counted in the second run", 10*time.Second, func() error {
		if v, ok := gauge(t, reg, "skiff_federation_reconciles_total", "result", "ok"); !ok || v == 0 {
			return fmt.Errorf("reconciles_total{result=ok} = %v (present %v) after the second run placed a Deployment", v, ok)
		}
		return nil
	})
	if err := stop(); err != nil {
		t.Fatalf("second run: %v", err)
	}

	// A new Controller on the same registry: New succeeds and its series
	// are the ones gathered.
	fed2, err := federation.New(opts)
	if err != nil {
		t.Fatalf("a second Controller on the same registry: %v", err)
	}
	stop = run(ctx, t, fed2)
	eventually(t, "member gauge 1 from the second Controller", 20*time.Second, gaugeIs(1))
	if _, err := host.Client.AppsV1().Deployments(ns).Create(ctx, envFromDeployment("second-controller"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a Deployment placed by the second Controller", 30*time.Second, placed("second-controller"))
	if err := stop(); err != nil {
		t.Fatalf("second Controller: %v", err)
	}

	// A new holder takes the member's health over from its stored status
	// rather than starting blank: with the member now unreachable, its
	// first failed checks leave it Ready (reason Unreachable) for the
	// failure grace instead of marking it NotReady at once.
	m1.proxy.Close()
	slow := opts
	slow.FailureGrace = time.Minute
	fed3, err := federation.New(slow)
	if err != nil {
		t.Fatal(err)
	}
	stop = run(ctx, t, fed3)
	eventually(t, "the third Controller's first failed check", 20*time.Second, func() error {
		mc, err := getMember(ctx, host, "m1")
		if err != nil {
			return err
		}
		c := readyCond(mc)
		if c.Reason != "Unreachable" {
			return fmt.Errorf("Ready=%s reason %s: %s", c.Status, c.Reason, c.Message)
		}
		if c.Status != metav1.ConditionTrue {
			t.Fatalf("a Ready member was marked NotReady on a new controller's first failed check (failure grace skipped): %s", c.Message)
		}
		return nil
	})
	if err := stop(); err != nil {
		t.Fatalf("third Controller: %v", err)
	}
}
