package crd

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/skiffhq/skiff/controlplane/apiserver/registry"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/util/jsonpath"
)

var allVerbs = []string{"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"}

// KeyPrefix is the etcd prefix of a CRD's objects, shared by all versions.
func KeyPrefix(group, plural string) string {
	return "/registry/" + group + "/" + plural + "/"
}

// storageVersionHash is discovery's hash of the storage version.
func storageVersionHash(group, version, kind string) string {
	sum := sha256.Sum256([]byte(group + "/" + version + "/" + kind))
	return base64.StdEncoding.EncodeToString(sum[:8])
}

func storageVersion(crd *apiextensionsv1.CustomResourceDefinition) string {
	for _, v := range crd.Spec.Versions {
		if v.Storage {
			return v.Name
		}
	}
	return ""
}

// resourcesFor builds the registry entries of a CRD's served versions,
// named by its accepted names.
func resourcesFor(crd *apiextensionsv1.CustomResourceDefinition) []*registry.Resource {
	names := crd.Status.AcceptedNames
	storage := storageVersion(crd)
	var out []*registry.Resource
	for i := range crd.Spec.Versions {
		v := &crd.Spec.Versions[i]
		if !v.Served {
			continue
		}
		r := &registry.Resource{
			Group:              crd.Spec.Group,
			Version:            v.Name,
			Kind:               names.Kind,
			ListKind:           names.ListKind,
			Plural:             names.Plural,
			Singular:           names.Singular,
			ShortNames:         names.ShortNames,
			Categories:         names.Categories,
			Namespaced:         crd.Spec.Scope == apiextensionsv1.NamespaceScoped,
			Verbs:              allVerbs,
			StorageKeyPrefix:   KeyPrefix(crd.Spec.Group, names.Plural),
			HasSpec:            true,
			RequireRVOnUpdate:  true,
			StorageVersionHash: storageVersionHash(crd.Spec.Group, storage, names.Kind),
			CRD:                crd,
		}
		var schema *apiextensionsv1.JSONSchemaProps
		if v.Schema != nil {
			schema = v.Schema.OpenAPIV3Schema
		}
		r.Schema = schema
		if v.Subresources != nil {
			if v.Subresources.Status != nil {
				r.Subresources = append(r.Subresources, "status")
			}
			if v.Subresources.Scale != nil {
				r.Subresources = append(r.Subresources, "scale")
				r.Hooks.Scale = scaleAccess(v.Subresources.Scale)
			}
		}
		installHooks(r, NewSchema(schema), v.AdditionalPrinterColumns)
		if len(crd.Spec.Versions) > 1 && v.Name != storage {
			r.Hooks.FromStorage = setAPIVersion(crd.Spec.Group + "/" + v.Name)
			r.Hooks.ToStorage = setAPIVersion(crd.Spec.Group + "/" + storage)
		} else if len(crd.Spec.Versions) > 1 {
			// Objects written before the storage version changed are
			// still served as this version.
			r.Hooks.FromStorage = setAPIVersion(crd.Spec.Group + "/" + v.Name)
		}
		out = append(out, r)
	}
	return out
}

