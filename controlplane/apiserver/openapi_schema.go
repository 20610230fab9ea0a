package apiserver

import (
	"reflect"
	"strings"
	"sync"
)

// oaSchema is a version-neutral OpenAPI schema. renderSchema turns it into
// swagger 2.0 or OpenAPI 3.0 JSON; the two differ in how references are
// written and in oneOf, which swagger 2.0 lacks.
type oaSchema struct {
	Description string
	Type        string
	Format      string
	// Ref names a definition (e.g. io.k8s.api.core.v1.PodSpec).
	Ref        string
	Items      *oaSchema
	Properties map[string]*oaSchema
	// Additional is the value schema of a map.
	Additional *oaSchema
	Required   []string
	// OneOf lists alternative primitive types (OpenAPI v3 only), as
	// upstream publishes IntOrString and Quantity.
	OneOf []string
	// IntOrString marks intstr.IntOrString (x-kubernetes-int-or-string in v3).
	IntOrString bool
	Ext         map[string]any
}

// openAPITyper is implemented by Go types with a custom JSON form
// (metav1.Time, resource.Quantity, intstr.IntOrString...).
type openAPITyper interface {
	OpenAPISchemaType() []string
	OpenAPISchemaFormat() string
}

type openAPIV3OneOfTyper interface {
	OpenAPIV3OneOfTypes() []string
}

type swaggerDocer interface {
	SwaggerDoc() map[string]string
}

var (
	typerType   = reflect.TypeFor[openAPITyper]()
	oneOfType   = reflect.TypeFor[openAPIV3OneOfTyper]()
	swaggerType = reflect.TypeFor[swaggerDocer]()
	// specialDescs describe the types with a custom JSON form, which have
	// no SwaggerDoc of their own.
	specialDescs = map[string]string{
		"io.k8s.apimachinery.pkg.apis.meta.v1.Time":                     "A timestamp, serialized as an RFC 3339 string with second precision.",
		"io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime":                "A timestamp, serialized as an RFC 3339 string with microsecond precision.",
		"io.k8s.apimachinery.pkg.apis.meta.v1.Duration":                 "A duration, serialized as a Go duration string such as \"1h30m\".",
		"io.k8s.apimachinery.pkg.api.resource.Quantity":                 "A fixed-point quantity, written as a number with an optional suffix: binary SI (Ki, Mi, Gi, Ti, Pi, Ei), decimal SI (m, k, M, G, T, P, E) or a decimal exponent (e3, E6). Examples: \"100m\", \"1.5Gi\", \"2\".",
		"io.k8s.apimachinery.pkg.util.intstr.IntOrString":               "A value that is either an integer or a string, such as a port number or a port name.",
		"io.k8s.apimachinery.pkg.runtime.RawExtension":                  "An embedded object of any kind, kept as raw JSON.",
		"io.k8s.apimachinery.pkg.apis.meta.v1.FieldsV1":                 "A set of fields, encoded as a JSON trie.",
		"io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSON": "Any JSON value: a boolean, number, string, array, object or null.",
	}
)

