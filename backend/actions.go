package backend

import (
	"encoding/json"
	"net/http"

	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
)

// Actions the detail pages take (rollout restart and undo, cordon and
// uncordon, drain), each a plain API call as the user: the browser
// composes the patch (web/src/rollout.ts, drain.ts) and orchestrates a
// drain pod by pod, so every step is visible and authorized by the API
// server as the session's user.

// patchTypes maps the body's "type" to the API's patch content types.
// objectBody names one object in a request body of the dashboard's API.
type objectBody struct {
	Group     string `json:"group"`
	Version   string `json:"version"`
	Resource  string `json:"resource"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

func (o objectBody) gvr() schema.GroupVersionResource {
	return schema.GroupVersionResource{Group: o.Group, Version: o.Version, Resource: o.Resource}
}

var patchTypes = map[string]types.PatchType{
	"merge": types.MergePatchType,
	"json":  types.JSONPatchType,
}

// patch applies a merge or JSON patch to one object as the user:
// {"group","version","resource","namespace","name","type":"merge"|"json","patch":…}.
func (s *Server) patch(w http.ResponseWriter, r *http.Request) {
	sess := sessionFrom(r.Context())
	t, ok := s.targetFor(w, r)
	if !ok {
		return
	}
	var body struct {
		objectBody
		Type  string          `json:"type"`
		Patch json.RawMessage `json:"patch"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&body); err != nil {
		writeError(w, http.StatusBadRequest, "bad patch request: "+err.Error())
		return
	}
	pt, known := patchTypes[body.Type]
	if !known || body.Name == "" || body.Resource == "" || body.Version == "" || len(body.Patch) == 0 {
		writeError(w, http.StatusBadRequest, `resource, version, name, type ("merge" or "json") and patch are required`)
		return
	}
	gvr := body.gvr()
	out, err := resourceClient(t.dynamic, gvr, body.Namespace).Patch(r.Context(), body.Name, pt, body.Patch, metav1.PatchOptions{FieldManager: "skiff-dashboard"})
	if err != nil {
		writeAPIError(w, err)
		return
	}
	s.log.Info("dashboard patch", "user", sess.user, "cluster", t.cluster, "resource", gvr.Resource, "namespace", body.Namespace, "name", body.Name, "type", body.Type)
	writeJSON(w, http.StatusOK, out.Object)
}

// evict evicts one pod through its eviction subresource (policy/v1) as
// the user: {"namespace","name"}. A PodDisruptionBudget's refusal is the
// API server's 429, passed on.
func (s *Server) evict(w http.ResponseWriter, r *http.Request) {
	sess := sessionFrom(r.Context())
	t, ok := s.targetFor(w, r)
	if !ok {
		return
	}
	var body struct {
		Namespace string `json:"namespace"`
		Name      string `json:"name"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&body); err != nil {
		writeError(w, http.StatusBadRequest, "bad eviction request: "+err.Error())
		return
	}
	if body.Namespace == "" || body.Name == "" {
		writeError(w, http.StatusBadRequest, "namespace and name are required")
		return
	}
	err := t.client.PolicyV1().Evictions(body.Namespace).Evict(r.Context(), &policyv1.Eviction{
		ObjectMeta: metav1.ObjectMeta{Namespace: body.Namespace, Name: body.Name},
	})
	if err != nil {
		writeAPIError(w, err)
		return
	}
	s.log.Info("dashboard evict", "user", sess.user, "cluster", t.cluster, "namespace", body.Namespace, "name", body.Name)
	writeJSON(w, http.StatusOK, map[string]string{"status": "evicted"})
}
