package serviceip

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/skiffhq/skiff/controlplane/storage"
	corev1 "k8s.io/api/core/v1"
)

// ServicesPrefix is where Services are stored.
const ServicesPrefix = "/registry/services/specs/"

// LeakGrace is how old a reservation without a Service must be before
// Repair frees it: younger ones may belong to a create still in flight on
// this or another API server.
var LeakGrace = time.Minute

// Repair makes the reservations match the stored Services: it frees
// reservations whose Service no longer holds them and re-reserves values
// that Services hold without a reservation (after a crash, a restore, or
// a change of ranges). Re-reservation is guarded by the Service's revision,
// so a Service deleted meanwhile is not resurrected in the ranges.
func (a *Allocator) Repair(ctx context.Context) error {
	type want struct {
		o      owner
		svcKey string
		svcRev int64
	}
	wantIP := map[int]want{}
	wantPort := map[int]want{}
	start := ""
	for {
		res, err := a.ips.store.List(ctx, ServicesPrefix, start, 0, 500)
		if err != nil {
			return fmt.Errorf("list services: %w", err)
		}
		for _, kv := range res.KVs {
			var svc corev1.Service
			if err := json.Unmarshal(kv.Value, &svc); err != nil {
				a.log.Warn("cannot decode stored service", "key", kv.Key, "err", err)
				continue
			}
			w := want{o: ownerOf(&svc), svcKey: kv.Key, svcRev: kv.ModRev}
			ip, ports := a.holding(&svc)
			if ip >= 0 {
				if prev, dup := wantIP[ip]; dup {
					a.log.Error("cluster IP held by two services", "ip", a.ipAt(ip), "service", svc.Namespace+"/"+svc.Name, "other", prev.o.Namespace+"/"+prev.o.Name)
				} else {
					wantIP[ip] = w
				}
			} else if hasClusterIP(&svc) {
				a.log.Warn("service cluster IP is outside the service range", "service", svc.Namespace+"/"+svc.Name, "ip", svc.Spec.ClusterIP, "range", a.cidr)
			}
			for _, p := range ports {
				if prev, dup := wantPort[p]; dup && prev.o.UID != w.o.UID {
					a.log.Error("node port held by two services", "port", a.portFirst+p, "service", svc.Namespace+"/"+svc.Name, "other", prev.o.Namespace+"/"+prev.o.Name)
				} else {
					wantPort[p] = w
				}
			}
		}
		if !res.More || len(res.KVs) == 0 {
			break
		}
		start = res.KVs[len(res.KVs)-1].Key + "\x00"
	}
	var errs []error
	fix := func(s *span, wanted map[int]want, what string) {
		seen := map[int]bool{}
		err := s.each(ctx, func(off int, kv storage.KV) {
			seen[off] = true
			cur, err := decodeOwner(kv.Value)
			if w, ok := wanted[off]; ok && err == nil && cur.UID == w.o.UID {
				return
			}
			if err == nil && time.Since(cur.At) < LeakGrace {
				return
			}
			if _, err := s.store.Delete(ctx, kv.Key, kv.ModRev); err != nil && !errors.Is(err, storage.ErrNotFound) && !errors.Is(err, storage.ErrConflict) {
				errs = append(errs, err)
				return
			}
			a.log.Info("freed leaked reservation", "kind", what, "value", s.name(off), "owner", cur.Namespace+"/"+cur.Name)
			// If a Service holds it, it is re-reserved for that one below.
			seen[off] = false
		})
		if err != nil {
			errs = append(errs, err)
			return
		}
		for off, w := range wanted {
			if seen[off] {
				continue
			}
			_, err := s.store.CreateGuarded(ctx, s.key(off), w.o.encode(), w.svcKey, w.svcRev)
			switch {
			case err == nil:
				a.log.Info("re-reserved value held by a service", "kind", what, "value", s.name(off), "service", w.o.Namespace+"/"+w.o.Name)
			case errors.Is(err, storage.ErrConflict):
				// The service changed meanwhile; the next pass sees it.
			case errors.Is(err, storage.ErrExists):
				a.log.Error("value held by a service is reserved by another", "kind", what, "value", s.name(off), "service", w.o.Namespace+"/"+w.o.Name)
			default:
				errs = append(errs, err)
			}
		}
	}
	fix(a.ips, wantIP, "clusterIP")
	fix(a.ports, wantPort, "nodePort")
	return errors.Join(errs...)
}

// RunRepair repairs now and then every interval until ctx ends.
func (a *Allocator) RunRepair(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := a.Repair(ctx); err != nil && ctx.Err() == nil {
			a.log.Error("service range repair failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
