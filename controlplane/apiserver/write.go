package apiserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/skiffhq/skiff/controlplane/apiserver/registry"
	"github.com/skiffhq/skiff/controlplane/storage"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	"k8s.io/apimachinery/pkg/api/validation/path"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilrand "k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// writeOpts are the query parameters shared by create, update and patch.
type writeOpts struct {
	dryRun bool
	fv     fieldValidation
	// patch: the object came from a patch, so a resourceVersion is only a
	// precondition when the patch itself set one.
	patch bool
	// allowCreate: a missing object may be created (server-side apply).
	allowCreate bool
}

func parseWriteOpts(r *http.Request) (writeOpts, error) {
	var o writeOpts
	for _, d := range r.URL.Query()["dryRun"] {
		if d != "All" {
			return o, badRequest("Invalid dryRun value %q: only \"All\" is supported", d)
		}
		o.dryRun = true
	}
	fv, err := fieldValidationFrom(r)
	if err != nil {
		return o, err
	}
	o.fv = fv
	return o, nil
}

// decodeRequestObject reads and decodes a request body for res, checking
// its apiVersion and kind against the endpoint.
func (s *Server) decodeRequestObject(r *http.Request, res *registry.Resource, fv fieldValidation) (runtime.Object, []string, error) {
	data, err := readBody(r)
	if err != nil {
		return nil, nil, err
	}
	if mediaType(r) == protobufMediaType {
		if !hasProtobuf(res) {
			return nil, nil, apierrors.NewGenericServerResponse(http.StatusUnsupportedMediaType, "", schemaGR(""), "",
				fmt.Sprintf("the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (got %q)", protobufMediaType), 0, false)
		}
		// Protobuf has no unknown fields to warn about: field validation
		// applies to JSON and YAML only, as upstream.
		obj, err := decodeProtoObject(data, res)
		return obj, nil, err
	}
	data, err = toJSON(r, data)
	if err != nil {
		return nil, nil, err
	}
	return decodeObjectJSON(data, res, fv)
}

func decodeObjectJSON(data []byte, res *registry.Resource, fv fieldValidation) (runtime.Object, []string, error) {
	if !looksLikeObject(data) {
		return nil, nil, badRequest("the body of the request must be a JSON or YAML object")
	}
	tm, err := typeMetaOf(data)
	if err != nil {
		return nil, nil, err
	}
	gv := res.GroupVersion()
	if tm.APIVersion != "" && tm.APIVersion != gv {
		return nil, nil, badRequest("the API version in the data (%s) does not match the expected API version (%s)", tm.APIVersion, gv)
	}
	if tm.Kind != "" && tm.Kind != res.Kind {
		return nil, nil, badRequest("the kind in the data (%s) does not match the expected kind (%s)", tm.Kind, res.Kind)
	}
	obj := newObject(res)
	warns, err := decodeInto(data, obj, fv)
	if err != nil {
		return nil, nil, err
	}
	if prune := res.Hooks.Prune; prune != nil {
		if unknown := prune(obj); len(unknown) > 0 && fv != fieldIgnore {
			msgs := make([]string, len(unknown))
			for i, f := range unknown {
				msgs[i] = fmt.Sprintf("unknown field %q", f)
			}
			if fv == fieldStrict {
				return nil, nil, badRequest("strict decoding error: %s", strings.Join(msgs, ", "))
			}
			warns = append(warns, msgs...)
		}
	}
	obj.GetObjectKind().SetGroupVersionKind(res.GVK())
	if u, ok := obj.(*unstructured.Unstructured); ok {
		if _, ok := u.Object["metadata"]; ok {
			if _, isMap := u.Object["metadata"].(map[string]interface{}); !isMap {
				return nil, nil, badRequest("metadata must be an object")
			}
		}
	}
	return obj, warns, nil
}

// validateMeta runs upstream's ObjectMeta validation.
func validateMeta(res *registry.Resource, acc metav1.Object) field.ErrorList {
	return apimachineryvalidation.ValidateObjectMetaAccessor(acc, res.Namespaced,
		nameValidatorFor(res), field.NewPath("metadata"))
}

func nameValidatorFor(res *registry.Resource) apimachineryvalidation.ValidateNameFunc {
	if res.Group == "rbac.authorization.k8s.io" {
		// Upstream's RBAC names are path segments ("system:node").
		return path.ValidatePathSegmentName
	}
	return apimachineryvalidation.NameIsDNSSubdomain
}

