package kubernetesservice_test

import (
	"context"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/skiffhq/skiff/internal/testserver"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestKubernetesService(t *testing.T) {
	s := testserver.Start(t)
	cs := s.Client
	ctx := context.Background()
	u, _ := url.Parse(s.URL())
	port, _ := strconv.Atoi(u.Port())

	check := func() string {
		svc, err := cs.CoreV1().Services("default").Get(ctx, "kubernetes", metav1.GetOptions{})
		if err != nil {
			return err.Error()
		}
		if svc.Spec.ClusterIP != "10.43.0.1" || len(svc.Spec.ClusterIPs) != 1 || svc.Spec.ClusterIPs[0] != "10.43.0.1" {
			return "clusterIP " + svc.Spec.ClusterIP
		}
		if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Name != "https" || svc.Spec.Ports[0].Port != 443 ||
			svc.Spec.Ports[0].TargetPort.IntValue() != port || svc.Spec.Type != corev1.ServiceTypeClusterIP {
			return "ports " + svc.Spec.String()
		}
		ep, err := cs.CoreV1().Endpoints("default").Get(ctx, "kubernetes", metav1.GetOptions{})
		if err != nil {
			return err.Error()
		}
		if len(ep.Subsets) != 1 || len(ep.Subsets[0].Addresses) != 1 || ep.Subsets[0].Addresses[0].IP != "127.0.0.1" ||
			len(ep.Subsets[0].Ports) != 1 || ep.Subsets[0].Ports[0].Port != int32(port) || ep.Subsets[0].Ports[0].Name != "https" {
			return "endpoints " + ep.String()
		}
		sl, err := cs.DiscoveryV1().EndpointSlices("default").Get(ctx, "kubernetes", metav1.GetOptions{})
		if err != nil {
			return err.Error()
		}
		if sl.Labels[discoveryv1.LabelServiceName] != "kubernetes" || sl.AddressType != discoveryv1.AddressTypeIPv4 ||
			len(sl.Endpoints) != 1 || sl.Endpoints[0].Addresses[0] != "127.0.0.1" || sl.Endpoints[0].Conditions.Ready == nil || !*sl.Endpoints[0].Conditions.Ready ||
			len(sl.Ports) != 1 || *sl.Ports[0].Port != int32(port) {
			return "endpointslice " + sl.String()
		}
		return ""
	}
	waitOK := func(what string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			msg := check()
			if msg == "" {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %s", what, msg)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if msg := check(); msg != "" {
		t.Fatalf("at startup: %s", msg)
	}

	// Deleted: it comes back with the same address.
	if err := cs.CoreV1().Services("default").Delete(ctx, "kubernetes", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitOK("service recreated")

	// Changed: it is put back.
	ep, err := cs.CoreV1().Endpoints("default").Get(ctx, "kubernetes", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ep.Subsets[0].Addresses[0].IP = "10.0.0.99"
	if _, err := cs.CoreV1().Endpoints("default").Update(ctx, ep, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := cs.DiscoveryV1().EndpointSlices("default").Delete(ctx, "kubernetes", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitOK("endpoints restored")
}
