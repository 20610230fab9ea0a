package backend

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"
)

// writeAPIError passes the API server's answer (status code, message,
// reason) on to the browser.
func writeAPIError(w http.ResponseWriter, err error) {
	var st apierrors.APIStatus
	if errors.As(err, &st) {
		s := st.Status()
		code := int(s.Code)
		if code == 0 {
			code = http.StatusBadGateway
		}
		writeJSON(w, code, apiError{Code: code, Message: s.Message, Reason: string(s.Reason)})
		return
	}
	if errors.Is(err, context.DeadlineExceeded) {
		writeError(w, http.StatusGatewayTimeout, err.Error())
		return
	}
	writeError(w, http.StatusBadGateway, err.Error())
}

// Resource is one kind the API serves, from discovery.
type Resource struct {
	Group      string   `json:"group"`
	Version    string   `json:"version"`
	Resource   string   `json:"resource"`
	Kind       string   `json:"kind"`
	Namespaced bool     `json:"namespaced"`
	Verbs      []string `json:"verbs"`
	ShortNames []string `json:"shortNames,omitempty"`
}

// discoveryHandler lists every kind the API serves (CRDs included), in
// each group's preferred version, as the user sees them.
func (s *Server) discoveryHandler(w http.ResponseWriter, r *http.Request) {
	t, ok := s.targetFor(w, r)
	if !ok {
		return
	}
	lists, err := t.discovery.ServerPreferredResources()
	if err != nil && len(lists) == 0 {
		writeAPIError(w, err)
		return
	}
	out := []Resource{}
	for _, l := range lists {
		gv, perr := schema.ParseGroupVersion(l.GroupVersion)
		if perr != nil {
			continue
		}
		for _, res := range l.APIResources {
			if strings.Contains(res.Name, "/") {
				continue
			}
			out = append(out, Resource{Group: gv.Group, Version: gv.Version, Resource: res.Name, Kind: res.Kind,
				Namespaced: res.Namespaced, Verbs: res.Verbs, ShortNames: res.ShortNames})
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// rulesHandler answers the user's SelfSubjectRulesReview for a namespace,
// which the UI uses to hide actions the user may not take.
func (s *Server) rulesHandler(w http.ResponseWriter, r *http.Request) {
	t, ok := s.targetFor(w, r)
	if !ok {
		return
	}
	ns := r.URL.Query().Get("namespace")
	if ns == "" {
		ns = "default"
	}
	rev, err := t.client.AuthorizationV1().SelfSubjectRulesReviews().Create(r.Context(),
		&authzv1.SelfSubjectRulesReview{Spec: authzv1.SelfSubjectRulesReviewSpec{Namespace: ns}}, metav1.CreateOptions{})
	if err != nil {
		writeAPIError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, rev.Status)
}

// canI asks the API server whether client's user (the session's user,
// or a member's credentials) may do verb.
func canI(ctx context.Context, client kubernetes.Interface, verb string, gvr schema.GroupVersionResource, ns, sub string) (bool, error) {
	return accessReview(ctx, client, authzv1.ResourceAttributes{
		Namespace: ns, Verb: verb, Group: gvr.Group, Version: gvr.Version, Resource: gvr.Resource, Subresource: sub,
	})
}

// accessHandler answers one SelfSubjectAccessReview
// (?verb=&group=&resource=&namespace=&subresource=).
func (s *Server) accessHandler(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	t, found := s.targetFor(w, r)
	if !found {
		return
	}
	ok, err := canI(r.Context(), t.client, q.Get("verb"),
		schema.GroupVersionResource{Group: q.Get("group"), Resource: q.Get("resource")}, q.Get("namespace"), q.Get("subresource"))
	if err != nil {
		writeAPIError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]bool{"allowed": ok})
}

// objectRef reads ?group=&version=&resource=&namespace=&name=.
func objectRef(r *http.Request) (schema.GroupVersionResource, string, string, error) {
	q := r.URL.Query()
	gvr := schema.GroupVersionResource{Group: q.Get("group"), Version: q.Get("version"), Resource: q.Get("resource")}
	if gvr.Version == "" || gvr.Resource == "" || q.Get("name") == "" {
		return gvr, "", "", errors.New("version, resource and name are required")
	}
	return gvr, q.Get("namespace"), q.Get("name"), nil
}

func resourceClient(d dynamic.Interface, gvr schema.GroupVersionResource, ns string) dynamic.ResourceInterface {
	if ns == "" {
		return d.Resource(gvr)
	}
	return d.Resource(gvr).Namespace(ns)
}

// getObject returns one object as the user (?format=yaml for YAML).
func (s *Server) getObject(w http.ResponseWriter, r *http.Request) {
	gvr, ns, name, err := objectRef(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	t, ok := s.targetFor(w, r)
	if !ok {
		return
	}
	obj, err := resourceClient(t.dynamic, gvr, ns).Get(r.Context(), name, metav1.GetOptions{})
	if err != nil {
		writeAPIError(w, err)
		return
	}
	if r.URL.Query().Get("format") == "yaml" {
		obj.SetManagedFields(nil)
		b, err := yaml.Marshal(obj.Object)
		if err != nil {
			writeError(w, http.StatusInternalServerError, err.Error())
			return
		}
		w.Header().Set("Content-Type", "application/yaml")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(b)
		return
	}
	writeJSON(w, http.StatusOK, obj.Object)
}

func (s *Server) deleteObject(w http.ResponseWriter, r *http.Request) {
	gvr, ns, name, err := objectRef(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	sess := sessionFrom(r.Context())
	t, ok := s.targetFor(w, r)
	if !ok {
		return
	}
	if err := resourceClient(t.dynamic, gvr, ns).Delete(r.Context(), name, metav1.DeleteOptions{}); err != nil {
		writeAPIError(w, err)
		return
	}
	s.log.Info("dashboard delete", "user", sess.user, "cluster", t.cluster, "resource", gvr.Resource, "namespace", ns, "name", name)
	writeJSON(w, http.StatusOK, map[string]string{"status": "deleted"})
}

// resolveKind finds the resource of apiVersion/kind through the user's
// discovery.
func resolveKind(t *target, apiVersion, kind string) (schema.GroupVersionResource, bool, error) {
	gv, err := schema.ParseGroupVersion(apiVersion)
	if err != nil {
		return schema.GroupVersionResource{}, false, fmt.Errorf("apiVersion %q: %w", apiVersion, err)
	}
	list, err := t.discovery.ServerResourcesForGroupVersion(apiVersion)
	if err != nil {
		return schema.GroupVersionResource{}, false, fmt.Errorf("apiVersion %q is not served: %w", apiVersion, err)
	}
	for _, res := range list.APIResources {
		if res.Kind == kind && !strings.Contains(res.Name, "/") {
			return gv.WithResource(res.Name), res.Namespaced, nil
		}
	}
	return schema.GroupVersionResource{}, false, fmt.Errorf("kind %q is not served in %s", kind, apiVersion)
}

// apply creates or updates the YAML (or JSON) object in the body as the
// user: with metadata.resourceVersion it is an update (a stale version is
// a 409 Conflict), without one a create, or a server-side apply when the
// object exists. With ?create=1 it is always a create (kubectl create): an
// existing object is the API server's 409 AlreadyExists.
func (s *Server) apply(w http.ResponseWriter, r *http.Request) {
	sess := sessionFrom(r.Context())
	t, ok := s.targetFor(w, r)
	if !ok {
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 3<<20))
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, err.Error())
		return
	}
	js, err := yaml.YAMLToJSON(body)
	if err != nil {
		writeError(w, http.StatusBadRequest, "the YAML does not parse: "+err.Error())
		return
	}
	obj := &unstructured.Unstructured{}
	if err := obj.UnmarshalJSON(js); err != nil {
		writeError(w, http.StatusBadRequest, "not a Kubernetes object: "+err.Error())
		return
	}
	if obj.GetName() == "" {
		writeError(w, http.StatusBadRequest, "metadata.name is required")
		return
	}
	gvr, namespaced, err := resolveKind(t, obj.GetAPIVersion(), obj.GetKind())
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	ns := obj.GetNamespace()
	if namespaced && ns == "" {
		ns = r.URL.Query().Get("namespace")
		if ns == "" {
			ns = "default"
		}
		obj.SetNamespace(ns)
	}
	if !namespaced {
		ns = ""
	}
	rc := resourceClient(t.dynamic, gvr, ns)
	obj.SetManagedFields(nil)
	var out *unstructured.Unstructured
	action := "update"
	createOnly := r.URL.Query().Get("create") == "1"
	if obj.GetResourceVersion() != "" && !createOnly {
		out, err = rc.Update(r.Context(), obj, metav1.UpdateOptions{FieldManager: "skiff-dashboard"})
	} else {
		action = "create"
		out, err = rc.Create(r.Context(), obj, metav1.CreateOptions{FieldManager: "skiff-dashboard"})
		// ?create=1 (the create page) is kubectl create: an existing
		// object is the API server's 409 AlreadyExists, not applied over.
		if apierrors.IsAlreadyExists(err) && !createOnly {
			action = "apply"
			var data []byte
			data, err = json.Marshal(obj.Object)
			if err == nil {
				force := true
				out, err = rc.Patch(r.Context(), obj.GetName(), types.ApplyPatchType, data,
					metav1.PatchOptions{FieldManager: "skiff-dashboard", Force: &force})
			}
		}
	}
	if err != nil {
		writeAPIError(w, err)
		return
	}
	s.log.Info("dashboard apply", "user", sess.user, "cluster", t.cluster, "action", action, "resource", gvr.Resource, "namespace", ns, "name", obj.GetName())
	writeJSON(w, http.StatusOK, map[string]any{"action": action, "object": out.Object})
}

// scale sets replicas through the scale subresource as the user.
func (s *Server) scale(w http.ResponseWriter, r *http.Request) {
	sess := sessionFrom(r.Context())
	t, ok := s.targetFor(w, r)
	if !ok {
		return
	}
	var body struct {
		objectBody
		Replicas *int32 `json:"replicas"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&body); err != nil {
		writeError(w, http.StatusBadRequest, "bad scale request: "+err.Error())
		return
	}
	if body.Replicas == nil || *body.Replicas < 0 || body.Name == "" || body.Resource == "" || body.Version == "" {
		writeError(w, http.StatusBadRequest, "resource, version, name and replicas >= 0 are required")
		return
	}
	gvr := body.gvr()
	patch := fmt.Appendf(nil, `{"spec":{"replicas":%d}}`, *body.Replicas)
	out, err := resourceClient(t.dynamic, gvr, body.Namespace).Patch(r.Context(), body.Name, types.MergePatchType, patch, metav1.PatchOptions{}, "scale")
	if err != nil {
		writeAPIError(w, err)
		return
	}
	s.log.Info("dashboard scale", "user", sess.user, "cluster", t.cluster, "resource", gvr.Resource, "namespace", body.Namespace, "name", body.Name, "replicas", *body.Replicas)
	writeJSON(w, http.StatusOK, out.Object)
}

// logs streams a pod's log as the user (?namespace=&name=&container=
// &follow=1&tailLines=N&timestamps=1&previous=1), flushing each line.
func (s *Server) logs(w http.ResponseWriter, r *http.Request) {
	t, ok := s.targetFor(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	opts := &corev1.PodLogOptions{
		Container:  q.Get("container"),
		Follow:     q.Get("follow") == "1",
		Timestamps: q.Get("timestamps") == "1",
		Previous:   q.Get("previous") == "1",
	}
	if t := q.Get("tailLines"); t != "" {
		n, err := strconv.ParseInt(t, 10, 64)
		if err != nil {
			writeError(w, http.StatusBadRequest, "tailLines: "+err.Error())
			return
		}
		opts.TailLines = &n
	}
	stream, err := t.client.CoreV1().Pods(q.Get("namespace")).GetLogs(q.Get("name"), opts).Stream(r.Context())
	if err != nil {
		writeAPIError(w, err)
		return
	}
	defer stream.Close()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	br := bufio.NewReader(stream)
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			if _, werr := w.Write(line); werr != nil {
				return
			}
			if br.Buffered() == 0 {
				_ = rc.Flush()
			}
		}
		if err != nil {
			_ = rc.Flush()
			return
		}
	}
}
