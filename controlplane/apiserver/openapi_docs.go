package apiserver

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/skiffhq/skiff/controlplane/apiserver/registry"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
)

const (
	defObjectMeta    = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
	defListMeta      = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta"
	openAPITitle     = "Kubernetes"
	bearerTokenDesc  = "Bearer Token authentication"
	patchContentJSON = "application/json-patch+json"
)

// Descriptions of the fields every kind has, taken from the API types'
// own documentation.
var (
	descAPIVersion = metav1.TypeMeta{}.SwaggerDoc()["apiVersion"]
	descKind       = metav1.TypeMeta{}.SwaggerDoc()["kind"]
	descObjectMeta = corev1.ConfigMap{}.SwaggerDoc()["metadata"]
	descListMeta   = corev1.ConfigMapList{}.SwaggerDoc()["metadata"]
)

var patchContentTypes = []string{patchContentJSON, "application/merge-patch+json", "application/strategic-merge-patch+json", "application/apply-patch+yaml"}

// openAPIScheme resolves the Go list types of built-in kinds.
var openAPIScheme = sync.OnceValue(func() *runtime.Scheme {
	s := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(s)
	_ = apiextensionsv1.AddToScheme(s)
	return s
})

// metaDefs are the definitions operations refer to.
var metaDefs = sync.OnceValue(func() map[string]string {
	return map[string]string{
		"status":        builtinDefs.define(reflect.TypeFor[metav1.Status]()),
		"deleteOptions": builtinDefs.define(reflect.TypeFor[metav1.DeleteOptions]()),
		"patch":         builtinDefs.define(reflect.TypeFor[metav1.Patch]()),
		"scale":         builtinDefs.define(reflect.TypeFor[autoscalingv1.Scale]()),
		"objectMeta":    builtinDefs.define(reflect.TypeFor[metav1.ObjectMeta]()),
		"listMeta":      builtinDefs.define(reflect.TypeFor[metav1.ListMeta]()),
	}
})

// docBuilder assembles one OpenAPI document (v2: every resource; v3: one
// group version).
type docBuilder struct {
	v       oaVersion
	version string // server version for info.version
	roots   []string
	gvks    map[string][]map[string]string
	// custom holds definitions of custom resources, already rendered.
	custom map[string]json.RawMessage
	// paths holds each path item, already JSON.
	paths map[string]json.RawMessage
}

func newDocBuilder(v oaVersion, version string) *docBuilder {
	md := metaDefs()
	return &docBuilder{
		v: v, version: version,
		roots:  []string{md["status"], md["deleteOptions"], md["patch"], md["objectMeta"], md["listMeta"]},
		gvks:   map[string][]map[string]string{},
		custom: map[string]json.RawMessage{},
		paths:  map[string]json.RawMessage{},
	}
}

func (b *docBuilder) addGVK(def string, gvk schema.GroupVersionKind) {
	for _, e := range b.gvks[def] {
		if e["group"] == gvk.Group && e["version"] == gvk.Version && e["kind"] == gvk.Kind {
			return
		}
	}
	b.gvks[def] = append(b.gvks[def], map[string]string{"group": gvk.Group, "version": gvk.Version, "kind": gvk.Kind})
}

// addResource adds r's definitions and paths.
func (b *docBuilder) addResource(r *registry.Resource) error {
	itemDef, listDef, err := b.resourceDefs(r)
	if err != nil {
		return err
	}
	b.addGVK(itemDef, r.GVK())
	b.addGVK(listDef, schema.GroupVersionKind{Group: r.Group, Version: r.Version, Kind: r.ListKind})
	b.addPaths(r, itemDef, listDef)
	return nil
}

