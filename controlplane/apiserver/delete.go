package apiserver

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/skiffhq/skiff/controlplane/apiserver/registry"
	"github.com/skiffhq/skiff/controlplane/storage"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// Finalizers the API server itself adds for deletion propagation.
const (
	FinalizerOrphan     = "orphan"
	FinalizerForeground = "foregroundDeletion"
)

// parseDeleteOptions reads DeleteOptions from the body and the query.
func parseDeleteOptions(r *http.Request) (*metav1.DeleteOptions, error) {
	opts := &metav1.DeleteOptions{}
	if r.Body != nil && r.ContentLength != 0 {
		data, err := readBody(r)
		if err != nil {
			return nil, err
		}
		if len(data) > 0 {
			data, err = toJSON(r, data)
			if err != nil {
				return nil, err
			}
			if _, err := decodeInto(data, opts, fieldIgnore); err != nil {
				return nil, err
			}
		}
	}
	q := r.URL.Query()
	if v := q.Get("gracePeriodSeconds"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return nil, badRequest("invalid gracePeriodSeconds %q", v)
		}
		opts.GracePeriodSeconds = &n
	}
	if v := q.Get("propagationPolicy"); v != "" {
		p := metav1.DeletionPropagation(v)
		opts.PropagationPolicy = &p
	}
	if v := q.Get("orphanDependents"); v != "" {
		b := v == "true"
		opts.OrphanDependents = &b
	}
	for _, d := range q["dryRun"] {
		opts.DryRun = append(opts.DryRun, d)
	}
	for _, d := range opts.DryRun {
		if d != "All" {
			return nil, badRequest("Invalid dryRun value %q: only \"All\" is supported", d)
		}
	}
	if opts.GracePeriodSeconds != nil && *opts.GracePeriodSeconds < 0 {
		z := int64(0)
		opts.GracePeriodSeconds = &z
	}
	if opts.PropagationPolicy != nil {
		switch *opts.PropagationPolicy {
		case metav1.DeletePropagationBackground, metav1.DeletePropagationForeground, metav1.DeletePropagationOrphan:
		default:
			return nil, badRequest("propagationPolicy %q is not supported; use Orphan, Background or Foreground", *opts.PropagationPolicy)
		}
		if opts.OrphanDependents != nil {
			return nil, badRequest("orphanDependents and propagationPolicy cannot both be set")
		}
	}
	return opts, nil
}

// handleDelete serves DELETE of one object.
func (s *Server) handleDelete(w http.ResponseWriter, r *http.Request, res *registry.Resource, ns, name string) {
	opts, err := parseDeleteOptions(r)
	if err != nil {
		writeStatus(w, statusFor(err))
		return
	}
	out, code, err := s.delete(r.Context(), res, ns, name, opts)
	if err != nil {
		writeStatus(w, statusFor(err))
		return
	}
	writeJSONBytes(w, r, code, out)
}

// delete deletes one object with upstream's graceful and finalizer
// semantics. It returns the object as it was deleted (or as it now waits
// for its finalizers or grace period).
func (s *Server) delete(ctx context.Context, res *registry.Resource, ns, name string, opts *metav1.DeleteOptions) ([]byte, int, error) {
	key := objectKey(res, ns, name)
	gr := res.GVR().GroupResource()
	dryRun := len(opts.DryRun) > 0
	for attempt := 0; attempt < 16; attempt++ {
		kv, err := s.store.Get(ctx, key)
		if err != nil {
			return nil, 0, storageErr(err, gr, name)
		}
		obj, err := fromStorage(res, kv.Value, kv.ModRev)
		if err != nil {
			return nil, 0, err
		}
		acc, _ := meta.Accessor(obj)
		if p := opts.Preconditions; p != nil {
			if p.UID != nil && *p.UID != acc.GetUID() {
				return nil, 0, apierrors.NewConflict(gr, name, errors.New("Precondition failed: UID in precondition: "+string(*p.UID)+", UID in object meta: "+string(acc.GetUID())))
			}
			if p.ResourceVersion != nil && *p.ResourceVersion != acc.GetResourceVersion() {
				return nil, 0, apierrors.NewConflict(gr, name, errors.New("Precondition failed: ResourceVersion in precondition: "+*p.ResourceVersion+", ResourceVersion in object meta: "+acc.GetResourceVersion()))
			}
		}
		attrs := &Attributes{Operation: OpDelete, Resource: res, Namespace: acc.GetNamespace(), Name: name, OldObject: obj, DryRun: dryRun, Options: opts}
		if u, ok := UserFrom(ctx); ok {
			attrs.User = u
		}
		if err := s.admit(ctx, attrs); err != nil {
			return nil, 0, err
		}
		if err := s.validateAdmission(ctx, attrs); err != nil {
			return nil, 0, err
		}
		grace := int64(0)
		if h := res.Hooks.GracePeriod; h != nil {
			grace = h(obj, opts.GracePeriodSeconds)
		}
		finalizers := deletionFinalizers(acc.GetFinalizers(), opts)
		pending := len(finalizers) > 0 || s.pendingFinalization(res, obj)
		alreadyDeleting := acc.GetDeletionTimestamp() != nil
		if alreadyDeleting {
			cur := acc.GetDeletionGracePeriodSeconds()
			shorten := cur != nil && grace < *cur
			if !shorten && !(grace == 0 && !pending) {
				// Nothing new: report the object as it is.
				return served(res, kv.Value, kv.ModRev), http.StatusAccepted, nil
			}
		}
		if grace > 0 || pending {
			now := metav1.NewTime(time.Now().Add(time.Duration(grace) * time.Second).Truncate(time.Second))
			if alreadyDeleting && acc.GetDeletionTimestamp().Before(&now) {
				now = *acc.GetDeletionTimestamp()
			}
			acc.SetDeletionTimestamp(&now)
			acc.SetDeletionGracePeriodSeconds(&grace)
			acc.SetFinalizers(finalizers)
			if h := res.Hooks.PrepareForDelete; h != nil {
				h(ctx, obj)
			}
			data, err := toStorage(res, obj)
			if err != nil {
				return nil, 0, err
			}
			if grace == 0 && !pending {
				// fallthrough to immediate deletion below
			} else {
				if dryRun {
					return served(res, data, kv.ModRev), http.StatusOK, nil
				}
				rev, _, err := s.store.Update(ctx, key, data, kv.ModRev)
				if errors.Is(err, storage.ErrConflict) {
					continue
				}
				if err != nil {
					return nil, 0, storageErr(err, gr, name)
				}
				code := http.StatusOK
				if len(finalizers) > 0 {
					code = http.StatusAccepted
				}
				return served(res, data, rev), code, nil
			}
		}
		if dryRun {
			return served(res, kv.Value, kv.ModRev), http.StatusOK, nil
		}
		rev, err := s.store.Delete(ctx, key, kv.ModRev)
		if errors.Is(err, storage.ErrConflict) {
			continue
		}
		if err != nil {
			return nil, 0, storageErr(err, gr, name)
		}
		s.afterDelete(ctx, res, obj)
		return served(res, kv.Value, rev), http.StatusOK, nil
	}
	return nil, 0, apierrors.NewConflict(gr, name, errors.New("too many concurrent updates; please retry"))
}

