package apiserver

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"

	"github.com/skiffhq/skiff/controlplane/apiserver/registry"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// oaParam is a query or path parameter of an operation.
type oaParam struct {
	name, in, desc, typ string
	required, unique    bool
}

var (
	paramName      = oaParam{name: "name", in: "path", desc: "name of the object", typ: "string", required: true, unique: true}
	paramNamespace = oaParam{name: "namespace", in: "path", desc: "namespace of the object", typ: "string", required: true, unique: true}
	paramPretty    = oaParam{name: "pretty", in: "query", desc: "'true' indents the response for reading.", typ: "string", unique: true}
	paramDryRun    = oaParam{name: "dryRun", in: "query", desc: "'All' runs every stage of the request without persisting the result.", typ: "string", unique: true}
	paramManager   = oaParam{name: "fieldManager", in: "query", desc: "name of the actor making the change, recorded as the field manager.", typ: "string", unique: true}
	// paramFieldValidation tells kubectl (QueryParamVerifierV3) that the
	// server validates fields itself, so it sends fieldValidation=Strict
	// instead of validating on the client.
	paramFieldValidation = oaParam{name: "fieldValidation", in: "query", desc: "how the server treats unknown or duplicate fields in the request body: 'Ignore' drops them silently, 'Warn' drops them with a warning header per field, 'Strict' rejects the request with a BadRequest listing them.", typ: "string", unique: true}
	paramForce           = oaParam{name: "force", in: "query", desc: "'true' lets an apply request take over fields owned by other managers; only valid for apply patches.", typ: "boolean", unique: true}
	paramGrace           = oaParam{name: "gracePeriodSeconds", in: "query", desc: "seconds to wait before the object is deleted; 0 deletes at once, unset uses the kind's default.", typ: "integer", unique: true}
	paramOrphan          = oaParam{name: "orphanDependents", in: "query", desc: "deprecated in favour of propagationPolicy: 'true' orphans the object's dependents.", typ: "boolean", unique: true}
	paramPropagation     = oaParam{name: "propagationPolicy", in: "query", desc: "garbage collection of dependents: 'Orphan', 'Background' or 'Foreground'.", typ: "string", unique: true}
	listParams           = []oaParam{
		{name: "allowWatchBookmarks", in: "query", desc: "'true' asks a watch for BOOKMARK events.", typ: "boolean", unique: true},
		{name: "continue", in: "query", desc: "token from the previous page of a paginated list.", typ: "string", unique: true},
		{name: "fieldSelector", in: "query", desc: "restricts the objects returned by their fields.", typ: "string", unique: true},
		{name: "labelSelector", in: "query", desc: "restricts the objects returned by their labels.", typ: "string", unique: true},
		{name: "limit", in: "query", desc: "largest number of objects to return in one page.", typ: "integer", unique: true},
		{name: "resourceVersion", in: "query", desc: "which resource versions the response may be served from.", typ: "string", unique: true},
		{name: "resourceVersionMatch", in: "query", desc: "how resourceVersion is applied to a list: 'Exact' or 'NotOlderThan'.", typ: "string", unique: true},
		{name: "sendInitialEvents", in: "query", desc: "with watch=true, starts the watch with the current objects as ADDED events.", typ: "boolean", unique: true},
		{name: "timeoutSeconds", in: "query", desc: "ends the list or watch call after this many seconds.", typ: "integer", unique: true},
		{name: "watch", in: "query", desc: "'true' streams changes to the objects instead of listing them.", typ: "boolean", unique: true},
	}
	writeParams  = []oaParam{paramDryRun, paramManager, paramFieldValidation}
	patchParams  = []oaParam{paramDryRun, paramManager, paramFieldValidation, paramForce}
	deleteParams = []oaParam{paramDryRun, paramGrace, paramOrphan, paramPropagation}
)

func (p oaParam) render(v oaVersion) map[string]any {
	m := map[string]any{"name": p.name, "in": p.in, "description": p.desc}
	if p.required {
		m["required"] = true
	}
	if v == oaV2 {
		m["type"] = p.typ
		if p.unique {
			m["uniqueItems"] = true
		}
	} else {
		sch := map[string]any{"type": p.typ}
		if p.unique {
			sch["uniqueItems"] = true
		}
		m["schema"] = sch
	}
	return m
}

func renderParams(v oaVersion, ps ...[]oaParam) []any {
	var out []any
	for _, l := range ps {
		for _, p := range l {
			out = append(out, p.render(v))
		}
	}
	return out
}

// groupIdent is upstream's operation-id spelling of a group:
// "" → Core, rbac.authorization.k8s.io → RbacAuthorization.
func groupIdent(group string) string {
	if group == "" {
		return "Core"
	}
	group = strings.TrimSuffix(group, ".k8s.io")
	var b strings.Builder
	for _, part := range strings.FieldsFunc(group, func(r rune) bool { return r == '.' || r == '-' }) {
		b.WriteString(strings.ToUpper(part[:1]) + part[1:])
	}
	return b.String()
}

