package federation

import (
	"fmt"
	"testing"

	"github.com/skiffhq/skiff/addons/federation/apis/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func TestDivide(t *testing.T) {
	for _, tc := range []struct {
		total    int32
		clusters []string
		weights  map[string]int64
		want     string
	}{
		{6, []string{"a", "b"}, nil, "map[a:3 b:3]"},
		{6, []string{"a", "b", "c"}, nil, "map[a:2 b:2 c:2]"},
		{7, []string{"a", "b", "c"}, nil, "map[a:3 b:2 c:2]"},
		{8, []string{"c", "b", "a"}, nil, "map[a:3 b:3 c:2]"},
		{6, []string{"a", "b"}, map[string]int64{"a": 2, "b": 1}, "map[a:4 b:2]"},
		{7, []string{"a", "b"}, map[string]int64{"a": 1, "b": 2}, "map[a:2 b:5]"},
		{5, []string{"a", "b"}, map[string]int64{"b": 1}, "map[a:0 b:5]"},
		{0, []string{"a", "b"}, nil, "map[a:0 b:0]"},
		{3, nil, nil, "map[]"},
		{1, []string{"a", "b", "c"}, nil, "map[a:1 b:0 c:0]"},
	} {
		got := fmt.Sprint(divide(tc.total, tc.clusters, tc.weights))
		if got != tc.want {
			t.Errorf("divide(%d, %v, %v) = %s, want %s", tc.total, tc.clusters, tc.weights, got, tc.want)
		}
	}
}

func TestFitReplicas(t *testing.T) {
	avail := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourcePods: resource.MustParse("10")}
	if n := fitReplicas(avail, corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m")}); n != 4 {
		t.Errorf("cpu-bound: %d, want 4", n)
	}
	if n := fitReplicas(avail, nil); n != 10 {
		t.Errorf("pods-bound: %d, want 10", n)
	}
}

func deployment(name string, labels map[string]string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetAPIVersion("apps/v1")
	u.SetKind("Deployment")
	u.SetNamespace("ns")
	u.SetName(name)
	u.SetLabels(labels)
	return u
}

func TestChoosePolicy(t *testing.T) {
	kindOnly := &policy{Kind: v1alpha1.KindPropagation, Namespace: "ns", Name: "a-kind", Spec: v1alpha1.PropagationSpec{
		ResourceSelectors: []v1alpha1.ResourceSelector{{APIVersion: "apps/v1", Kind: "Deployment"}}}}
	byLabel := &policy{Kind: v1alpha1.KindPropagation, Namespace: "ns", Name: "z-label", Spec: v1alpha1.PropagationSpec{
		ResourceSelectors: []v1alpha1.ResourceSelector{{APIVersion: "apps/v1", Kind: "Deployment", LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}}}}}
	byName := &policy{Kind: v1alpha1.KindClusterPropagat, Name: "z-name", Spec: v1alpha1.PropagationSpec{
		ResourceSelectors: []v1alpha1.ResourceSelector{{APIVersion: "apps/v1", Kind: "Deployment", Name: "web"}}}}
	clusterKind := &policy{Kind: v1alpha1.KindClusterPropagat, Name: "0-cluster", Spec: kindOnly.Spec}
	otherNS := &policy{Kind: v1alpha1.KindPropagation, Namespace: "other", Name: "0", Spec: byName.Spec}
	kindOnly2 := &policy{Kind: v1alpha1.KindPropagation, Namespace: "ns", Name: "b-kind", Spec: kindOnly.Spec}
	all := []*policy{kindOnly, byLabel, byName, clusterKind, otherNS, kindOnly2}
	for _, tc := range []struct {
		obj  *unstructured.Unstructured
		want string
	}{
		{deployment("web", map[string]string{"app": "web"}), "z-name"},  // name beats label
		{deployment("api", map[string]string{"app": "web"}), "z-label"}, // label beats kind
		{deployment("api", nil), "a-kind"},                              // namespaced beats cluster, then alphabetical
		{&unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Service", "metadata": map[string]any{"name": "web", "namespace": "ns"}}}, ""},
	} {
		got := ""
		if p := choosePolicy(tc.obj, all); p != nil {
			got = p.Name
		}
		if got != tc.want {
			t.Errorf("%s %s: policy %q, want %q", tc.obj.GetKind(), tc.obj.GetName(), got, tc.want)
		}
	}
}