func invalid(res *registry.Resource, name string, errs field.ErrorList) error {
	return apierrors.NewInvalid(res.GVK().GroupKind(), name, errs)
}

// handleCreate serves POST to a collection.
func (s *Server) handleCreate(w http.ResponseWriter, r *http.Request, res *registry.Resource, ns string) {
	opts, err := parseWriteOpts(r)
	if err != nil {
		writeStatus(w, statusFor(err))
		return
	}
	obj, warns, err := s.decodeRequestObject(r, res, opts.fv)
	if err != nil {
		writeStatus(w, statusFor(err))
		return
	}
	out, err := s.create(r.Context(), res, ns, obj, opts)
	if err != nil {
		writeStatus(w, statusFor(err))
		return
	}
	addWarnings(w, warns)
	writeJSONBytes(w, r, http.StatusCreated, out)
}

func addWarnings(w http.ResponseWriter, warns []string) {
	for _, m := range warns {
		w.Header().Add("Warning", `299 - "`+sanitizeWarning(m)+`"`)
	}
}

func sanitizeWarning(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c == '"' || c < 0x20 || c == '\\' {
			b[i] = '\''
		}
	}
	if len(b) > 256 {
		b = b[:256]
	}
	return string(b)
}

// Create stores a new object through the full pipeline (used by handlers and
// by in-process callers such as the bootstrap code).
func (s *Server) create(ctx context.Context, res *registry.Resource, ns string, obj runtime.Object, opts writeOpts) ([]byte, error) {
	acc, err := meta.Accessor(obj)
	if err != nil {
		return nil, badRequest("object has no metadata: %v", err)
	}
	if res.Namespaced {
		if acc.GetNamespace() == "" {
			acc.SetNamespace(ns)
		} else if acc.GetNamespace() != ns {
			return nil, badRequest("the namespace of the provided object does not match the namespace sent on the request")
		}
	} else {
		acc.SetNamespace("")
	}
	// Server-set metadata: what a client sent here is ignored, as upstream.
	acc.SetUID(uuid.NewUUID())
	acc.SetCreationTimestamp(metav1.NewTime(time.Now().Truncate(time.Second)))
	acc.SetDeletionTimestamp(nil)
	acc.SetDeletionGracePeriodSeconds(nil)
	acc.SetResourceVersion("")
	acc.SetSelfLink("")
	acc.SetManagedFields(nil)
	if res.HasSpec {
		acc.SetGeneration(1)
	} else {
		acc.SetGeneration(0)
	}
	if acc.GetName() == "" && acc.GetGenerateName() != "" {
		acc.SetName(generateName(acc.GetGenerateName()))
	}
	if h := res.Hooks.PrepareForCreate; h != nil {
		h(ctx, obj)
	}
	if h := res.Hooks.Default; h != nil {
		h(obj)
	}
	attrs := &Attributes{Operation: OpCreate, Resource: res, Namespace: acc.GetNamespace(), Name: acc.GetName(), Object: obj, DryRun: opts.dryRun}
	if u, ok := UserFrom(ctx); ok {
		attrs.User = u
	}
	if err := s.admit(ctx, attrs); err != nil {
		return nil, err
	}
	// Admission may have changed the name (generateName) or namespace.
	if errs := s.validateObject(ctx, res, obj, acc); len(errs) > 0 {
		return nil, invalid(res, acc.GetName(), errs)
	}
	if err := s.validateAdmission(ctx, attrs); err != nil {
		return nil, err
	}
	hooks := s.storageHooks(res)
	for i, h := range hooks {
		if err := h.BeforeCreate(ctx, obj, opts.dryRun); err != nil {
			for _, prev := range hooks[:i] {
				prev.Release(ctx, obj, nil)
			}
			return nil, err
		}
	}
	release := func() {
		if opts.dryRun {
			return
		}
		for _, h := range hooks {
			h.Release(ctx, obj, nil)
		}
	}
	data, err := toStorage(res, obj)
	if err != nil {
		release()
		return nil, err
	}
	if opts.dryRun {
		return data, nil
	}
	key := objectKey(res, acc.GetNamespace(), acc.GetName())
	rev, err := s.store.Create(ctx, key, data)
	for attempt := 0; errors.Is(err, storage.ErrExists) && acc.GetGenerateName() != "" && attempt < 3; attempt++ {
		acc.SetName(generateName(acc.GetGenerateName()))
		key = objectKey(res, acc.GetNamespace(), acc.GetName())
		if data, err = toStorage(res, obj); err == nil {
			rev, err = s.store.Create(ctx, key, data)
		}
	}
	if err != nil {
		release()
		return nil, storageErr(err, res.GVR().GroupResource(), acc.GetName())
	}
	return served(res, data, rev), nil
}

