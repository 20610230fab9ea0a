package history

import (
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestTemplatePatchRoundTrip(t *testing.T) {
	tmpl := &corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "x"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "nginx:1"}}},
	}
	data, err := TemplatePatch(tmpl)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(data), `{"spec":{"template":{"$patch":"replace",`) {
		t.Fatalf("patch %s", data)
	}
	back, err := Template(data)
	if err != nil {
		t.Fatal(err)
	}
	if back.Labels["app"] != "x" || back.Spec.Containers[0].Image != "nginx:1" {
		t.Fatalf("round trip %+v", back)
	}
	again, _ := TemplatePatch(back)
	if string(again) != string(data) {
		t.Fatalf("not stable:\n%s\n%s", data, again)
	}
	tmpl.Spec.Containers[0].Image = "nginx:2"
	other, _ := TemplatePatch(tmpl)
	if Hash(data, nil) == Hash(other, nil) {
		t.Fatal("different templates hash alike")
	}
	one := int32(1)
	if Hash(data, nil) == Hash(data, &one) {
		t.Fatal("collision count does not change the hash")
	}
}

func TestNewAndFindEqual(t *testing.T) {
	parent := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "ns", UID: "u"}}
	gvk := appsv1.SchemeGroupVersion.WithKind("StatefulSet")
	a := New(parent, gvk, map[string]string{"app": "web"}, []byte(`{"a":1}`), 1, nil)
	b := New(parent, gvk, map[string]string{"app": "web"}, []byte(`{"a":2}`), 2, nil)
	if a.Name != "web-"+a.Labels[HashLabel] || a.Labels["app"] != "web" || a.Namespace != "ns" || metav1.GetControllerOf(a).UID != "u" {
		t.Fatalf("revision %+v", a.ObjectMeta)
	}
	probe := New(parent, gvk, nil, []byte(`{"a":1}`), 3, nil)
	if eq := FindEqual([]*appsv1.ControllerRevision{a, b}, probe); len(eq) != 1 || eq[0] != a {
		t.Fatalf("equal %v", eq)
	}
	revs := []*appsv1.ControllerRevision{b, a}
	Sort(revs)
	if revs[0] != a || Next(revs) != 3 {
		t.Fatalf("sort/next")
	}
}

func TestToTrim(t *testing.T) {
	var revs []*appsv1.ControllerRevision
	for i, n := range []string{"r1", "r2", "r3", "r4", "r5"} {
		revs = append(revs, &appsv1.ControllerRevision{ObjectMeta: metav1.ObjectMeta{Name: n}, Revision: int64(i + 1)})
	}
	got := ToTrim(revs, map[string]bool{"r1": true, "r5": true}, 1)
	if len(got) != 2 || got[0].Name != "r2" || got[1].Name != "r3" {
		t.Fatalf("trim %v", got)
	}
	if got := ToTrim(revs, nil, 10); len(got) != 0 {
		t.Fatalf("trim under limit %v", got)
	}
}