// setAPIVersion returns a conversion for the None strategy: the object is
// the same in every version, only its apiVersion changes.
func setAPIVersion(gv string) func([]byte) []byte {
	want := []byte(`{"apiVersion":` + quote(gv) + `,`)
	return func(data []byte) []byte {
		if bytes.HasPrefix(data, want) {
			return data
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(data, &m); err != nil {
			return data
		}
		m["apiVersion"] = json.RawMessage(quote(gv))
		out, err := json.Marshal(m)
		if err != nil {
			return data
		}
		return out
	}
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// installHooks gives a custom resource its schema semantics.
func installHooks(r *registry.Resource, sc *Schema, columns []apiextensionsv1.CustomResourceColumnDefinition) {
	prepare := func(obj runtime.Object) {
		u, ok := obj.(*unstructured.Unstructured)
		if !ok {
			return
		}
		sc.Default(u.Object)
		sc.Prune(u.Object)
	}
	r.Hooks.Default = prepare
	r.Hooks.Prune = func(obj runtime.Object) []string {
		u, ok := obj.(*unstructured.Unstructured)
		if !ok {
			return nil
		}
		pruned := sc.Prune(u.Object)
		sort.Strings(pruned)
		return pruned
	}
	if r.HasSubresource("status") {
		r.Hooks.PrepareForCreate = func(_ context.Context, obj runtime.Object) {
			if u, ok := obj.(*unstructured.Unstructured); ok {
				delete(u.Object, "status")
			}
		}
	}
	validate := func(obj runtime.Object) field.ErrorList {
		u, ok := obj.(*unstructured.Unstructured)
		if !ok {
			return nil
		}
		return sc.Validate(u.Object)
	}
	r.Hooks.Validate = func(_ context.Context, obj runtime.Object) field.ErrorList { return validate(obj) }
	r.Hooks.ValidateStatusUpdate = func(_ context.Context, obj, _ runtime.Object) field.ErrorList {
		// The core does not run Default on the status subresource; status
		// is defaulted and pruned here, before the object is checked.
		prepare(obj)
		return validate(obj)
	}
	r.Hooks.Table = tableFor(columns)
}

// scaleAccess maps the scale subresource onto the CRD's JSON paths.
func scaleAccess(sc *apiextensionsv1.CustomResourceSubresourceScale) *registry.ScaleAccess {
	specPath := splitPath(sc.SpecReplicasPath)
	statusPath := splitPath(sc.StatusReplicasPath)
	var selPath []string
	if sc.LabelSelectorPath != nil && *sc.LabelSelectorPath != "" {
		selPath = splitPath(*sc.LabelSelectorPath)
	}
	return &registry.ScaleAccess{
		Get: func(obj runtime.Object) (int32, int32, string) {
			u, ok := obj.(*unstructured.Unstructured)
			if !ok {
				return 0, 0, ""
			}
			spec, _, _ := unstructured.NestedInt64(u.Object, specPath...)
			status, _, _ := unstructured.NestedInt64(u.Object, statusPath...)
			var sel string
			if selPath != nil {
				sel, _, _ = unstructured.NestedString(u.Object, selPath...)
			}
			return int32(spec), int32(status), sel
		},
		Set: func(obj runtime.Object, n int32) {
			if u, ok := obj.(*unstructured.Unstructured); ok {
				_ = unstructured.SetNestedField(u.Object, int64(n), specPath...)
			}
		},
	}
}

func splitPath(p string) []string {
	return strings.Split(strings.TrimPrefix(p, "."), ".")
}

var nameColumn = metav1.TableColumnDefinition{
	Name: "Name", Type: "string", Format: "name",
	Description: "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names",
}

var ageColumn = apiextensionsv1.CustomResourceColumnDefinition{
	Name: "Age", Type: "date", JSONPath: ".metadata.creationTimestamp",
	Description: "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata",
}

type column struct {
	def  apiextensionsv1.CustomResourceColumnDefinition
	path *jsonpath.JSONPath
}

// tableFor renders NAME, then the additional printer columns (AGE when
// the CRD declares none), as upstream's CRD table convertor.
func tableFor(defs []apiextensionsv1.CustomResourceColumnDefinition) *registry.TableConvertor {
	if len(defs) == 0 {
		defs = []apiextensionsv1.CustomResourceColumnDefinition{ageColumn}
	}
	cols := []metav1.TableColumnDefinition{nameColumn}
	var parsed []column
	for _, d := range defs {
		p := jsonpath.New(d.Name)
		p.AllowMissingKeys(true)
		if err := p.Parse("{" + d.JSONPath + "}"); err != nil {
			continue
		}
		parsed = append(parsed, column{def: d, path: p})
		cols = append(cols, metav1.TableColumnDefinition{Name: d.Name, Type: d.Type, Format: d.Format, Description: d.Description, Priority: d.Priority})
	}
	return &registry.TableConvertor{
		Columns: cols,
		Row: func(obj runtime.Object) []interface{} {
			u, ok := obj.(*unstructured.Unstructured)
			if !ok {
				return nil
			}
			cells := make([]interface{}, 0, len(parsed)+1)
			cells = append(cells, u.GetName())
			for _, c := range parsed {
				cells = append(cells, cell(c, u.Object))
			}
			return cells
		},
	}
}

func cell(c column, obj map[string]interface{}) interface{} {
	results, err := c.path.FindResults(obj)
	if err != nil || len(results) == 0 || len(results[0]) == 0 {
		return nil
	}
	value := results[0][0].Interface()
	switch c.def.Type {
	case "string":
		var buf bytes.Buffer
		if err := c.path.PrintResults(&buf, results[0][:1]); err != nil {
			return nil
		}
		return buf.String()
	case "integer":
		switch x := value.(type) {
		case int64:
			return x
		case float64:
			if x == float64(int64(x)) {
				return int64(x)
			}
		}
		return nil
	case "number":
		switch x := value.(type) {
		case int64:
			return x
		case float64:
			return x
		}
		return nil
	case "boolean":
		if b, ok := value.(bool); ok {
			return b
		}
		return nil
	case "date":
		if s, ok := value.(string); ok {
			var t metav1.Time
			if err := t.UnmarshalQueryParameter(s); err != nil {
				return "<invalid>"
			}
			if t.IsZero() {
				return "<unknown>"
			}
			return duration.HumanDuration(time.Since(t.Time))
		}
		return nil
	}
	return fmt.Sprint(value)
}
