package apiserver

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/skiffhq/skiff/controlplane/apiserver/registry"
	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"sigs.k8s.io/yaml"
)

// Patch content types, as upstream.
const (
	jsonPatchType      = "application/json-patch+json"
	mergePatchType     = "application/merge-patch+json"
	strategicPatchType = "application/strategic-merge-patch+json"
	applyPatchType     = "application/apply-patch+yaml"
)

// maxJSONPatchOps bounds the operations of one JSON patch, as upstream.
const maxJSONPatchOps = 10000

// applyPatch applies a patch document of type pt to the JSON of cur.
// schema is a typed object for strategic merge patch (nil for custom
// resources, which do not support it).
func applyPatch(pt string, cur, patch []byte, schema runtime.Object) ([]byte, error) {
	switch pt {
	case jsonPatchType:
		p, err := jsonpatch.DecodePatch(patch)
		if err != nil {
			return nil, badRequest("invalid JSON patch: %v", err)
		}
		if len(p) > maxJSONPatchOps {
			return nil, apierrors.NewRequestEntityTooLargeError(fmt.Sprintf("the allowed maximum operations in a JSON patch is %d, got %d", maxJSONPatchOps, len(p)))
		}
		out, err := p.Apply(cur)
		if err != nil {
			return nil, apierrors.NewGenericServerResponse(http.StatusUnprocessableEntity, "", schemaGR(""), "", err.Error(), 0, false)
		}
		return out, nil
	case mergePatchType:
		if !looksLikeObject(patch) {
			return nil, badRequest("merge patch must be a JSON object")
		}
		out, err := jsonpatch.MergePatch(cur, patch)
		if err != nil {
			return nil, badRequest("invalid merge patch: %v", err)
		}
		return out, nil
	case strategicPatchType:
		if schema == nil {
			return nil, apierrors.NewGenericServerResponse(http.StatusUnsupportedMediaType, "patch", schemaGR(""), "",
				"the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml", 0, false)
		}
		if !looksLikeObject(patch) {
			return nil, badRequest("strategic merge patch must be a JSON object")
		}
		out, err := strategicpatch.StrategicMergePatch(cur, patch, schema)
		if err != nil {
			return nil, apierrors.NewGenericServerResponse(http.StatusUnprocessableEntity, "", schemaGR(""), "", err.Error(), 0, false)
		}
		return out, nil
	case applyPatchType:
		// Server-side apply is approximated by a merge of the applied
		// configuration (see docs/architecture.md: field managers are not
		// tracked, so fields dropped from the configuration are kept).
		j, err := yaml.YAMLToJSON(patch)
		if err != nil {
			return nil, badRequest("invalid apply configuration: %v", err)
		}
		if !looksLikeObject(j) {
			return nil, badRequest("apply configuration must be an object")
		}
		if schema != nil {
			out, err := strategicpatch.StrategicMergePatch(cur, j, schema)
			if err != nil {
				return nil, apierrors.NewGenericServerResponse(http.StatusUnprocessableEntity, "", schemaGR(""), "", err.Error(), 0, false)
			}
			return out, nil
		}
		out, err := jsonpatch.MergePatch(cur, j)
		if err != nil {
			return nil, badRequest("invalid apply configuration: %v", err)
		}
		return out, nil
	}
	return nil, apierrors.NewGenericServerResponse(http.StatusUnsupportedMediaType, "patch", schemaGR(""), "",
		fmt.Sprintf("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got %q)", pt), 0, false)
}

