package proxy

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// watchSources starts Service and EndpointSlice informers whose every
// event calls kick, and waits until both have synced. stop shuts them
// down; on error (ctx ended first) they are already shut down.
func watchSources(ctx context.Context, client kubernetes.Interface, kick func()) (svcs, slices cache.GenericLister, stop func(), err error) {
	f := informers.NewSharedInformerFactory(client, 0)
	svcInf := f.Core().V1().Services()
	sliceInf := f.Discovery().V1().EndpointSlices()
	h := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { kick() },
		UpdateFunc: func(any, any) { kick() },
		DeleteFunc: func(any) { kick() },
	}
	_, _ = svcInf.Informer().AddEventHandler(h)
	_, _ = sliceInf.Informer().AddEventHandler(h)
	svcs = cache.NewGenericLister(svcInf.Informer().GetIndexer(), corev1.Resource("services"))
	slices = cache.NewGenericLister(sliceInf.Informer().GetIndexer(), discoveryv1.Resource("endpointslices"))
	f.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), svcInf.Informer().HasSynced, sliceInf.Informer().HasSynced) {
		f.Shutdown()
		return nil, nil, nil, ctx.Err()
	}
	return svcs, slices, f.Shutdown, nil
}

// syncLoop calls sync once at start and after each kick until ctx ends.
// Debounce: at most one sync per minPeriod after lastSync(); kicks
// arriving meanwhile fold into the next one. When sync returns a
// positive delay, it runs again after that delay even without a kick.
func syncLoop(ctx context.Context, kick <-chan struct{}, minPeriod time.Duration, lastSync func() time.Time, sync func() (retry time.Duration)) {
	retry := time.NewTimer(0)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-kick:
		case <-retry.C:
		}
		if wait := time.Until(lastSync().Add(minPeriod)); wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
		select {
		case <-kick:
		default:
		}
		if d := sync(); d > 0 {
			retry.Reset(d)
		}
	}
}