func TestPlacementClusters(t *testing.T) {
	members := []memberInfo{
		{Name: "a", Labels: map[string]string{v1alpha1.ZoneLabel: "z1"}},
		{Name: "b", Labels: map[string]string{v1alpha1.ZoneLabel: "z2"}, Taints: []corev1.Taint{{Key: "gpu", Effect: corev1.TaintEffectNoSchedule}}},
		{Name: "c", Labels: map[string]string{v1alpha1.ZoneLabel: "z2"}, Taints: []corev1.Taint{{Key: v1alpha1.NotReadyTaintKey, Effect: corev1.TaintEffectNoExecute}}},
	}
	for _, tc := range []struct {
		pl   v1alpha1.Placement
		want string
	}{
		{v1alpha1.Placement{}, "[a c]"},
		{v1alpha1.Placement{Tolerations: []corev1.Toleration{{Key: "gpu", Operator: corev1.TolerationOpExists}}}, "[a b c]"},
		{v1alpha1.Placement{ClusterNames: []string{"a", "b"}}, "[a]"},
		{v1alpha1.Placement{ClusterSelector: &metav1.LabelSelector{MatchLabels: map[string]string{v1alpha1.ZoneLabel: "z2"}}}, "[c]"},
	} {
		got, err := placementClusters(tc.pl, members)
		if err != nil || fmt.Sprint(got) != tc.want {
			t.Errorf("placement %+v = %v (%v), want %s", tc.pl, got, err, tc.want)
		}
	}
}

func TestOverrides(t *testing.T) {
	obj := deployment("web", map[string]string{"app": "web", "drop": "x"})
	_ = unstructured.SetNestedSlice(obj.Object, []any{
		map[string]any{"name": "main", "image": "busybox:1", "args": []any{"a"}},
		map[string]any{"name": "side", "image": "pause"},
	}, "spec", "template", "spec", "containers")
	ovs := []v1alpha1.ClusterOverride{
		{ClusterNames: []string{"m1"}, ImageOverrider: []v1alpha1.ImageOverride{{ContainerName: "main", Image: "busybox:2"}},
			ArgsOverrider:   []v1alpha1.ArgsOverride{{ContainerName: "main", Value: []string{"b"}}},
			LabelsOverrider: &v1alpha1.LabelsOverride{Set: map[string]string{"zone": "1"}, Remove: []string{"drop"}},
			JSONPatch:       []v1alpha1.JSONPatchOperation{{Op: "add", Path: "/spec/paused", Value: []byte("true")}}},
		{ClusterNames: []string{"m2"}, ImageOverrider: []v1alpha1.ImageOverride{{Image: "nginx"}}},
	}
	if err := applyOverrides(obj, memberInfo{Name: "m1"}, ovs); err != nil {
		t.Fatal(err)
	}
	cs, _, _ := unstructured.NestedSlice(obj.Object, "spec", "template", "spec", "containers")
	if got := fmt.Sprint(cs); got != "[map[args:[a b] image:busybox:2 name:main] map[image:pause name:side]]" {
		t.Errorf("containers: %s", got)
	}
	if got := fmt.Sprint(obj.GetLabels()); got != "map[app:web zone:1]" {
		t.Errorf("labels: %s", got)
	}
	if p, _, _ := unstructured.NestedBool(obj.Object, "spec", "paused"); !p {
		t.Error("json patch not applied")
	}
	bad := []v1alpha1.ClusterOverride{{JSONPatch: []v1alpha1.JSONPatchOperation{{Op: "remove", Path: "/spec/nothing"}}}}
	if err := applyOverrides(obj, memberInfo{Name: "m1"}, bad); err == nil {
		t.Error("a JSON patch removing a missing path should fail")
	}
}

func TestDependencies(t *testing.T) {
	obj := deployment("web", nil)
	_ = unstructured.SetNestedField(obj.Object, map[string]any{
		"volumes": []any{map[string]any{"name": "v", "configMap": map[string]any{"name": "cm1"}},
			map[string]any{"name": "s", "secret": map[string]any{"secretName": "sec1"}}},
		"containers": []any{map[string]any{"name": "c", "envFrom": []any{map[string]any{"configMapRef": map[string]any{"name": "cm2"}}},
			"env": []any{map[string]any{"name": "X", "valueFrom": map[string]any{"secretKeyRef": map[string]any{"name": "sec2", "key": "k"}}}}}},
		"imagePullSecrets": []any{map[string]any{"name": "pull"}},
	}, "spec", "template", "spec")
	cms, secs := dependencies(obj)
	if fmt.Sprint(cms, secs) != "[cm1 cm2] [sec1 sec2 pull]" {
		t.Errorf("dependencies: %v %v", cms, secs)
	}
}
