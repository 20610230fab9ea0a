// Package mirror keeps an in-memory copy of one resource's objects by
// following the API server's watch cache: a list, then a watch from the
// list's revision, and a fresh list whenever the watch ends.
package mirror

import (
	"context"
	"log/slog"
	"time"

	"github.com/skiffhq/skiff/controlplane/storage"
)

// Handler receives the objects under one key prefix.
type Handler interface {
	// Replace sets the whole content (after a list).
	Replace(objs []*storage.Object)
	// Upsert adds or changes one object.
	Upsert(o *storage.Object)
	// Delete removes the object at key.
	Delete(key string)
}

// Follow feeds h with the objects under prefix until ctx ends. synced is
// called once, after the first list was handed to h.
func Follow(ctx context.Context, c *storage.Cache, prefix string, h Handler, synced func(), log *slog.Logger) {
	first := true
	for ctx.Err() == nil {
		objs, rev, err := c.List(prefix, "", nil)
		if err != nil {
			log.Debug("mirror list failed; retrying", "prefix", prefix, "err", err)
			sleep(ctx, 200*time.Millisecond)
			continue
		}
		h.Replace(objs)
		if first {
			first = false
			if synced != nil {
				synced()
			}
		}
		w, err := c.Watch(prefix, storage.WatchOptions{FromRev: rev})
		if err != nil {
			log.Debug("mirror watch failed; relisting", "prefix", prefix, "err", err)
			sleep(ctx, 100*time.Millisecond)
			continue
		}
		for _, e := range w.Pending() {
			apply(h, e)
		}
		consume(ctx, w, h)
		w.Stop()
	}
}

func consume(ctx context.Context, w *storage.Watcher, h Handler) {
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-w.Events():
			if !ok {
				return
			}
			apply(h, e)
		}
	}
}

func apply(h Handler, e *storage.Event) {
	switch e.Type {
	case storage.Added, storage.Modified:
		h.Upsert(e.Object)
	case storage.Deleted:
		h.Delete(e.Object.Key)
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
