package crd_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/internal/testserver"
	"github.com/skiffhq/skiff/server"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apiextensions-apiserver/pkg/apihelpers"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	clientset "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/scale"
	"k8s.io/utils/ptr"
)

const group = "stable.example.com"

var widgets = schema.GroupVersionResource{Group: group, Version: "v1", Resource: "widgets"}

func jsonRaw(v string) *apiextensionsv1.JSON { return &apiextensionsv1.JSON{Raw: []byte(v)} }

// widgetCRD is a namespaced CRD with status and scale subresources,
// printer columns, defaults and validation rules.
func widgetCRD() *apiextensionsv1.CustomResourceDefinition {
	sch := &apiextensionsv1.JSONSchemaProps{
		Type: "object",
		Properties: map[string]apiextensionsv1.JSONSchemaProps{
			"spec": {
				Type:     "object",
				Required: []string{"size"},
				Properties: map[string]apiextensionsv1.JSONSchemaProps{
					"size":     {Type: "string", MaxLength: ptr.To[int64](5), Pattern: "^[a-z]+$"},
					"replicas": {Type: "integer", Format: "int32", Minimum: ptr.To(0.0), Maximum: ptr.To(10.0)},
					"color":    {Type: "string", Enum: []apiextensionsv1.JSON{*jsonRaw(`"red"`), *jsonRaw(`"blue"`)}, Default: jsonRaw(`"blue"`)},
					"port":     {XIntOrString: true},
					"tags":     {Type: "array", MaxItems: ptr.To[int64](2), Items: &apiextensionsv1.JSONSchemaPropsOrArray{Schema: &apiextensionsv1.JSONSchemaProps{Type: "string"}}},
					"extra":    {Type: "object", XPreserveUnknownFields: ptr.To(true)},
					"nick":     {Type: "string", Nullable: true},
				},
			},
			"status": {
				Type: "object",
				Properties: map[string]apiextensionsv1.JSONSchemaProps{
					"replicas": {Type: "integer"},
					"selector": {Type: "string"},
					"phase":    {Type: "string"},
				},
			},
		},
	}
	return &apiextensionsv1.CustomResourceDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: "widgets." + group},
		Spec: apiextensionsv1.CustomResourceDefinitionSpec{
			Group: group,
			Names: apiextensionsv1.CustomResourceDefinitionNames{Plural: "widgets", Singular: "widget", Kind: "Widget", ShortNames: []string{"wd"}},
			Scope: apiextensionsv1.NamespaceScoped,
			Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{
				Name: "v1", Served: true, Storage: true,
				Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: sch},
				Subresources: &apiextensionsv1.CustomResourceSubresources{
					Status: &apiextensionsv1.CustomResourceSubresourceStatus{},
					Scale: &apiextensionsv1.CustomResourceSubresourceScale{
						SpecReplicasPath: ".spec.replicas", StatusReplicasPath: ".status.replicas", LabelSelectorPath: ptr.To(".status.selector"),
					},
				},
				AdditionalPrinterColumns: []apiextensionsv1.CustomResourceColumnDefinition{
					{Name: "Size", Type: "string", JSONPath: ".spec.size"},
					{Name: "Replicas", Type: "integer", JSONPath: ".spec.replicas"},
				},
			}},
		},
	}
}

func extClient(t *testing.T, s *testserver.Server) clientset.Interface {
	t.Helper()
	c, err := clientset.NewForConfig(s.Config)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// createEstablished creates a CRD and waits for Established=True.
func createEstablished(t *testing.T, ctx context.Context, c clientset.Interface, crd *apiextensionsv1.CustomResourceDefinition) *apiextensionsv1.CustomResourceDefinition {
	t.Helper()
	if _, err := c.ApiextensionsV1().CustomResourceDefinitions().Create(ctx, crd, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create crd: %v", err)
	}
	var got *apiextensionsv1.CustomResourceDefinition
	waitFor(t, 10*time.Second, func() bool {
		var err error
		got, err = c.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, crd.Name, metav1.GetOptions{})
		return err == nil && apihelpers.IsCRDConditionTrue(got, apiextensionsv1.Established)
	})
	return got
}