// handlePatch serves PATCH of one object (main resource or status).
func (s *Server) handlePatch(w http.ResponseWriter, r *http.Request, res *registry.Resource, ns, name, sub string) {
	opts, err := parseWriteOpts(r)
	if err != nil {
		writeStatus(w, statusFor(err))
		return
	}
	opts.patch = true
	patch, err := readBody(r)
	if err != nil {
		writeStatus(w, statusFor(err))
		return
	}
	pt := mediaType(r)
	switch pt {
	case jsonPatchType, mergePatchType, strategicPatchType, applyPatchType:
	default:
		writeStatus(w, statusFor(apierrors.NewGenericServerResponse(http.StatusUnsupportedMediaType, "patch", schemaGR(""), "",
			fmt.Sprintf("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got %q)", pt), 0, false)))
		return
	}
	opts.allowCreate = pt == applyPatchType
	var warns []string
	out, code, err := s.update(r.Context(), res, ns, name, sub, opts, func(ctx context.Context, cur runtime.Object) (runtime.Object, error) {
		if cur == nil {
			if pt == applyPatchType {
				return s.applyCreate(patch, res, ns, name, opts)
			}
			return nil, apierrors.NewNotFound(res.GVR().GroupResource(), name)
		}
		curJSON, err := encode(res, cur)
		if err != nil {
			return nil, err
		}
		var schemaObj runtime.Object
		if res.New != nil {
			schemaObj = res.New()
		}
		patched, err := applyPatch(pt, curJSON, patch, schemaObj)
		if err != nil {
			return nil, err
		}
		obj, w, err := decodeObjectJSON(patched, res, opts.fv)
		if err != nil {
			return nil, err
		}
		warns = w
		acc, err := meta.Accessor(obj)
		if err != nil {
			return nil, badRequest("object has no metadata")
		}
		curAcc, _ := meta.Accessor(cur)
		if acc.GetName() != name {
			return nil, badRequest("the name of the object (%s) does not match the name on the URL (%s)", acc.GetName(), name)
		}
		if res.Namespaced && acc.GetNamespace() != ns {
			return nil, badRequest("the namespace of the provided object does not match the namespace sent on the request")
		}
		if acc.GetResourceVersion() == curAcc.GetResourceVersion() && !patchSetsRV(pt, patch) {
			// The patch did not ask for a precondition: retry on conflict.
			acc.SetResourceVersion("")
		}
		return obj, nil
	})
	if err != nil {
		writeStatus(w, statusFor(err))
		return
	}
	addWarnings(w, warns)
	writeJSONBytes(w, r, code, out)
}

// applyCreate creates an object from a server-side apply configuration.
func (s *Server) applyCreate(patch []byte, res *registry.Resource, ns, name string, opts writeOpts) (runtime.Object, error) {
	j, err := yaml.YAMLToJSON(patch)
	if err != nil {
		return nil, badRequest("invalid apply configuration: %v", err)
	}
	obj, _, err := decodeObjectJSON(j, res, opts.fv)
	if err != nil {
		return nil, err
	}
	acc, err := meta.Accessor(obj)
	if err != nil {
		return nil, badRequest("object has no metadata")
	}
	if acc.GetName() != "" && acc.GetName() != name {
		return nil, badRequest("the name of the object (%s) does not match the name on the URL (%s)", acc.GetName(), name)
	}
	acc.SetName(name)
	acc.SetResourceVersion("")
	return obj, nil
}

// patchSetsRV reports whether a patch document sets metadata.resourceVersion.
func patchSetsRV(pt string, patch []byte) bool {
	switch pt {
	case jsonPatchType:
		var ops []map[string]interface{}
		if json.Unmarshal(patch, &ops) != nil {
			return false
		}
		for _, op := range ops {
			if p, _ := op["path"].(string); p == "/metadata/resourceVersion" {
				return true
			}
		}
		return false
	default:
		var m struct {
			Metadata struct {
				ResourceVersion *string `json:"resourceVersion"`
			} `json:"metadata"`
		}
		if pt == applyPatchType {
			j, err := yaml.YAMLToJSON(patch)
			if err != nil {
				return false
			}
			patch = j
		}
		if json.Unmarshal(patch, &m) != nil {
			return false
		}
		return m.Metadata.ResourceVersion != nil
	}
}