// resourceDefs returns the definition names of r's kind and list kind.
func (b *docBuilder) resourceDefs(r *registry.Resource) (string, string, error) {
	if r.New == nil {
		return b.customDefs(r)
	}
	t := reflect.TypeOf(r.New())
	item := builtinDefs.define(t)
	b.roots = append(b.roots, item)
	if obj, err := openAPIScheme().New(schema.GroupVersionKind{Group: r.Group, Version: r.Version, Kind: r.ListKind}); err == nil {
		list := builtinDefs.define(reflect.TypeOf(obj))
		b.roots = append(b.roots, list)
		return item, list, nil
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	list := packageDefPrefix(t.PkgPath()) + "." + r.ListKind
	if err := b.addListDef(r, list, item); err != nil {
		return "", "", err
	}
	return item, list, nil
}

func (b *docBuilder) addListDef(r *registry.Resource, list, item string) error {
	s := &oaSchema{
		Description: r.ListKind + " is a list of " + r.Kind,
		Type:        "object",
		Properties: map[string]*oaSchema{
			"apiVersion": {Type: "string", Description: descAPIVersion},
			"kind":       {Type: "string", Description: descKind},
			"metadata":   {Ref: defListMeta, Description: descListMeta},
			"items":      {Type: "array", Description: "List of " + strings.ToLower(r.Kind[:1]) + r.Kind[1:] + "s.", Items: &oaSchema{Ref: item}},
		},
		Required: []string{"items"},
	}
	raw, err := renderDefinition(list, s, b.v, []map[string]string{{"group": r.Group, "version": r.Version, "kind": r.ListKind}})
	if err != nil {
		return err
	}
	b.custom[list] = raw
	return nil
}

// customDefName is upstream's definition name of a custom resource kind:
// the reversed group, the version, the kind (com.example.stable.v1.CronTab).
func customDefName(group, version, kind string) string {
	parts := strings.Split(group, ".")
	for i, j := 0, len(parts)-1; i < j; i, j = i+1, j-1 {
		parts[i], parts[j] = parts[j], parts[i]
	}
	return strings.Join(parts, ".") + "." + version + "." + kind
}

func (b *docBuilder) customDefs(r *registry.Resource) (string, string, error) {
	item := customDefName(r.Group, r.Version, r.Kind)
	list := customDefName(r.Group, r.Version, r.ListKind)
	m := map[string]any{"type": "object", "x-kubernetes-preserve-unknown-fields": true}
	if r.Schema != nil {
		raw, err := json.Marshal(r.Schema)
		if err != nil {
			return "", "", fmt.Errorf("custom resource %s schema: %w", r.GVK(), err)
		}
		m = map[string]any{}
		if err := json.Unmarshal(raw, &m); err != nil {
			return "", "", fmt.Errorf("custom resource %s schema: %w", r.GVK(), err)
		}
	}
	if b.v == oaV2 {
		sanitizeV2(m)
	}
	props, _ := m["properties"].(map[string]any)
	if props == nil {
		props = map[string]any{}
	}
	props["apiVersion"] = map[string]any{"type": "string", "description": descAPIVersion}
	props["kind"] = map[string]any{"type": "string", "description": descKind}
	props["metadata"] = renderSchema(&oaSchema{Ref: defObjectMeta, Description: descObjectMeta}, b.v)
	m["properties"] = props
	m["type"] = "object"
	m["x-kubernetes-group-version-kind"] = []map[string]string{{"group": r.Group, "version": r.Version, "kind": r.Kind}}
	raw, err := json.Marshal(m)
	if err != nil {
		return "", "", fmt.Errorf("custom resource %s schema: %w", r.GVK(), err)
	}
	b.custom[item] = raw
	if err := b.addListDef(r, list, item); err != nil {
		return "", "", err
	}
	return item, list, nil
}

// sanitizeV2 removes from a custom resource schema what swagger 2.0 (and
// kubectl's v2 model parser) cannot express, as upstream does when it
// publishes CRD schemas in /openapi/v2.
func sanitizeV2(m map[string]any) {
	for _, k := range []string{"nullable", "oneOf", "anyOf", "allOf", "not", "id", "$schema", "definitions", "dependencies", "patternProperties", "additionalItems"} {
		delete(m, k)
	}
	if v, _ := m["x-kubernetes-int-or-string"].(bool); v {
		delete(m, "type")
	}
	if props, ok := m["properties"].(map[string]any); ok {
		for _, p := range props {
			if pm, ok := p.(map[string]any); ok {
				sanitizeV2(pm)
			}
		}
	}
	if ap, ok := m["additionalProperties"].(map[string]any); ok {
		sanitizeV2(ap)
	}
	switch it := m["items"].(type) {
	case map[string]any:
		sanitizeV2(it)
	case nil:
		if m["type"] == "array" {
			delete(m, "type")
		}
	default:
		delete(m, "items")
		if m["type"] == "array" {
			delete(m, "type")
		}
	}
}

// definitions renders every definition the document needs.
func (b *docBuilder) definitions() (map[string]json.RawMessage, error) {
	out := map[string]json.RawMessage{}
	for name, s := range builtinDefs.closure(b.roots) {
		raw, err := renderDefinition(name, s, b.v, b.gvks[name])
		if err != nil {
			return nil, fmt.Errorf("openapi definition %s: %w", name, err)
		}
		out[name] = raw
	}
	for name, raw := range b.custom {
		out[name] = raw
	}
	return out, nil
}

func (b *docBuilder) marshal() ([]byte, error) {
	defs, err := b.definitions()
	if err != nil {
		return nil, err
	}
	info := map[string]any{"title": openAPITitle, "version": b.version}
	security := map[string]any{"BearerToken": map[string]any{"type": "apiKey", "name": "authorization", "in": "header", "description": bearerTokenDesc}}
	// Definitions and path items are already JSON: they are spliced in as
	// they are rather than handed to encoding/json, which would re-scan
	// every byte.
	const defsMarker, pathsMarker = "\x00definitions\x00", "\x00paths\x00"
	var doc map[string]any
	if b.v == oaV2 {
		doc = map[string]any{
			"swagger":             "2.0",
			"info":                info,
			"paths":               pathsMarker,
			"definitions":         defsMarker,
			"securityDefinitions": security,
			"security":            []any{map[string]any{"BearerToken": []string{}}},
		}
	} else {
		doc = map[string]any{
			"openapi":    "3.0.0",
			"info":       info,
			"paths":      pathsMarker,
			"components": map[string]any{"schemas": defsMarker, "securitySchemes": security},
		}
	}
	out, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	if out, err = splice(out, defsMarker, defs); err != nil {
		return nil, err
	}
	return splice(out, pathsMarker, b.paths)
}

// splice replaces the JSON string marker in doc by the object of members.
func splice(doc []byte, marker string, members map[string]json.RawMessage) ([]byte, error) {
	quoted, _ := json.Marshal(marker)
	before, after, found := bytes.Cut(doc, quoted)
	if !found {
		return nil, fmt.Errorf("openapi document: placeholder %q lost", marker)
	}
	names := make([]string, 0, len(members))
	size := len(doc)
	for n, raw := range members {
		names = append(names, n)
		size += len(n) + len(raw) + 4
	}
	sort.Strings(names)
	out := make([]byte, 0, size)
	out = append(out, before...)
	out = append(out, '{')
	for i, n := range names {
		if i > 0 {
			out = append(out, ',')
		}
		out = strconv.AppendQuote(out, n)
		out = append(out, ':')
		out = append(out, members[n]...)
	}
	out = append(out, '}')
	return append(out, after...), nil
}

// gvDocPath is the OpenAPI v3 discovery key of a group version.
func gvDocPath(group, version string) string {
	if group == "" {
		return "api/" + version
	}
	return "apis/" + group + "/" + version
}

// sortedResources groups the registry's resources by v3 document path.
func resourcesByGV(all []*registry.Resource) (map[string][]*registry.Resource, []string) {
	byGV := map[string][]*registry.Resource{}
	for _, r := range all {
		p := gvDocPath(r.Group, r.Version)
		byGV[p] = append(byGV[p], r)
	}
	keys := make([]string, 0, len(byGV))
	for k := range byGV {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return byGV, keys
}