// deletionFinalizers adds the propagation finalizer the options ask for.
func deletionFinalizers(cur []string, opts *metav1.DeleteOptions) []string {
	out := append([]string(nil), cur...)
	has := func(f string) bool {
		for _, x := range out {
			if x == f {
				return true
			}
		}
		return false
	}
	remove := func(f string) {
		n := out[:0]
		for _, x := range out {
			if x != f {
				n = append(n, x)
			}
		}
		out = n
	}
	orphan := opts.OrphanDependents != nil && *opts.OrphanDependents
	fg := false
	if p := opts.PropagationPolicy; p != nil {
		orphan = *p == metav1.DeletePropagationOrphan
		fg = *p == metav1.DeletePropagationForeground
		if *p == metav1.DeletePropagationBackground {
			remove(FinalizerOrphan)
			remove(FinalizerForeground)
		}
	}
	if orphan && !has(FinalizerOrphan) {
		remove(FinalizerForeground)
		out = append(out, FinalizerOrphan)
	}
	if fg && !has(FinalizerForeground) {
		remove(FinalizerOrphan)
		out = append(out, FinalizerForeground)
	}
	return out
}

// pendingFinalization reports kind-specific finalization still to do
// (namespaces wait for spec.finalizers).
func (s *Server) pendingFinalization(res *registry.Resource, obj runtime.Object) bool {
	if h := res.Hooks.PendingFinalization; h != nil {
		return h(obj)
	}
	return false
}

func (s *Server) afterDelete(ctx context.Context, res *registry.Resource, obj runtime.Object) {
	for _, h := range s.storageHooks(res) {
		h.AfterDelete(ctx, obj)
	}
}

// handleDeleteCollection deletes every object matching the selectors.
func (s *Server) handleDeleteCollection(w http.ResponseWriter, r *http.Request, res *registry.Resource, ns string) {
	opts, err := parseDeleteOptions(r)
	if err != nil {
		writeStatus(w, statusFor(err))
		return
	}
	sel, err := parseSelectors(r, res)
	if err != nil {
		writeStatus(w, statusFor(err))
		return
	}
	if _, err := s.cache.WaitFresh(r.Context()); err != nil {
		writeStatus(w, statusFor(err))
		return
	}
	var pred func(*storage.Object) bool
	if !sel.empty() {
		pred = func(o *storage.Object) bool { return sel.matches(o.Attrs) }
	}
	objs, _, err := s.cache.List(res.StorageKeyPrefix, scopePrefix(res, ns), pred)
	if err != nil {
		writeStatus(w, statusFor(err))
		return
	}
	for _, o := range objs {
		_, _, err := s.delete(r.Context(), res, o.Attrs.Namespace, o.Attrs.Name, opts)
		if err != nil && !apierrors.IsNotFound(err) {
			writeStatus(w, statusFor(err))
			return
		}
	}
	writeObj(w, r, http.StatusOK, &metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusSuccess})
}
