package agent

import (
	"context"
	"net"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// startRoutes runs the host-gw route loop: it watches every Node and
// keeps a route for each other node's spec.podCIDR via that node's
// InternalIP in this agent's network namespace (network.SyncRoutes),
// removing the routes of nodes that went away or changed. Level-triggered:
// every Node event and every resync recomputes the whole set.
func (a *Agent) startRoutes(ctx context.Context, cs kubernetes.Interface) {
	factory := informers.NewSharedInformerFactory(cs, 0)
	inf := factory.Core().V1().Nodes().Informer()
	kick := make(chan struct{}, 1)
	poke := func(any) {
		select {
		case kick <- struct{}{}:
		default:
		}
	}
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: poke, UpdateFunc: func(_, o any) { poke(o) }, DeleteFunc: poke,
	})
	factory.Start(ctx.Done())
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		defer factory.Shutdown()
		if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
			return
		}
		t := time.NewTicker(a.opts.ResyncInterval)
		defer t.Stop()
		last := ""
		for {
			want := a.wantRoutes(inf.GetStore().List())
			key := routesKey(want)
			// Only changes are logged; a failed sync is retried on every
			// resync (a route may fail while the other node's address is
			// not reachable yet).
			if err := a.net.SyncRoutes(want); err != nil {
				if key != last {
					a.log.Warn("host-gw routes", "err", err)
				}
			}
			last = key
			select {
			case <-ctx.Done():
				return
			case <-kick:
			case <-t.C:
			}
		}
	}()
}

// wantRoutes maps the pod CIDR of every other node that has one and an
// IPv4 InternalIP to that address. Nodes sharing this node's IP (several
// agents on one address, as in single-host tests) and loopback addresses
// get no route: there is nothing to route through.
func (a *Agent) wantRoutes(objs []any) map[string]net.IP {
	self := net.ParseIP(a.opts.NodeIP)
	want := map[string]net.IP{}
	for _, o := range objs {
		n, ok := o.(*corev1.Node)
		if !ok || n.Name == a.opts.NodeName || n.Spec.PodCIDR == "" {
			continue
		}
		var ip net.IP
		for _, ad := range n.Status.Addresses {
			if ad.Type == corev1.NodeInternalIP {
				if p := net.ParseIP(ad.Address); p != nil && p.To4() != nil {
					ip = p
					break
				}
			}
		}
		if ip == nil || ip.IsLoopback() || ip.Equal(self) {
			continue
		}
		want[n.Spec.PodCIDR] = ip
	}
	return want
}

func routesKey(m map[string]net.IP) string {
	s := make([]string, 0, len(m))
	for c, ip := range m {
		s = append(s, c+">"+ip.String())
	}
	sort.Strings(s)
	return strings.Join(s, ",")
}