func (s *Server) validateObject(ctx context.Context, res *registry.Resource, obj runtime.Object, acc metav1.Object) field.ErrorList {
	errs := validateMeta(res, acc)
	if h := res.Hooks.Validate; h != nil {
		errs = append(errs, h(ctx, obj)...)
	}
	return errs
}

func generateName(base string) string {
	const maxGeneratedNameLength = 63 - 5
	if len(base) > maxGeneratedNameLength {
		base = base[:maxGeneratedNameLength]
	}
	return base + utilrand.String(5)
}

// handleUpdate serves PUT of one object (main resource or status).
func (s *Server) handleUpdate(w http.ResponseWriter, r *http.Request, res *registry.Resource, ns, name, sub string) {
	opts, err := parseWriteOpts(r)
	if err != nil {
		writeStatus(w, statusFor(err))
		return
	}
	obj, warns, err := s.decodeRequestObject(r, res, opts.fv)
	if err != nil {
		writeStatus(w, statusFor(err))
		return
	}
	acc, err := meta.Accessor(obj)
	if err != nil {
		writeStatus(w, statusFor(badRequest("object has no metadata")))
		return
	}
	if acc.GetName() == "" {
		acc.SetName(name)
	}
	if acc.GetName() != name {
		writeStatus(w, statusFor(badRequest("the name of the object (%s) does not match the name on the URL (%s)", acc.GetName(), name)))
		return
	}
	if res.Namespaced {
		if acc.GetNamespace() == "" {
			acc.SetNamespace(ns)
		} else if acc.GetNamespace() != ns {
			writeStatus(w, statusFor(badRequest("the namespace of the provided object does not match the namespace sent on the request")))
			return
		}
	}
	out, code, err := s.update(r.Context(), res, ns, name, sub, opts, func(ctx context.Context, cur runtime.Object) (runtime.Object, error) {
		return obj.DeepCopyObject(), nil
	})
	if err != nil {
		writeStatus(w, statusFor(err))
		return
	}
	addWarnings(w, warns)
	writeJSONBytes(w, r, code, out)
}

// updateFunc turns the current object (nil when it does not exist) into
// the desired one. It is called again on a storage conflict when the client
// did not ask for a specific resourceVersion.
type updateFunc func(ctx context.Context, cur runtime.Object) (runtime.Object, error)

