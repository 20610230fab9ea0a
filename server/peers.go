package server

import (
	"context"
	"fmt"
	"maps"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/skiffhq/skiff/controlplane/authz"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
)

// In an HA cluster every server keeps an identity Lease in kube-system,
// labelled as upstream's API server identity leases, with the address
// agents and the `kubernetes` Service reach it at. The `default/kubernetes`
// Endpoints list every server whose Lease is fresh (what upstream's
// "lease" endpoint reconciler does with its own etcd keys), and agents
// learn their failover list from them (nodeagent/failover).
const (
	identityLabel      = "apiserver.kubernetes.io/identity"
	identityLabelValue = "kube-apiserver"
	addressAnnotation  = "skiff.dev/apiserver-address"
	// dnsAddressAnnotation is where the server's cluster DNS add-on
	// answers for the kube-dns Service (host:port), once its node agent
	// published it; every server's kube-dns controller lists them all.
	dnsAddressAnnotation  = "skiff.dev/cluster-dns-address"
	identityLeaseDuration = 15 * time.Second
	identityRenewInterval = 5 * time.Second
)

// identityLease is this server's Lease loop.
type identityLease struct {
	cs      kubernetes.Interface
	name    string
	holder  string
	address string // host:port
	// dnsAddress is the cluster DNS endpoint (host:port) to publish, ""
	// until the node agent has one.
	dnsAddress func() string

	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

// startIdentityLease starts renewing this server's identity Lease (HA
// only). stopIdentityLease ends it and deletes the Lease.
func (s *Server) startIdentityLease(ctx context.Context) error {
	if !s.haEnabled() {
		return nil
	}
	member, err := s.etcdMemberName()
	if err != nil {
		return err
	}
	cs, err := s.componentClient("system:apiserver", authz.SystemMasters)
	if err != nil {
		return err
	}
	_, port, _ := net.SplitHostPort(s.listener.Addr().String())
	l := &identityLease{
		cs: cs, name: "apiserver-" + strings.ToLower(member), holder: member,
		address: net.JoinHostPort(s.kubernetesEndpointAddress(), port), done: make(chan struct{}),
		dnsAddress: s.clusterDNS.endpoint,
	}
	if err := l.renew(ctx); err != nil {
		return fmt.Errorf("identity lease: %w", err)
	}
	ctx, l.cancel = context.WithCancel(ctx)
	s.lease = l
	go func() {
		defer close(l.done)
		t := time.NewTicker(identityRenewInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if err := l.renew(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("identity lease renewal failed", "lease", l.name, "err", err)
			}
		}
	}()
	return nil
}

// stopIdentityLease stops the renewals and deletes the Lease, so that the
// other servers drop this one from the endpoints at their next pass
// rather than when the Lease expires.
func (s *Server) stopIdentityLease() {
	l := s.lease
	if l == nil {
		return
	}
	l.once.Do(func() {
		l.cancel()
		<-l.done
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		err := l.cs.CoordinationV1().Leases(metav1.NamespaceSystem).Delete(ctx, l.name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			s.log.Warn("identity lease not deleted; it expires", "lease", l.name, "err", err)
		}
	})
}

func (l *identityLease) renew(ctx context.Context) error {
	leases := l.cs.CoordinationV1().Leases(metav1.NamespaceSystem)
	now := metav1.NewMicroTime(time.Now())
	secs := int32(identityLeaseDuration / time.Second)
	annotations := map[string]string{addressAnnotation: l.address}
	if dns := l.dnsAddress(); dns != "" {
		annotations[dnsAddressAnnotation] = dns
	}
	cur, err := leases.Get(ctx, l.name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = leases.Create(ctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: l.name, Namespace: metav1.NamespaceSystem,
				Labels:      map[string]string{identityLabel: identityLabelValue},
				Annotations: annotations},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: &l.holder, LeaseDurationSeconds: &secs, AcquireTime: &now, RenewTime: &now},
		}, metav1.CreateOptions{})
		return err
	}
	if err != nil {
		return err
	}
	next := cur.DeepCopy()
	if next.Labels == nil {
		next.Labels = map[string]string{}
	}
	if next.Annotations == nil {
		next.Annotations = map[string]string{}
	}
	next.Labels[identityLabel] = identityLabelValue
	maps.Copy(next.Annotations, annotations)
	next.Spec.HolderIdentity, next.Spec.LeaseDurationSeconds, next.Spec.RenewTime = &l.holder, &secs, &now
	_, err = leases.Update(ctx, next, metav1.UpdateOptions{})
	return err
}

// peerAddresses lists the addresses of the servers whose identity Lease
// is fresh and whose port is this server's (the `kubernetes` Endpoints
// have one port; a server on another port is left out, with a warning).
func (s *Server) peerAddresses(cs kubernetes.Interface) func(ctx context.Context) ([]string, error) {
	_, ownPort, _ := net.SplitHostPort(s.listener.Addr().String())
	return s.leaseAddresses(cs, addressAnnotation, ownPort, "API server")
}

// leaseAddresses lists the hosts of the host:port addresses in annotation
// of the fresh identity Leases whose port is port; what names the service
// in the warning about a peer on another port (given once per address).
func (s *Server) leaseAddresses(cs kubernetes.Interface, annotation, port, what string) func(ctx context.Context) ([]string, error) {
	sel := labels.SelectorFromSet(labels.Set{identityLabel: identityLabelValue}).String()
	// Each misconfigured server is reported once, not on every pass.
	var mu sync.Mutex
	warned := map[string]bool{}
	return func(ctx context.Context) ([]string, error) {
		list, err := cs.CoordinationV1().Leases(metav1.NamespaceSystem).List(ctx, metav1.ListOptions{LabelSelector: sel})
		if err != nil {
			return nil, err
		}
		var out []string
		now := time.Now()
		for _, l := range list.Items {
			if l.Spec.RenewTime == nil || l.Spec.LeaseDurationSeconds == nil ||
				now.After(l.Spec.RenewTime.Add(time.Duration(*l.Spec.LeaseDurationSeconds)*time.Second)) {
				continue
			}
			addr := l.Annotations[annotation]
			host, p, err := net.SplitHostPort(addr)
			if err != nil {
				continue
			}
			if p != port {
				mu.Lock()
				if !warned[addr] {
					warned[addr] = true
					s.log.Warn(what+" on another port left out of the endpoints", "lease", l.Name, "address", addr, "port", port)
				}
				mu.Unlock()
				continue
			}
			out = append(out, host)
		}
		return out, nil
	}
}