func groupTag(group, version string) string {
	id := groupIdent(group)
	return strings.ToLower(id[:1]) + id[1:] + "_" + version
}

// opSpec describes one operation of a resource path.
type opSpec struct {
	method, action, id, desc string
	gvk                      schema.GroupVersionKind
	params                   []any
	body                     string // request body definition
	patch                    bool
	resp                     string // response definition
	created                  bool   // also answers 201
}

func (b *docBuilder) renderOp(o opSpec, tag string) map[string]any {
	v := b.v
	op := map[string]any{
		"description":         o.desc,
		"operationId":         o.id,
		"tags":                []string{tag},
		"responses":           b.responses(o),
		"x-kubernetes-action": o.action,
		"x-kubernetes-group-version-kind": map[string]string{
			"group": o.gvk.Group, "version": o.gvk.Version, "kind": o.gvk.Kind,
		},
	}
	params := o.params
	if v == oaV2 {
		op["schemes"] = []string{"https"}
		op["produces"] = []string{"application/json", "application/yaml", "application/vnd.kubernetes.protobuf"}
		consumes := []string{"*/*"}
		if o.patch {
			consumes = patchContentTypes
		}
		op["consumes"] = consumes
		if o.body != "" {
			params = append([]any{map[string]any{"name": "body", "in": "body", "required": true, "schema": map[string]any{"$ref": v.ref(o.body)}}}, params...)
		}
	} else if o.body != "" {
		types := []string{"*/*"}
		if o.patch {
			types = patchContentTypes
		}
		content := map[string]any{}
		for _, t := range types {
			content[t] = map[string]any{"schema": map[string]any{"$ref": v.ref(o.body)}}
		}
		op["requestBody"] = map[string]any{"content": content, "required": true}
	}
	if len(params) > 0 {
		op["parameters"] = params
	}
	return op
}

func (b *docBuilder) responses(o opSpec) map[string]any {
	one := func(desc string) map[string]any {
		if b.v == oaV2 {
			return map[string]any{"description": desc, "schema": map[string]any{"$ref": b.v.ref(o.resp)}}
		}
		content := map[string]any{}
		for _, t := range []string{"application/json", "application/yaml", "application/vnd.kubernetes.protobuf"} {
			content[t] = map[string]any{"schema": map[string]any{"$ref": b.v.ref(o.resp)}}
		}
		return map[string]any{"description": desc, "content": content}
	}
	out := map[string]any{"200": one("OK"), "401": map[string]any{"description": "Unauthorized"}}
	if o.created {
		out["201"] = one("Created")
		out["202"] = one("Accepted")
	}
	return out
}

// renderedPaths caches the path items of a resource by everything they
// depend on, so that rebuilding documents after a registry change only
// renders the resources that are new.
var renderedPaths sync.Map // pathsKey → map[string]json.RawMessage

type pathsKey struct {
	v                                     oaVersion
	group, version, kind, plural, itemDef string
	listDef, verbs, subresources          string
	namespaced                            bool
}

func (b *docBuilder) addPath(into map[string]json.RawMessage, path string, pathParams []oaParam, tag string, ops ...opSpec) {
	item := map[string]any{}
	for _, o := range ops {
		item[o.method] = b.renderOp(o, tag)
	}
	if len(item) == 0 {
		return
	}
	item["parameters"] = renderParams(b.v, pathParams)
	raw, err := json.Marshal(item)
	if err != nil {
		// Only maps of strings, slices and bools: cannot fail.
		panic(fmt.Sprintf("openapi path %s: %v", path, err))
	}
	into[path] = raw
}

func hasVerb(r *registry.Resource, verb string) bool {
	for _, v := range r.Verbs {
		if v == verb {
			return true
		}
	}
	return false
}

// addPaths adds the collection, item and subresource paths of r.
func (b *docBuilder) addPaths(r *registry.Resource, itemDef, listDef string) {
	md := metaDefs()
	for _, sub := range r.Subresources {
		if sub == "scale" {
			b.roots = append(b.roots, md["scale"])
		}
	}
	key := pathsKey{v: b.v, group: r.Group, version: r.Version, kind: r.Kind, plural: r.Plural, itemDef: itemDef,
		listDef: listDef, verbs: strings.Join(r.Verbs, ","), subresources: strings.Join(r.Subresources, ","), namespaced: r.Namespaced}
	cached, ok := renderedPaths.Load(key)
	if !ok {
		paths := map[string]json.RawMessage{}
		b.renderPaths(paths, r, itemDef, listDef)
		cached, _ = renderedPaths.LoadOrStore(key, paths)
	}
	for p, raw := range cached.(map[string]json.RawMessage) {
		b.paths[p] = raw
	}
}