// update runs a read-modify-write on one object and returns the stored
// JSON and the HTTP code (200, or 201 when it created the object).
func (s *Server) update(ctx context.Context, res *registry.Resource, ns, name, sub string, opts writeOpts, fn updateFunc) ([]byte, int, error) {
	key := objectKey(res, ns, name)
	gr := res.GVR().GroupResource()
	for attempt := 0; attempt < 16; attempt++ {
		// The first attempt starts from the watch cache: the write is a
		// compare-and-swap on the revision read, so a stale cache costs a
		// retry, never a lost update. Answers that do not write (conflicts,
		// no-ops, dry runs) are given from a fresh etcd read only.
		kv, fresh := s.cachedKV(key, attempt)
		var err error
		if fresh {
			kv, err = s.store.Get(ctx, key)
		}
		var cur runtime.Object
		if err != nil {
			if !errors.Is(err, storage.ErrNotFound) {
				return nil, 0, storageErr(err, gr, name)
			}
		} else {
			cur, err = fromStorage(res, kv.Value, kv.ModRev)
			if err != nil {
				return nil, 0, err
			}
		}
		var curCopy runtime.Object
		if cur != nil {
			curCopy = cur.DeepCopyObject()
		}
		obj, err := fn(ctx, curCopy)
		if err != nil {
			if !fresh {
				// The cached copy may be behind a write the client already
				// saw (a JSON patch testing a value just set, a path not
				// there yet): an error is answered from a fresh read only,
				// as upstream retries a failed update of a cached object
				// with the current one.
				continue
			}
			return nil, 0, err
		}
		acc, err := meta.Accessor(obj)
		if err != nil {
			return nil, 0, badRequest("object has no metadata")
		}
		if cur == nil {
			if (!res.AllowCreateOnUpdate && !opts.allowCreate) || sub != "" {
				return nil, 0, apierrors.NewNotFound(gr, name)
			}
			if acc.GetResourceVersion() != "" {
				return nil, 0, apierrors.NewNotFound(gr, name)
			}
			acc.SetName(name)
			data, err := s.create(ctx, res, ns, obj, opts)
			if err != nil {
				return nil, 0, err
			}
			return data, http.StatusCreated, nil
		}
		requested := acc.GetResourceVersion()
		if requested == "" && res.RequireRVOnUpdate && sub == "" && !opts.patch {
			return nil, 0, invalid(res, name, field.ErrorList{field.Invalid(field.NewPath("metadata", "resourceVersion"), int64(0), "must be specified for an update")})
		}
		if requested != "" {
			if n, perr := strconv.ParseInt(requested, 10, 64); perr != nil || n <= 0 {
				return nil, 0, invalid(res, name, field.ErrorList{field.Invalid(field.NewPath("metadata", "resourceVersion"), requested, "must be a positive integer")})
			} else if n != kv.ModRev {
				if !fresh {
					continue
				}
				return nil, 0, apierrors.NewConflict(gr, name, errors.New(conflictMsg))
			}
		}
		data, stored, deleted, err := s.prepareUpdate(ctx, res, sub, obj, cur, opts)
		if err != nil {
			if !fresh {
				continue // as above: validation against a stale copy
			}
			return nil, 0, err
		}
		if !fresh && (opts.dryRun || !stored) {
			// Neither reserved anything (dry run, or nothing changed).
			continue
		}
		if opts.dryRun {
			return served(res, data, kv.ModRev), http.StatusOK, nil
		}
		if !stored {
			// Nothing changed: upstream answers with the current object
			// and does not write.
			return served(res, data, kv.ModRev), http.StatusOK, nil
		}
		if deleted {
			rev, err := s.store.Delete(ctx, key, kv.ModRev)
			if errors.Is(err, storage.ErrConflict) && (requested == "" || !fresh) {
				continue
			}
			if err != nil {
				return nil, 0, storageErr(err, gr, name)
			}
			s.afterDelete(ctx, res, obj)
			return served(res, data, rev), http.StatusOK, nil
		}
		rev, _, err := s.store.Update(ctx, key, data, kv.ModRev)
		if errors.Is(err, storage.ErrConflict) && (requested == "" || !fresh) {
			s.releaseAfterFailedUpdate(ctx, res, obj, cur)
			continue
		}
		if err != nil {
			s.releaseAfterFailedUpdate(ctx, res, obj, cur)
			return nil, 0, storageErr(err, gr, name)
		}
		for _, h := range s.storageHooks(res) {
			h.Release(ctx, cur, obj)
		}
		return served(res, data, rev), http.StatusOK, nil
	}
	return nil, 0, apierrors.NewConflict(gr, name, errors.New("too many concurrent updates; please retry"))
}

// cachedKV returns the watch cache's copy of key for the first attempt of
// an update; fresh = true means the attempt must read etcd instead.
func (s *Server) cachedKV(key string, attempt int) (kv storage.KV, fresh bool) {
	if attempt > 0 || s.cache == nil {
		return kv, true
	}
	o, _, ok := s.cache.Get(key)
	if ok {
		kv = storage.KV{Key: o.Key, Value: o.Value, ModRev: o.ModRev, CreateRev: o.CreateRev}
	}
	if f := cachedKVFilter.Load(); f != nil {
		kv, ok = (*f)(key, kv, ok)
	}
	return kv, !ok
}

// cachedKVFilter, when set (tests: a watch cache that lags behind etcd),
// replaces what the watch cache gives an update's first attempt.
var cachedKVFilter atomic.Pointer[func(key string, kv storage.KV, ok bool) (storage.KV, bool)]

func (s *Server) releaseAfterFailedUpdate(ctx context.Context, res *registry.Resource, obj, cur runtime.Object) {
	for _, h := range s.storageHooks(res) {
		h.Release(ctx, obj, cur)
	}
}