func waitFor(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func widget(name string, spec map[string]interface{}) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]interface{}{
		"apiVersion": group + "/v1", "kind": "Widget",
		"metadata": map[string]interface{}{"name": name},
		"spec":     spec,
	}}
}

func causes(err error) map[string]string {
	out := map[string]string{}
	var se *apierrors.StatusError
	if !asStatus(err, &se) || se.ErrStatus.Details == nil {
		return out
	}
	for _, c := range se.ErrStatus.Details.Causes {
		out[c.Field] = c.Message
	}
	return out
}

func asStatus(err error, se **apierrors.StatusError) bool {
	s, ok := err.(*apierrors.StatusError)
	if ok {
		*se = s
	}
	return ok
}

func TestCustomResourceLifecycle(t *testing.T) {
	s := testserver.Start(t)
	ctx := context.Background()
	ext := extClient(t, s)
	crd := createEstablished(t, ctx, ext, widgetCRD())

	t.Run("definition status and defaults", func(t *testing.T) {
		if !apihelpers.IsCRDConditionTrue(crd, apiextensionsv1.NamesAccepted) {
			t.Errorf("NamesAccepted not true: %+v", crd.Status.Conditions)
		}
		if got := crd.Status.StoredVersions; len(got) != 1 || got[0] != "v1" {
			t.Errorf("storedVersions = %v", got)
		}
		if crd.Status.AcceptedNames.Kind != "Widget" || crd.Status.AcceptedNames.ListKind != "WidgetList" {
			t.Errorf("acceptedNames = %+v", crd.Status.AcceptedNames)
		}
		if crd.Spec.Conversion == nil || crd.Spec.Conversion.Strategy != apiextensionsv1.NoneConverter {
			t.Errorf("conversion not defaulted: %+v", crd.Spec.Conversion)
		}
		if crd.Generation != 1 {
			t.Errorf("generation = %d", crd.Generation)
		}
	})

	t.Run("discovery", func(t *testing.T) {
		rl, err := s.Client.Discovery().ServerResourcesForGroupVersion(group + "/v1")
		if err != nil {
			t.Fatal(err)
		}
		found := map[string]metav1.APIResource{}
		for _, r := range rl.APIResources {
			found[r.Name] = r
		}
		w, ok := found["widgets"]
		if !ok || !w.Namespaced || w.Kind != "Widget" || len(w.ShortNames) != 1 || w.ShortNames[0] != "wd" || len(w.Categories) != 0 {
			t.Errorf("widgets discovery = %+v", w)
		}
		if _, ok := found["widgets/status"]; !ok {
			t.Error("widgets/status missing")
		}
		if sc, ok := found["widgets/scale"]; !ok || sc.Kind != "Scale" || sc.Group != "autoscaling" {
			t.Errorf("widgets/scale = %+v", sc)
		}
	})

	ri := s.Dynamic.Resource(widgets).Namespace("default")

	t.Run("crud, watch and patches", func(t *testing.T) {
		w, err := ri.Watch(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Stop()
		obj := widget("w1", map[string]interface{}{"size": "small", "replicas": int64(1), "bogus": "x"})
		created, err := ri.Create(ctx, obj, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("create: %v", err)
		}
		if got, _, _ := unstructured.NestedString(created.Object, "spec", "color"); got != "blue" {
			t.Errorf("default color = %q, want blue", got)
		}
		if _, found, _ := unstructured.NestedFieldNoCopy(created.Object, "spec", "bogus"); found {
			t.Error("unknown field spec.bogus was not pruned")
		}
		if created.GetGeneration() != 1 || created.GetUID() == "" {
			t.Errorf("generation=%d uid=%q", created.GetGeneration(), created.GetUID())
		}
		select {
		case ev := <-w.ResultChan():
			if ev.Type != watch.Added || ev.Object.(*unstructured.Unstructured).GetName() != "w1" {
				t.Errorf("watch event = %v %v", ev.Type, ev.Object)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no ADDED watch event")
		}

		list, err := ri.List(ctx, metav1.ListOptions{})
		if err != nil || len(list.Items) != 1 || list.GetKind() != "WidgetList" {
			t.Fatalf("list = %v, %v", list, err)
		}

		// Update through PUT bumps the generation.
		got, err := ri.Get(ctx, "w1", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		_ = unstructured.SetNestedField(got.Object, "larger", "spec", "size")
		_, err = ri.Update(ctx, got, metav1.UpdateOptions{})
		if err == nil {
			t.Fatal("size 'larger' exceeds maxLength 5 but update succeeded")
		}
		_ = unstructured.SetNestedField(got.Object, "big", "spec", "size")
		updated, err := ri.Update(ctx, got, metav1.UpdateOptions{})
		if err != nil {
			t.Fatalf("update: %v", err)
		}
		if updated.GetGeneration() != 2 {
			t.Errorf("generation after spec change = %d, want 2", updated.GetGeneration())
		}
		select {
		case ev := <-w.ResultChan():
			if ev.Type != watch.Modified {
				t.Errorf("watch event = %v", ev.Type)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no MODIFIED watch event")
		}

		// Metadata-only change keeps the generation.
		patched, err := ri.Patch(ctx, "w1", types.MergePatchType, []byte(`{"metadata":{"labels":{"a":"b"}}}`), metav1.PatchOptions{})
		if err != nil {
			t.Fatalf("merge patch: %v", err)
		}
		if patched.GetGeneration() != 2 || patched.GetLabels()["a"] != "b" {
			t.Errorf("after label patch: generation=%d labels=%v", patched.GetGeneration(), patched.GetLabels())
		}
		patched, err = ri.Patch(ctx, "w1", types.JSONPatchType, []byte(`[{"op":"replace","path":"/spec/replicas","value":3}]`), metav1.PatchOptions{})
		if err != nil {
			t.Fatalf("json patch: %v", err)
		}
		if r, _, _ := unstructured.NestedInt64(patched.Object, "spec", "replicas"); r != 3 || patched.GetGeneration() != 3 {
			t.Errorf("after json patch: replicas=%d generation=%d", r, patched.GetGeneration())
		}
		_, err = ri.Patch(ctx, "w1", types.StrategicMergePatchType, []byte(`{"spec":{"replicas":4}}`), metav1.PatchOptions{})
		if !apierrors.IsUnsupportedMediaType(err) {
			t.Errorf("strategic merge patch on a custom resource: err = %v, want 415", err)
		}

		if err := ri.Delete(ctx, "w1", metav1.DeleteOptions{}); err != nil {
			t.Fatalf("delete: %v", err)
		}
		if _, err := ri.Get(ctx, "w1", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("get after delete: %v", err)
		}
	})

	t.Run("status subresource", func(t *testing.T) {
		created, err := ri.Create(ctx, widget("st", map[string]interface{}{"size": "a", "replicas": int64(1)}), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		// Status is ignored on the main resource.
		_ = unstructured.SetNestedField(created.Object, "Running", "status", "phase")
		upd, err := ri.Update(ctx, created, metav1.UpdateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, found, _ := unstructured.NestedFieldNoCopy(upd.Object, "status"); found {
			t.Errorf("main PUT changed status: %v", upd.Object["status"])
		}
		// Spec is ignored on /status, and the generation stays.
		_ = unstructured.SetNestedField(upd.Object, "Running", "status", "phase")
		_ = unstructured.SetNestedField(upd.Object, "zzz", "spec", "size")
		st, err := ri.UpdateStatus(ctx, upd, metav1.UpdateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if p, _, _ := unstructured.NestedString(st.Object, "status", "phase"); p != "Running" {
			t.Errorf("status.phase = %q", p)
		}
		if sz, _, _ := unstructured.NestedString(st.Object, "spec", "size"); sz != "a" {
			t.Errorf("/status changed spec.size to %q", sz)
		}
		if st.GetGeneration() != 1 {
			t.Errorf("generation after status update = %d, want 1", st.GetGeneration())
		}
		// The status is validated against the schema.
		_ = unstructured.SetNestedField(st.Object, "many", "status", "replicas")
		if _, err := ri.UpdateStatus(ctx, st, metav1.UpdateOptions{}); !apierrors.IsInvalid(err) {
			t.Errorf("invalid status: err = %v, want 422", err)
		}
	})

	t.Run("scale subresource", func(t *testing.T) {
		obj := widget("sc", map[string]interface{}{"size": "a", "replicas": int64(2)})
		created, err := ri.Create(ctx, obj, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		_ = unstructured.SetNestedField(created.Object, int64(2), "status", "replicas")
		_ = unstructured.SetNestedField(created.Object, "app=sc", "status", "selector")
		if _, err := ri.UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		cached := memory.NewMemCacheClient(s.Client.Discovery())
		mapper := restmapper.NewDeferredDiscoveryRESTMapper(cached)
		sc, err := scale.NewForConfig(s.Config, mapper, dynamic.LegacyAPIPathResolverFunc, scale.NewDiscoveryScaleKindResolver(cached))
		if err != nil {
			t.Fatal(err)
		}
		gr := schema.GroupResource{Group: group, Resource: "widgets"}
		cur, err := sc.Scales("default").Get(ctx, gr, "sc", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("get scale: %v", err)
		}
		if cur.Spec.Replicas != 2 || cur.Status.Replicas != 2 || cur.Status.Selector != "app=sc" {
			t.Errorf("scale = %+v", cur)
		}
		cur.Spec.Replicas = 5
		if _, err := sc.Scales("default").Update(ctx, gr, cur, metav1.UpdateOptions{}); err != nil {
			t.Fatalf("update scale: %v", err)
		}
		got, _ := ri.Get(ctx, "sc", metav1.GetOptions{})
		if r, _, _ := unstructured.NestedInt64(got.Object, "spec", "replicas"); r != 5 {
			t.Errorf("spec.replicas after scale = %d", r)
		}
		cur, _ = sc.Scales("default").Get(ctx, gr, "sc", metav1.GetOptions{})
		cur.Spec.Replicas = 11
		if _, err := sc.Scales("default").Update(ctx, gr, cur, metav1.UpdateOptions{}); !apierrors.IsInvalid(err) {
			t.Errorf("scale above the schema maximum: err = %v, want 422", err)
		}
	})

	t.Run("schema validation", func(t *testing.T) {
		cases := []struct {
			name  string
			spec  map[string]interface{}
			field string
			msg   string
		}{
			{"type", map[string]interface{}{"size": "a", "replicas": "three"}, "spec.replicas", "spec.replicas in body must be of type integer"},
			{"required", map[string]interface{}{"replicas": int64(1)}, "spec.size", "Required value"},
			{"enum", map[string]interface{}{"size": "a", "color": "pink"}, "spec.color", `Unsupported value: "pink"`},
			{"minimum", map[string]interface{}{"size": "a", "replicas": int64(-1)}, "spec.replicas", "should be greater than or equal to 0"},
			{"maximum", map[string]interface{}{"size": "a", "replicas": int64(11)}, "spec.replicas", "should be less than or equal to 10"},
			{"pattern", map[string]interface{}{"size": "A1"}, "spec.size", "should match '^[a-z]+$'"},
			{"maxItems", map[string]interface{}{"size": "a", "tags": []interface{}{"a", "b", "c"}}, "spec.tags", "must have at most 2 items"},
			{"int-or-string", map[string]interface{}{"size": "a", "port": true}, "spec.port", "integer-or-string"},
			{"not nullable", map[string]interface{}{"size": "a", "tags": nil}, "spec.tags", "must be of type array"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				_, err := ri.Create(ctx, widget("bad-"+tc.name, tc.spec), metav1.CreateOptions{})
				if !apierrors.IsInvalid(err) {
					t.Fatalf("err = %v, want 422", err)
				}
				msg, ok := causes(err)[tc.field]
				if !ok || !strings.Contains(err.Error(), tc.msg) {
					t.Errorf("causes = %v, err = %v; want field %s with %q", causes(err), err, tc.field, tc.msg)
				}
				_ = msg
			})
		}
		// Valid values of the special kinds pass.
		ok := widget("ok", map[string]interface{}{"size": "a", "port": "http", "nick": nil, "extra": map[string]interface{}{"anything": int64(1)}})
		got, err := ri.Create(ctx, ok, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("valid widget: %v", err)
		}
		if v, _, _ := unstructured.NestedInt64(got.Object, "spec", "extra", "anything"); v != 1 {
			t.Errorf("preserve-unknown-fields lost spec.extra.anything: %v", got.Object["spec"])
		}
	})

	t.Run("strict field validation", func(t *testing.T) {
		obj := widget("strict", map[string]interface{}{"size": "a", "bogus": int64(1), "extra": map[string]interface{}{"kept": true}})
		_, err := ri.Create(ctx, obj, metav1.CreateOptions{FieldValidation: "Strict"})
		if !apierrors.IsBadRequest(err) || !strings.Contains(err.Error(), `strict decoding error: unknown field "spec.bogus"`) {
			t.Fatalf("strict create with an unknown field: %v", err)
		}
		got, err := ri.Create(ctx, obj, metav1.CreateOptions{FieldValidation: "Ignore"})
		if err != nil {
			t.Fatal(err)
		}
		if _, found, _ := unstructured.NestedFieldNoCopy(got.Object, "spec", "bogus"); found {
			t.Error("spec.bogus kept")
		}
		_, err = ri.Patch(ctx, "strict", types.MergePatchType, []byte(`{"spec":{"other":1}}`), metav1.PatchOptions{FieldValidation: "Strict"})
		if !apierrors.IsBadRequest(err) || !strings.Contains(err.Error(), `unknown field "spec.other"`) {
			t.Errorf("strict patch with an unknown field: %v", err)
		}
	})

	t.Run("update without resourceVersion", func(t *testing.T) {
		got, err := ri.Create(ctx, widget("norv", map[string]interface{}{"size": "a"}), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		got.SetResourceVersion("")
		_, err = ri.Update(ctx, got, metav1.UpdateOptions{})
		if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "metadata.resourceVersion") || !strings.Contains(err.Error(), "must be specified for an update") {
			t.Errorf("err = %v", err)
		}
	})
}

func TestDefinitionValidation(t *testing.T) {
	s := testserver.Start(t)
	ctx := context.Background()
	ext := extClient(t, s)
	cases := []struct {
		name   string
		mutate func(c *apiextensionsv1.CustomResourceDefinition)
		field  string
	}{
		{"name mismatch", func(c *apiextensionsv1.CustomResourceDefinition) { c.Name = "things." + group }, "metadata.name"},
		{"group without dot", func(c *apiextensionsv1.CustomResourceDefinition) {
			c.Spec.Group = "example"
			c.Name = "widgets.example"
		}, "spec.group"},
		{"bad scope", func(c *apiextensionsv1.CustomResourceDefinition) { c.Spec.Scope = "Global" }, "spec.scope"},
		{"no storage version", func(c *apiextensionsv1.CustomResourceDefinition) { c.Spec.Versions[0].Storage = false }, "spec.versions"},
		{"bad version name", func(c *apiextensionsv1.CustomResourceDefinition) { c.Spec.Versions[0].Name = "V_1" }, "spec.versions[0].name"},
		{"duplicate versions", func(c *apiextensionsv1.CustomResourceDefinition) {
			v := c.Spec.Versions[0]
			v.Storage = false
			c.Spec.Versions = append(c.Spec.Versions, v)
		}, "spec.versions"},
		{"missing schema", func(c *apiextensionsv1.CustomResourceDefinition) { c.Spec.Versions[0].Schema = nil }, "spec.versions[0].schema.openAPIV3Schema"},
		{"untyped property", func(c *apiextensionsv1.CustomResourceDefinition) {
			p := c.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["spec"]
			p.Properties["size"] = apiextensionsv1.JSONSchemaProps{}
		}, "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[size].type"},
		{"bad kind", func(c *apiextensionsv1.CustomResourceDefinition) { c.Spec.Names.Kind = "Wid get" }, "spec.names.kind"},
		{"bad scale path", func(c *apiextensionsv1.CustomResourceDefinition) {
			c.Spec.Versions[0].Subresources.Scale.SpecReplicasPath = ".status.replicas"
		}, "spec.versions[0].subresources.scale.specReplicasPath"},
		{"bad column type", func(c *apiextensionsv1.CustomResourceDefinition) {
			c.Spec.Versions[0].AdditionalPrinterColumns[0].Type = "float"
		}, "spec.versions[0].additionalPrinterColumns[0].type"},
		{"bad column path", func(c *apiextensionsv1.CustomResourceDefinition) {
			c.Spec.Versions[0].AdditionalPrinterColumns[0].JSONPath = "spec.size"
		}, "spec.versions[0].additionalPrinterColumns[0].jsonPath"},
		{"invalid default", func(c *apiextensionsv1.CustomResourceDefinition) {
			p := c.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["spec"]
			c2 := p.Properties["color"]
			c2.Default = jsonRaw(`"green"`)
			p.Properties["color"] = c2
		}, "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[color].default"},
		{"protected group", func(c *apiextensionsv1.CustomResourceDefinition) {
			c.Spec.Group = "widgets.k8s.io"
			c.Name = "widgets.widgets.k8s.io"
		}, "metadata.annotations[api-approved.kubernetes.io]"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := widgetCRD()
			tc.mutate(c)
			_, err := ext.ApiextensionsV1().CustomResourceDefinitions().Create(ctx, c, metav1.CreateOptions{})
			if !apierrors.IsInvalid(err) {
				t.Fatalf("err = %v, want 422", err)
			}
			if _, ok := causes(err)[tc.field]; !ok {
				t.Errorf("causes = %v, want one on %s", causes(err), tc.field)
			}
		})
	}

	t.Run("immutable group and scope", func(t *testing.T) {
		crd := createEstablished(t, ctx, ext, widgetCRD())
		crd.Spec.Scope = apiextensionsv1.ClusterScoped
		_, err := ext.ApiextensionsV1().CustomResourceDefinitions().Update(ctx, crd, metav1.UpdateOptions{})
		if _, ok := causes(err)["spec.scope"]; !ok {
			t.Errorf("scope change: err = %v", err)
		}
		crd.Spec.Scope = apiextensionsv1.NamespaceScoped
		crd.Spec.Group = "other.example.com"
		_, err = ext.ApiextensionsV1().CustomResourceDefinitions().Update(ctx, crd, metav1.UpdateOptions{})
		if _, ok := causes(err)["spec.group"]; !ok {
			t.Errorf("group change: err = %v", err)
		}
	})

	t.Run("name conflict", func(t *testing.T) {
		if _, err := ext.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, "widgets."+group, metav1.GetOptions{}); apierrors.IsNotFound(err) {
			createEstablished(t, ctx, ext, widgetCRD())
		}
		// Another CRD of the same group that wants the same kind.
		c := widgetCRD()
		c.Name = "gadgets." + group
		c.Spec.Names = apiextensionsv1.CustomResourceDefinitionNames{Plural: "gadgets", Singular: "gadget", Kind: "Widget", ListKind: "GadgetList"}
		if _, err := ext.ApiextensionsV1().CustomResourceDefinitions().Create(ctx, c, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 10*time.Second, func() bool {
			got, err := ext.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, c.Name, metav1.GetOptions{})
			if err != nil {
				return false
			}
			cond := apihelpers.FindCRDCondition(got, apiextensionsv1.NamesAccepted)
			return cond != nil && cond.Status == apiextensionsv1.ConditionFalse && cond.Reason == "KindConflict" &&
				!apihelpers.IsCRDConditionTrue(got, apiextensionsv1.Established)
		})
		if _, err := s.Client.Discovery().ServerResourcesForGroupVersion(group + "/v1"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Dynamic.Resource(schema.GroupVersionResource{Group: group, Version: "v1", Resource: "gadgets"}).Namespace("default").List(ctx, metav1.ListOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("conflicting CRD is served: %v", err)
		}
	})
}

func TestMultipleVersions(t *testing.T) {
	s := testserver.Start(t)
	ctx := context.Background()
	ext := extClient(t, s)
	c := widgetCRD()
	v2 := c.Spec.Versions[0]
	v2.Name, v2.Storage = "v2", false
	v2.AdditionalPrinterColumns = nil
	c.Spec.Versions = append(c.Spec.Versions, v2)
	createEstablished(t, ctx, ext, c)

	gvr2 := schema.GroupVersionResource{Group: group, Version: "v2", Resource: "widgets"}
	r1 := s.Dynamic.Resource(widgets).Namespace("default")
	r2 := s.Dynamic.Resource(gvr2).Namespace("default")

	w, err := r2.Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	if _, err := r1.Create(ctx, widget("one", map[string]interface{}{"size": "a"}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	viaV2 := widget("two", map[string]interface{}{"size": "b"})
	viaV2.SetAPIVersion(group + "/v2")
	created, err := r2.Create(ctx, viaV2, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if created.GetAPIVersion() != group+"/v2" {
		t.Errorf("create via v2 answered %s", created.GetAPIVersion())
	}
	got, err := r2.Get(ctx, "one", metav1.GetOptions{})
	if err != nil || got.GetAPIVersion() != group+"/v2" {
		t.Errorf("get v1-created object via v2: %v %v", got, err)
	}
	got, err = r1.Get(ctx, "two", metav1.GetOptions{})
	if err != nil || got.GetAPIVersion() != group+"/v1" {
		t.Errorf("get v2-created object via v1: %v %v", got, err)
	}
	list, err := r2.List(ctx, metav1.ListOptions{})
	if err != nil || len(list.Items) != 2 {
		t.Fatalf("list v2: %v %v", list, err)
	}
	for _, it := range list.Items {
		if it.GetAPIVersion() != group+"/v2" {
			t.Errorf("list v2 item %s has apiVersion %s", it.GetName(), it.GetAPIVersion())
		}
	}
	for i := 0; i < 2; i++ {
		select {
		case ev := <-w.ResultChan():
			if u := ev.Object.(*unstructured.Unstructured); u.GetAPIVersion() != group+"/v2" {
				t.Errorf("v2 watch event for %s has apiVersion %s", u.GetName(), u.GetAPIVersion())
			}
		case <-time.After(5 * time.Second):
			t.Fatal("missing watch event")
		}
	}
	// Stored in the storage version whatever the request's version.
	kv, err := s.Store().Get(ctx, "/registry/"+group+"/widgets/default/two")
	if err != nil {
		t.Fatal(err)
	}
	var stored map[string]interface{}
	if err := json.Unmarshal(kv.Value, &stored); err != nil {
		t.Fatal(err)
	}
	if stored["apiVersion"] != group+"/v1" {
		t.Errorf("stored apiVersion = %v, want %s/v1", stored["apiVersion"], group)
	}
	// Updating through v2 keeps storing v1.
	got, _ = r2.Get(ctx, "two", metav1.GetOptions{})
	_ = unstructured.SetNestedField(got.Object, "c", "spec", "size")
	upd, err := r2.Update(ctx, got, metav1.UpdateOptions{})
	if err != nil || upd.GetAPIVersion() != group+"/v2" {
		t.Fatalf("update via v2: %v %v", upd, err)
	}
	kv, _ = s.Store().Get(ctx, "/registry/"+group+"/widgets/default/two")
	if !strings.Contains(string(kv.Value), `"apiVersion":"`+group+`/v1"`) {
		t.Errorf("stored after v2 update: %s", kv.Value)
	}
}

func TestDefinitionDeletion(t *testing.T) {
	s := testserver.Start(t)
	ctx := context.Background()
	ext := extClient(t, s)
	createEstablished(t, ctx, ext, widgetCRD())
	if _, err := s.Client.CoreV1().Namespaces().Create(ctx, &corev1Namespace, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{"default", corev1Namespace.Name} {
		if _, err := s.Dynamic.Resource(widgets).Namespace(ns).Create(ctx, widget("a", map[string]interface{}{"size": "a"}), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	held := widget("held", map[string]interface{}{"size": "a"})
	held.SetFinalizers([]string{"example.com/hold"})
	if _, err := s.Dynamic.Resource(widgets).Namespace("default").Create(ctx, held, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	if err := ext.ApiextensionsV1().CustomResourceDefinitions().Delete(ctx, "widgets."+group, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	crd, err := ext.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, "widgets."+group, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if crd.DeletionTimestamp == nil || !apihelpers.CRDHasFinalizer(crd, "customresourcecleanup.apiextensions.k8s.io") ||
		!apihelpers.IsCRDConditionTrue(crd, apiextensionsv1.Terminating) {
		t.Fatalf("deleted CRD: deletionTimestamp=%v finalizers=%v conditions=%+v", crd.DeletionTimestamp, crd.Finalizers, crd.Status.Conditions)
	}
	// The held object keeps the CRD terminating; creates are refused.
	waitFor(t, 10*time.Second, func() bool {
		_, err := s.Dynamic.Resource(widgets).Namespace("default").Create(ctx, widget("late", map[string]interface{}{"size": "a"}), metav1.CreateOptions{})
		var se *apierrors.StatusError
		return asStatus(err, &se) && se.ErrStatus.Code == http.StatusMethodNotAllowed &&
			strings.Contains(se.ErrStatus.Message, "create not allowed while custom resource definition is terminating")
	})
	waitFor(t, 10*time.Second, func() bool {
		l, err := s.Dynamic.Resource(widgets).List(ctx, metav1.ListOptions{})
		return err == nil && len(l.Items) == 1 && l.Items[0].GetName() == "held" && l.Items[0].GetDeletionTimestamp() != nil
	})
	if _, err := s.Dynamic.Resource(widgets).Namespace("default").Patch(ctx, "held", types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() bool {
		_, err := ext.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, "widgets."+group, metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	})
	if _, err := s.Dynamic.Resource(widgets).Namespace("default").List(ctx, metav1.ListOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("list after CRD deletion: %v, want 404", err)
	}
	if _, err := s.Client.Discovery().ServerResourcesForGroupVersion(group + "/v1"); !apierrors.IsNotFound(err) {
		t.Errorf("discovery after CRD deletion: %v, want 404", err)
	}
	kvs, err := s.Store().List(ctx, "/registry/"+group+"/widgets/", "", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(kvs.KVs) != 0 {
		t.Errorf("%d custom resources left in storage", len(kvs.KVs))
	}
}

var corev1Namespace = corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "other"}}

func TestServedAfterRestart(t *testing.T) {
	s := testserver.Start(t)
	ctx := context.Background()
	createEstablished(t, ctx, extClient(t, s), widgetCRD())
	if _, err := s.Dynamic.Resource(widgets).Namespace("default").Create(ctx, widget("kept", map[string]interface{}{"size": "a"}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	s.Stop()
	s2 := testserver.StartWith(t, server.Config{DataDir: s.DataDir, BindAddress: "127.0.0.1", DisableAgent: true})
	// Served as soon as the restarted server is up, without waiting.
	got, err := s2.Dynamic.Resource(widgets).Namespace("default").Get(ctx, "kept", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get after restart: %v", err)
	}
	if c, _, _ := unstructured.NestedString(got.Object, "spec", "color"); c != "blue" {
		t.Errorf("spec.color = %q", c)
	}
}
