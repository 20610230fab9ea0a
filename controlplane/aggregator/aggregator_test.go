package aggregator

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	apiregv1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
)

func apiServiceObject(t *testing.T, port int32, cond *apiregv1.APIServiceCondition) any {
	t.Helper()
	api := &apiregv1.APIService{ObjectMeta: metav1.ObjectMeta{Name: "v1.example.skiff.dev"}, Spec: apiregv1.APIServiceSpec{
		Group: "example.skiff.dev", Version: "v1", GroupPriorityMinimum: 1000, VersionPriority: 15,
		Service: &apiregv1.ServiceReference{Namespace: "default", Name: "widgets", Port: &port}}}
	if cond != nil {
		api.Status.Conditions = []apiregv1.APIServiceCondition{*cond}
	}
	obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(api)
	if err != nil {
		t.Fatal(err)
	}
	return &unstructured.Unstructured{Object: obj}
}

// TestStatusUpdateKeepsBackend: a new version of an APIService that only
// changes its status (every decoded object has its own port pointer)
// keeps the backend and its last check, so discovery does not go stale
// after each status write; a changed port builds a new backend.
func TestStatusUpdateKeepsBackend(t *testing.T) {
	a := New(Options{})
	a.syncFrom([]any{apiServiceObject(t, 8443, nil)})
	b := a.lookup("example.skiff.dev", "v1")
	if b == nil {
		t.Fatal("no backend after the first sync")
	}
	b.mu.Lock()
	b.available, b.resources = true, []metav1.APIResource{{Name: "widgets"}}
	b.mu.Unlock()
	<-a.recheck // the new backend asked for a check

	passed := &apiregv1.APIServiceCondition{Type: apiregv1.Available, Status: apiregv1.ConditionTrue, Reason: "Passed"}
	a.syncFrom([]any{apiServiceObject(t, 8443, passed)})
	if got := a.lookup("example.skiff.dev", "v1"); got != b {
		t.Fatal("a status update replaced the backend")
	}
	if c := b.cond; c.Status != apiregv1.ConditionTrue || c.Reason != "Passed" {
		t.Errorf("backend's view of the condition %+v, want True/Passed", c)
	}
	select {
	case <-a.recheck:
		t.Error("a status update asked for a recheck")
	default:
	}
	g := a.Groups()
	if len(g) != 1 || len(g[0].Versions) != 1 || !g[0].Versions[0].Available {
		t.Errorf("groups after a status update: %+v, want v1 available", g)
	}

	a.syncFrom([]any{apiServiceObject(t, 9443, passed)})
	if got := a.lookup("example.skiff.dev", "v1"); got == b || got == nil {
		t.Error("a changed port kept the old backend")
	}
}