// prepareUpdate applies the generic update rules and the kind's hooks. It
// returns the bytes to store, whether anything changed, and whether the
// update completes a deletion (the last finalizer went away).
func (s *Server) prepareUpdate(ctx context.Context, res *registry.Resource, sub string, obj, cur runtime.Object, opts writeOpts) ([]byte, bool, bool, error) {
	acc, _ := meta.Accessor(obj)
	old, _ := meta.Accessor(cur)
	name := old.GetName()
	switch sub {
	case "status", "approval":
		// Only status changes through the status subresource (and the
		// CertificateSigningRequest approval subresource).
		next := cur.DeepCopyObject()
		copyPart(next, obj, "status")
		nacc, _ := meta.Accessor(next)
		nacc.SetResourceVersion(acc.GetResourceVersion())
		obj, acc = next, nacc
	case "":
		if res.HasSubresource("status") && hasPart(obj, "status") {
			copyPart(obj, cur, "status")
		}
	}
	// Metadata the client cannot change. An unconditional update (no
	// resourceVersion) proceeds against the current version.
	if acc.GetResourceVersion() == "" {
		acc.SetResourceVersion(old.GetResourceVersion())
	}
	acc.SetUID(old.GetUID())
	acc.SetCreationTimestamp(old.GetCreationTimestamp())
	acc.SetNamespace(old.GetNamespace())
	acc.SetDeletionTimestamp(old.GetDeletionTimestamp())
	acc.SetDeletionGracePeriodSeconds(old.GetDeletionGracePeriodSeconds())
	acc.SetGeneration(old.GetGeneration())
	acc.SetSelfLink("")
	acc.SetManagedFields(old.GetManagedFields())
	if old.GetDeletionTimestamp() != nil && len(newFinalizers(acc.GetFinalizers(), old.GetFinalizers())) > 0 {
		return nil, false, false, invalid(res, name, field.ErrorList{field.Forbidden(field.NewPath("metadata", "finalizers"),
			"no new finalizers can be added if the object is being deleted, found new finalizers "+fmt.Sprint(newFinalizers(acc.GetFinalizers(), old.GetFinalizers())))})
	}
	if sub == "" {
		if h := res.Hooks.PrepareForUpdate; h != nil {
			h(ctx, obj, cur)
		}
		if res.HasSpec {
			changed := false
			if u, ok := obj.(*unstructured.Unstructured); ok {
				changed = !nonMetaEqual(u, cur.(*unstructured.Unstructured))
			} else {
				changed = !partEqual(obj, cur, "spec")
			}
			if changed {
				acc.SetGeneration(old.GetGeneration() + 1)
			}
		}
		if h := res.Hooks.Default; h != nil {
			h(obj)
		}
	}
	op := &Attributes{Operation: OpUpdate, Resource: res, Subresource: sub, Namespace: old.GetNamespace(), Name: name, Object: obj, OldObject: cur, DryRun: opts.dryRun}
	if u, ok := UserFrom(ctx); ok {
		op.User = u
	}
	if err := s.admit(ctx, op); err != nil {
		return nil, false, false, err
	}
	errs := apimachineryvalidation.ValidateObjectMetaAccessorUpdate(acc, old, field.NewPath("metadata"))
	errs = append(errs, validateMeta(res, acc)...)
	switch sub {
	case "status":
		if h := res.Hooks.ValidateStatusUpdate; h != nil {
			errs = append(errs, h(ctx, obj, cur)...)
		}
	default:
		if h := res.Hooks.Validate; h != nil {
			errs = append(errs, h(ctx, obj)...)
		}
		// Subresources that write the main object (binding, finalize) have
		// their own rules; the spec-update rules apply to the main resource.
		if h := res.Hooks.ValidateUpdate; h != nil && sub == "" {
			errs = append(errs, h(ctx, obj, cur)...)
		}
	}
	if len(errs) > 0 {
		return nil, false, false, invalid(res, name, errs)
	}
	if err := s.validateAdmission(ctx, op); err != nil {
		return nil, false, false, err
	}
	for _, h := range s.storageHooks(res) {
		if err := h.BeforeUpdate(ctx, obj, cur, opts.dryRun); err != nil {
			return nil, false, false, err
		}
	}
	data, err := toStorage(res, obj)
	if err != nil {
		return nil, false, false, err
	}
	curData, err := toStorage(res, cur)
	if err != nil {
		return nil, false, false, err
	}
	deleted := acc.GetDeletionTimestamp() != nil && len(acc.GetFinalizers()) == 0 &&
		(acc.GetDeletionGracePeriodSeconds() == nil || *acc.GetDeletionGracePeriodSeconds() == 0) &&
		!s.pendingFinalization(res, obj)
	if bytes.Equal(data, curData) && !deleted {
		return data, false, false, nil
	}
	return data, true, deleted, nil
}

func newFinalizers(now, before []string) []string {
	had := map[string]bool{}
	for _, f := range before {
		had[f] = true
	}
	var out []string
	for _, f := range now {
		if !had[f] {
			out = append(out, f)
		}
	}
	return out
}