func (b *docBuilder) renderPaths(into map[string]json.RawMessage, r *registry.Resource, itemDef, listDef string) {
	v := b.v
	md := metaDefs()
	base := "/apis/" + r.Group + "/" + r.Version
	if r.Group == "" {
		base = "/api/" + r.Version
	}
	tag := groupTag(r.Group, r.Version)
	gv := groupIdent(r.Group) + strings.ToUpper(r.Version[:1]) + r.Version[1:]
	scope := ""
	coll := base + "/" + r.Plural
	collParams := []oaParam{paramPretty}
	itemParams := []oaParam{paramName, paramPretty}
	if r.Namespaced {
		scope = "Namespaced"
		coll = base + "/namespaces/{namespace}/" + r.Plural
		collParams = []oaParam{paramNamespace, paramPretty}
		itemParams = []oaParam{paramName, paramNamespace, paramPretty}
	}
	gvk := r.GVK()
	kind := r.Kind
	var collOps, itemOps []opSpec
	if hasVerb(r, "list") {
		collOps = append(collOps, opSpec{method: "get", action: "list", id: "list" + gv + scope + kind,
			desc: "list or watch objects of kind " + kind, gvk: gvk, params: renderParams(v, listParams), resp: listDef})
	}
	if hasVerb(r, "create") {
		collOps = append(collOps, opSpec{method: "post", action: "post", id: "create" + gv + scope + kind,
			desc: "create " + a(kind), gvk: gvk, params: renderParams(v, writeParams), body: itemDef, resp: itemDef, created: true})
	}
	if hasVerb(r, "deletecollection") {
		collOps = append(collOps, opSpec{method: "delete", action: "deletecollection", id: "deleteCollection" + gv + scope + kind,
			desc: "delete collection of " + kind, gvk: gvk, params: renderParams(v, deleteParams, listParams), body: md["deleteOptions"], resp: md["status"]})
	}
	if hasVerb(r, "get") {
		itemOps = append(itemOps, opSpec{method: "get", action: "get", id: "read" + gv + scope + kind,
			desc: "read the specified " + kind, gvk: gvk, resp: itemDef})
	}
	if hasVerb(r, "update") {
		itemOps = append(itemOps, opSpec{method: "put", action: "put", id: "replace" + gv + scope + kind,
			desc: "replace the specified " + kind, gvk: gvk, params: renderParams(v, writeParams), body: itemDef, resp: itemDef, created: true})
	}
	if hasVerb(r, "patch") {
		itemOps = append(itemOps, opSpec{method: "patch", action: "patch", id: "patch" + gv + scope + kind,
			desc: "partially update the specified " + kind, gvk: gvk, params: renderParams(v, patchParams), body: md["patch"], patch: true, resp: itemDef})
	}
	if hasVerb(r, "delete") {
		itemOps = append(itemOps, opSpec{method: "delete", action: "delete", id: "delete" + gv + scope + kind,
			desc: "delete " + a(kind), gvk: gvk, params: renderParams(v, deleteParams), body: md["deleteOptions"], resp: md["status"]})
	}
	b.addPath(into, coll, collParams, tag, collOps...)
	b.addPath(into, coll+"/{name}", itemParams, tag, itemOps...)
	if r.Namespaced && hasVerb(r, "list") {
		b.addPath(into, base+"/"+r.Plural, []oaParam{paramPretty}, tag, opSpec{method: "get", action: "list",
			id: "list" + gv + kind + "ForAllNamespaces", desc: "list or watch objects of kind " + kind, gvk: gvk,
			params: renderParams(v, listParams), resp: listDef})
	}
	for _, sub := range r.Subresources {
		var def string
		var sgvk schema.GroupVersionKind
		switch sub {
		case "status":
			def, sgvk = itemDef, gvk
		case "scale":
			def, sgvk = md["scale"], schema.GroupVersionKind{Group: "autoscaling", Version: "v1", Kind: "Scale"}
		default:
			continue
		}
		suffix := strings.ToUpper(sub[:1]) + sub[1:]
		b.addPath(into, coll+"/{name}/"+sub, itemParams, tag,
			opSpec{method: "get", action: "get", id: "read" + gv + scope + kind + suffix,
				desc: "read " + sub + " of the specified " + kind, gvk: sgvk, resp: def},
			opSpec{method: "put", action: "put", id: "replace" + gv + scope + kind + suffix,
				desc: "replace " + sub + " of the specified " + kind, gvk: sgvk, params: renderParams(v, writeParams), body: def, resp: def, created: true},
			opSpec{method: "patch", action: "patch", id: "patch" + gv + scope + kind + suffix,
				desc: "partially update " + sub + " of the specified " + kind, gvk: sgvk, params: renderParams(v, patchParams), body: md["patch"], patch: true, resp: def})
	}
}

// a prefixes kind with its article, as upstream's operation descriptions.
func a(kind string) string {
	if strings.ContainsRune("AEIOU", rune(kind[0])) {
		return "an " + kind
	}
	return "a " + kind
}
