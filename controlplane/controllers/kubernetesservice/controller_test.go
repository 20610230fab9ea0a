package kubernetesservice_test

import (
	"context"
	"errors"
	"net/url"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/controllers/kubernetesservice"
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

// TestPeers: with Peers (the API servers of an HA cluster), the endpoints
// list this server and every peer of its address family, sorted, so that
// every server writes the same objects; a failed peer listing leaves them.
func TestPeers(t *testing.T) {
	s := testserver.Start(t)
	cs := s.Client
	ctx := context.Background()
	var peers []string
	var peersErr error
	c := kubernetesservice.New(kubernetesservice.Config{
		Client: cs, Namespace: "default", Service: "peers", ClusterIP: "10.43.0.50",
		Address: "127.0.0.2", Port: 6443,
		Peers: func(context.Context) ([]string, error) { return peers, peersErr },
	})
	got := func() (eps, slice []string) {
		t.Helper()
		ep, err := cs.CoreV1().Endpoints("default").Get(ctx, "peers", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, ss := range ep.Subsets {
			for _, a := range ss.Addresses {
				eps = append(eps, a.IP)
			}
			if len(ss.Ports) != 1 || ss.Ports[0].Port != 6443 {
				t.Fatalf("endpoint ports %v", ss.Ports)
			}
		}
		sl, err := cs.DiscoveryV1().EndpointSlices("default").Get(ctx, "peers", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range sl.Endpoints {
			if e.Conditions.Ready == nil || !*e.Conditions.Ready {
				t.Fatalf("endpoint %v not ready", e.Addresses)
			}
			slice = append(slice, e.Addresses...)
		}
		return eps, slice
	}
	for _, tc := range []struct {
		name  string
		peers []string
		err   error
		want  []string
	}{
		{"alone", nil, nil, []string{"127.0.0.2"}},
		{"three servers", []string{"127.0.0.3", "127.0.0.1", "127.0.0.2", "fd00::1", "not-an-ip"}, nil, []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"}},
		{"listing fails", nil, errors.New("etcd unavailable"), []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"}},
		{"one left", []string{"127.0.0.3"}, nil, []string{"127.0.0.2", "127.0.0.3"}},
	} {
		peers, peersErr = tc.peers, tc.err
		err := c.Reconcile(ctx)
		if (err != nil) != (tc.err != nil) {
			t.Fatalf("%s: reconcile error %v", tc.name, err)
		}
		eps, slice := got()
		if !slices.Equal(eps, tc.want) || !slices.Equal(slice, tc.want) {
			t.Fatalf("%s: endpoints %v, slice %v; want %v", tc.name, eps, slice, tc.want)
		}
	}
}
