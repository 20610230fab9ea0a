package registry

import (
	"testing"

	"k8s.io/apimachinery/pkg/runtime/schema"
)

func TestAllSortedAndRefreshedOnChange(t *testing.T) {
	g := New()
	g.Add(&Resource{Group: "apps", Version: "v1", Plural: "deployments", Kind: "Deployment"})
	g.Add(&Resource{Group: "", Version: "v1", Plural: "pods", Kind: "Pod"})
	all := g.All()
	if len(all) != 2 || all[0].Plural != "pods" || all[1].Plural != "deployments" {
		t.Fatalf("All = %v, want core first", plurals(all))
	}
	all[0] = nil // the caller's copy: must not reach the registry
	g.Add(&Resource{Group: "", Version: "v1", Plural: "configmaps", Kind: "ConfigMap"})
	if got := plurals(g.All()); len(got) != 3 || got[0] != "configmaps" || got[1] != "pods" {
		t.Fatalf("after Add: %v", got)
	}
	g.Remove(schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"})
	if got := plurals(g.All()); len(got) != 2 {
		t.Fatalf("after Remove: %v", got)
	}
}

func TestStorageKeyPrefix(t *testing.T) {
	g := New()
	g.Add(&Resource{Group: "example.com", Version: "v1beta1", Plural: "widgets", Kind: "Widget"})
	g.Add(&Resource{Group: "", Version: "v1", Plural: "pods", Kind: "Pod"})
	if p := g.StorageKeyPrefix("", "pods"); p != "/registry/pods/" {
		t.Fatalf("pods prefix = %q", p)
	}
	if p := g.StorageKeyPrefix("example.com", "widgets"); p != "/registry/example.com/widgets/" {
		t.Fatalf("widgets prefix = %q", p)
	}
	if p := g.StorageKeyPrefix("example.com", "gadgets"); p != "" {
		t.Fatalf("unserved prefix = %q, want empty", p)
	}
}

func plurals(rs []*Resource) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		if r != nil {
			out[i] = r.Plural
		}
	}
	return out
}
