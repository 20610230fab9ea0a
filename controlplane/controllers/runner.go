// Package controllers holds what every Skiff control loop shares: the
// Controller interface the server starts and a workqueue worker that runs a
// level-triggered Reconcile for each queued key.
//
// Each controller lives in its own sub-package with a README.md saying what
// it owns. Informer handlers only enqueue keys; Reconcile reads the cache,
// never mutates cached objects, and is safe to call again for the same key.
package controllers

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// Controller is one control loop.
type Controller interface {
	// Name is the loop's name, also its --disable name.
	Name() string
	// Run blocks until ctx ends, with workers concurrent reconciles.
	Run(ctx context.Context, workers int) error
}

// Result tells the worker what to do after a successful reconcile.
type Result struct {
	// RequeueAfter > 0 queues the key again after that long.
	RequeueAfter time.Duration
}

// ReconcileFunc brings the world in line with the desired state of key.
type ReconcileFunc func(ctx context.Context, key string) (Result, error)

// NewQueue returns a rate-limited queue of keys named name.
func NewQueue(name string) workqueue.TypedRateLimitingInterface[string] {
	return workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.DefaultTypedControllerRateLimiter[string](),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: name},
	)
}

// RunWorkers runs workers goroutines that take keys from q and reconcile
// them until ctx ends; then it shuts q down and waits for them.
func RunWorkers(ctx context.Context, q workqueue.TypedRateLimitingInterface[string], workers int, log *slog.Logger, fn ReconcileFunc) {
	if workers < 1 {
		workers = 1
	}
	go func() {
		<-ctx.Done()
		q.ShutDown()
	}()
	var wg sync.WaitGroup
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ProcessNext(ctx, q, log, fn) {
			}
		}()
	}
	wg.Wait()
}

// ProcessNext handles one key: Forget on success, AddRateLimited on error,
// AddAfter when the result asks for it. It returns false once q shuts down.
func ProcessNext(ctx context.Context, q workqueue.TypedRateLimitingInterface[string], log *slog.Logger, fn ReconcileFunc) bool {
	key, quit := q.Get()
	if quit {
		return false
	}
	defer q.Done(key)
	res, err := fn(ctx, key)
	switch {
	case err != nil:
		if ctx.Err() == nil {
			log.Warn("reconcile failed; will retry", "key", key, "retries", q.NumRequeues(key), "err", err)
		}
		q.AddRateLimited(key)
	case res.RequeueAfter > 0:
		q.Forget(key)
		q.AddAfter(key, res.RequeueAfter)
	default:
		q.Forget(key)
	}
	return true
}

// Enqueue returns informer handlers that add the key of every added,
// updated or deleted object to q.
func Enqueue(q workqueue.TypedInterface[string]) cache.ResourceEventHandlerFuncs {
	add := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			q.Add(key)
		}
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    add,
		UpdateFunc: func(_, obj any) { add(obj) },
		DeleteFunc: add,
	}
}

// WaitForSync waits for the informers' caches; false if ctx ended first.
func WaitForSync(ctx context.Context, synced ...cache.InformerSynced) bool {
	return cache.WaitForCacheSync(ctx.Done(), synced...)
}