// notRequired lists fields whose json tag has no omitempty but which
// upstream documents as optional (+optional): marking them required would
// make client-side validation reject objects the server accepts.
var notRequired = map[string]bool{
	"io.k8s.api.core.v1.Event.reportingComponent":                                                            true,
	"io.k8s.api.core.v1.Event.reportingInstance":                                                             true,
	"io.k8s.api.events.v1.Event.metadata":                                                                    true,
	"io.k8s.api.rbac.v1.Role.rules":                                                                          true,
	"io.k8s.api.rbac.v1.ClusterRole.rules":                                                                   true,
	"io.k8s.api.apps.v1.ControllerRevision.data":                                                             true,
	"io.k8s.api.apps.v1.StatefulSetSpec.serviceName":                                                         true,
	"io.k8s.api.apps.v1.StatefulSetStatus.availableReplicas":                                                 true,
	"io.k8s.api.apps.v1.StatefulSetOrdinals.start":                                                           true,
	"io.k8s.api.discovery.v1.EndpointSlice.ports":                                                            true,
	"io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerStatus.currentMetrics":                                 true,
	"io.k8s.api.networking.v1.NetworkPolicySpec.podSelector":                                                 true,
	"io.k8s.api.networking.v1.IngressClassParametersReference.scope":                                         true,
	"io.k8s.api.batch.v1.PodFailurePolicyOnPodConditionsPattern.status":                                      true,
	"io.k8s.api.core.v1.GRPCAction.service":                                                                  true,
	"io.k8s.api.core.v1.ProjectedVolumeSource.sources":                                                       true,
	"io.k8s.api.core.v1.ContainerImage.names":                                                                true,
	"io.k8s.api.core.v1.NodeRuntimeHandler.name":                                                             true,
	"io.k8s.api.core.v1.AzureFilePersistentVolumeSource.secretNamespace":                                     true,
	"io.k8s.api.core.v1.TypedLocalObjectReference.apiGroup":                                                  true,
	"io.k8s.api.core.v1.TypedObjectReference.apiGroup":                                                       true,
	"io.k8s.api.storage.v1.CSINodeDriver.topologyKeys":                                                       true,
	"io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionStatus.conditions":     true,
	"io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionStatus.acceptedNames":  true,
	"io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionStatus.storedVersions": true,
}

// typeDefs generates definitions from Go types by reflection. Go types
// never change at run time, so one process-wide set serves every document.
type typeDefs struct {
	mu    sync.Mutex
	names map[reflect.Type]string
	defs  map[string]*oaSchema
	// deps caches the definitions each definition refers to, directly.
	deps map[string][]string
}

var builtinDefs = &typeDefs{names: map[reflect.Type]string{}, defs: map[string]*oaSchema{}, deps: map[string][]string{}}

// definitionName is upstream's name for a Go type: the reversed domain of
// the import path, the rest of the path, then the type name
// (k8s.io/api/core/v1.Pod → io.k8s.api.core.v1.Pod).
func definitionName(t reflect.Type) string {
	return packageDefPrefix(t.PkgPath()) + "." + t.Name()
}

func packageDefPrefix(pkg string) string {
	parts := strings.Split(pkg, "/")
	dom := strings.Split(parts[0], ".")
	for i, j := 0, len(dom)-1; i < j; i, j = i+1, j-1 {
		dom[i], dom[j] = dom[j], dom[i]
	}
	return strings.Join(append([]string{strings.Join(dom, ".")}, parts[1:]...), ".")
}

// define returns the definition name of t (a struct or custom-JSON type),
// generating it and everything it refers to on first use.
func (d *typeDefs) define(t reflect.Type) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.defineLocked(t)
}

func (d *typeDefs) defineLocked(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n, ok := d.names[t]; ok {
		return n
	}
	name := definitionName(t)
	d.names[t] = name
	s := &oaSchema{}
	d.defs[name] = s // placeholder first: types may refer to themselves
	if implements(t, typerType) {
		v := reflect.New(t).Elem().Interface().(openAPITyper)
		if ts := v.OpenAPISchemaType(); len(ts) > 0 {
			s.Type = ts[0]
		}
		s.Format = v.OpenAPISchemaFormat()
		if implements(t, oneOfType) {
			s.OneOf = reflect.New(t).Elem().Interface().(openAPIV3OneOfTyper).OpenAPIV3OneOfTypes()
		}
		s.IntOrString = s.Format == "int-or-string"
		s.Description = specialDescs[name]
	} else {
		d.structSchema(t, s)
	}
	d.deps[name] = collectRefs(s, nil)
	return name
}

func implements(t, iface reflect.Type) bool {
	return t.Implements(iface) || reflect.PointerTo(t).Implements(iface)
}

func swaggerDoc(t reflect.Type) map[string]string {
	if !implements(t, swaggerType) {
		return nil
	}
	return reflect.New(t).Interface().(swaggerDocer).SwaggerDoc()
}

