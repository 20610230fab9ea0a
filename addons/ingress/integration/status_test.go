package integration_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/skiffhq/skiff/addons/ingress"
	"github.com/skiffhq/skiff/internal/testserver"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
)

// TestStatusReleased: status.loadBalancer is cleared when an Ingress
// stops being ours — another class, the legacy annotation changed, the
// default-class claim gone — but only when it holds the addresses we
// wrote: a status another controller wrote is left alone, also when it
// names the same addresses, and a released Ingress is not fought over.
// A second ingress process (no memory of what the first wrote) clears
// our addresses from an Ingress nobody claims any more and leaves one
// that another class claims.
func TestStatusReleased(t *testing.T) {
	ts := testserver.Start(t) // no ingress in the server: ours runs as `skiff ingress`
	ctx := context.Background()
	cs := ts.Client
	rc := rest.CopyConfig(ts.Config)
	rc.Impersonate = rest.ImpersonationConfig{UserName: "system:skiff-ingress"}
	icl := kubernetes.NewForConfigOrDie(rc)
	ours := []networkingv1.IngressLoadBalancerIngress{{IP: "127.0.0.1"}}
	theirs := []networkingv1.IngressLoadBalancerIngress{{IP: "198.51.100.7"}}

	// run starts an ingress process publishing 127.0.0.1; stop ends it.
	run := func() (stop func()) {
		ing, err := ingress.New(ingress.Options{
			Client:           icl,
			HTTPAddr:         "127.0.0.1:0",
			PublishAddresses: []string{"127.0.0.1"},
			Logger:           slog.New(slog.NewTextHandler(io.Discard, nil)),
		})
		if err != nil {
			t.Fatal(err)
		}
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- ing.Run(runCtx) }()
		waitFor(t, 30*time.Second, "ingress ready", func() (bool, string) { return ing.Ready(), "" })
		return func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		}
	}
	class := func(name, controller string, isDefault bool) {
		ann := map[string]string{}
		if isDefault {
			ann["ingressclass.kubernetes.io/is-default-class"] = "true"
		}
		if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			c, err := cs.NetworkingV1().IngressClasses().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				_, err = cs.NetworkingV1().IngressClasses().Create(ctx, &networkingv1.IngressClass{
					ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: ann},
					Spec:       networkingv1.IngressClassSpec{Controller: controller},
				}, metav1.CreateOptions{})
				return err
			}
			c.Annotations = ann
			_, err = cs.NetworkingV1().IngressClasses().Update(ctx, c, metav1.UpdateOptions{})
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	create := func(name string, className *string, ann map[string]string) {
		if _, err := cs.NetworkingV1().Ingresses("default").Create(ctx, &networkingv1.Ingress{
			ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: ann},
			Spec: networkingv1.IngressSpec{IngressClassName: className,
				Rules: []networkingv1.IngressRule{rule(name+".example.com", path(prefix, "/", "svc"))}},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	update := func(name string, f func(*networkingv1.Ingress)) {
		if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			i, err := cs.NetworkingV1().Ingresses("default").Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			f(i)
			_, err = cs.NetworkingV1().Ingresses("default").Update(ctx, i, metav1.UpdateOptions{})
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	// setStatus writes a status as another controller would.
	setStatus := func(name string, lb []networkingv1.IngressLoadBalancerIngress) {
		if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			i, err := cs.NetworkingV1().Ingresses("default").Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			i.Status.LoadBalancer.Ingress = lb
			_, err = cs.NetworkingV1().Ingresses("default").UpdateStatus(ctx, i, metav1.UpdateOptions{})
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	status := func(name string) []networkingv1.IngressLoadBalancerIngress {
		i, err := cs.NetworkingV1().Ingresses("default").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return i.Status.LoadBalancer.Ingress
	}
	waitStatus := func(name string, want []networkingv1.IngressLoadBalancerIngress) {
		t.Helper()
		waitFor(t, 20*time.Second, fmt.Sprintf("status of %s = %v", name, want), func() (bool, string) {
			got := status(name)
			return fmt.Sprint(got) == fmt.Sprint(want), fmt.Sprint(got)
		})
	}
	// settle waits until the ingress has handled every Ingress change
	// made so far: a new Ingress of ours gets its status from a sync that
	// saw them.
	n := 0
	settle := func() {
		t.Helper()
		n++
		name := fmt.Sprintf("sentinel-%d", n)
		create(name, ptr.To("skiff"), nil)
		waitStatus(name, ours)
	}
	keeps := func(name string, want []networkingv1.IngressLoadBalancerIngress) {
		t.Helper()
		if got := status(name); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("status of %s: %v, want it left as %v", name, got, want)
		}
	}

	class("skiff", ingress.DefaultController, false)
	class("nginx", "k8s.io/ingress-nginx", false)
	stop := run()

	create("moving", ptr.To("skiff"), nil)
	create("legacy", nil, map[string]string{"kubernetes.io/ingress.class": "skiff"})
	create("classless", nil, nil) // not ours until our class is the default
	create("theirs", ptr.To("nginx"), nil)
	create("theirs-same", ptr.To("nginx"), nil)
	setStatus("theirs", theirs)
	setStatus("theirs-same", ours) // another controller publishing the same node address
	class("skiff", ingress.DefaultController, true)
	waitStatus("moving", ours)
	waitStatus("legacy", ours)
	waitStatus("classless", ours)

	// Each way of no longer being ours clears what we wrote.
	update("moving", func(i *networkingv1.Ingress) { i.Spec.IngressClassName = ptr.To("nginx") })
	waitStatus("moving", nil)
	update("legacy", func(i *networkingv1.Ingress) { i.Annotations["kubernetes.io/ingress.class"] = "nginx" })
	waitStatus("legacy", nil)
	class("skiff", ingress.DefaultController, false)
	waitStatus("classless", nil)
	settle()
	keeps("theirs", theirs)
	keeps("theirs-same", ours)

	// The new controller writes its status (the same node address): it
	// stays.
	setStatus("moving", ours)
	settle()
	keeps("moving", ours)

	// A status another controller wrote on an Ingress that was ours.
	create("taken", ptr.To("skiff"), nil)
	waitStatus("taken", ours)
	update("taken", func(i *networkingv1.Ingress) { i.Spec.IngressClassName = ptr.To("nginx") })
	waitStatus("taken", nil)
	setStatus("taken", theirs)
	settle()
	keeps("taken", theirs)

	// Ours again: the status comes back.
	update("moving", func(i *networkingv1.Ingress) { i.Spec.IngressClassName = ptr.To("skiff") })
	setStatus("moving", nil)
	waitStatus("moving", ours)

	// Changed while no ingress ran: the next one has no memory of what
	// was written. An Ingress nobody claims that holds our addresses is
	// cleared; one another class claims is left to that controller.
	create("offline-claimed", ptr.To("skiff"), nil)
	create("offline-unclaimed", nil, map[string]string{"kubernetes.io/ingress.class": "skiff"})
	waitStatus("offline-claimed", ours)
	waitStatus("offline-unclaimed", ours)
	stop()
	update("offline-claimed", func(i *networkingv1.Ingress) { i.Spec.IngressClassName = ptr.To("nginx") })
	update("offline-unclaimed", func(i *networkingv1.Ingress) { delete(i.Annotations, "kubernetes.io/ingress.class") })
	stop = run()
	defer stop()
	waitStatus("offline-unclaimed", nil)
	settle()
	keeps("offline-claimed", ours)
	keeps("theirs", theirs)
	keeps("theirs-same", ours)
}