// structSchema fills s with the properties of struct t.
func (d *typeDefs) structSchema(t reflect.Type, s *oaSchema) {
	doc := swaggerDoc(t)
	if desc := doc[""]; desc != "" {
		s.Description = desc
	} else {
		s.Description = specialDescs[definitionName(t)]
	}
	s.Type = "object"
	d.addFields(t, s)
}

func (d *typeDefs) addFields(t reflect.Type, s *oaSchema) {
	doc := swaggerDoc(t)
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if f.Anonymous && (name == "" || strings.Contains(opts, "inline")) {
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				d.addFields(ft, s)
				continue
			}
		}
		if name == "" {
			name = f.Name
		}
		p := d.fieldSchema(f.Type)
		p.Description = doc[name]
		if ps := f.Tag.Get("patchStrategy"); ps != "" {
			p.ext("x-kubernetes-patch-strategy", ps)
		}
		if pk := f.Tag.Get("patchMergeKey"); pk != "" {
			p.ext("x-kubernetes-patch-merge-key", pk)
		}
		if s.Properties == nil {
			s.Properties = map[string]*oaSchema{}
		}
		s.Properties[name] = p
		if !strings.Contains(opts, "omitempty") && !strings.Contains(opts, "omitzero") && !notRequired[definitionName(t)+"."+name] {
			s.Required = append(s.Required, name)
		}
	}
}

func (s *oaSchema) ext(k string, v any) {
	if s.Ext == nil {
		s.Ext = map[string]any{}
	}
	s.Ext[k] = v
}

// fieldSchema is the schema of a field of type t; structs and custom-JSON
// types become references to their definitions.
func (d *typeDefs) fieldSchema(t reflect.Type) *oaSchema {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Name() != "" && t.PkgPath() != "" && implements(t, typerType) {
		return &oaSchema{Ref: d.defineLocked(t)}
	}
	switch t.Kind() {
	case reflect.String:
		return &oaSchema{Type: "string"}
	case reflect.Bool:
		return &oaSchema{Type: "boolean"}
	case reflect.Int8, reflect.Int16, reflect.Int32, reflect.Uint8, reflect.Uint16, reflect.Uint32:
		return &oaSchema{Type: "integer", Format: "int32"}
	case reflect.Int, reflect.Int64, reflect.Uint, reflect.Uint64:
		return &oaSchema{Type: "integer", Format: "int64"}
	case reflect.Float32:
		return &oaSchema{Type: "number", Format: "float"}
	case reflect.Float64:
		return &oaSchema{Type: "number", Format: "double"}
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return &oaSchema{Type: "string", Format: "byte"}
		}
		return &oaSchema{Type: "array", Items: d.fieldSchema(t.Elem())}
	case reflect.Map:
		return &oaSchema{Type: "object", Additional: d.fieldSchema(t.Elem())}
	case reflect.Struct:
		if t.Name() == "" {
			s := &oaSchema{Type: "object"}
			d.addFields(t, s)
			return s
		}
		return &oaSchema{Ref: d.defineLocked(t)}
	}
	// interfaces and anything else: any JSON value.
	return &oaSchema{Type: "object"}
}

// collectRefs appends the definition names s refers to.
func collectRefs(s *oaSchema, out []string) []string {
	if s == nil {
		return out
	}
	if s.Ref != "" {
		out = append(out, s.Ref)
	}
	out = collectRefs(s.Items, out)
	out = collectRefs(s.Additional, out)
	for _, p := range s.Properties {
		out = collectRefs(p, out)
	}
	return out
}

// closure returns roots and every definition they reach.
func (d *typeDefs) closure(roots []string) map[string]*oaSchema {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := map[string]*oaSchema{}
	var walk func(n string)
	walk = func(n string) {
		if _, ok := out[n]; ok {
			return
		}
		s, ok := d.defs[n]
		if !ok {
			return
		}
		out[n] = s
		for _, r := range d.deps[n] {
			walk(r)
		}
	}
	for _, r := range roots {
		walk(r)
	}
	return out
}
