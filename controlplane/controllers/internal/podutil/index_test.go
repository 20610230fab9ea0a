package podutil

import (
	"slices"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ktypes "k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"
)

func TestControlledPods(t *testing.T) {
	pod := func(ns, name, owner string, controller bool) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
		if owner != "" {
			p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: owner, UID: ktypes.UID("uid-" + owner), Controller: ptr.To(controller)}}
		}
		return p
	}
	cs := fake.NewClientset()
	inf := informers.NewSharedInformerFactory(cs, 0).Core().V1().Pods().Informer()
	// Controllers sharing the informer add the index once, also when
	// they start at the same time (run with -race).
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if err := AddControllerIndex(inf); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	for _, p := range []*corev1.Pod{
		pod("a", "mine-1", "rs1", true), pod("a", "mine-2", "rs1", true),
		pod("a", "other", "rs2", true),
		pod("a", "orphan", "", false),
		pod("a", "not-controller", "rs1", false), // an owner, not the controller: an orphan
		pod("b", "same-uid-elsewhere", "rs1", true),
		pod("b", "orphan-b", "", false),
	} {
		if err := inf.GetIndexer().Add(p); err != nil {
			t.Fatal(err)
		}
	}
	names := func(ns, uid string) []string {
		t.Helper()
		pods, err := ControlledPods(inf.GetIndexer(), ns, ktypes.UID(uid))
		return sortedNames(t, pods, err)
	}
	for _, tc := range []struct {
		ns, uid string
		want    []string
	}{
		{"a", "uid-rs1", []string{"mine-1", "mine-2"}},
		{"a", "uid-rs2", []string{"other"}},
		{"a", "", []string{"not-controller", "orphan"}},
		{"b", "uid-rs1", []string{"same-uid-elsewhere"}},
		{"b", "", []string{"orphan-b"}},
		{"c", "", nil},
	} {
		if got := names(tc.ns, tc.uid); !slices.Equal(got, tc.want) {
			t.Errorf("ControlledPods(%q, %q) = %v, want %v", tc.ns, tc.uid, got, tc.want)
		}
	}
	// An update that makes the orphan owned moves it between keys.
	adopted := pod("a", "orphan", "rs2", true)
	if err := inf.GetIndexer().Update(adopted); err != nil {
		t.Fatal(err)
	}
	if got := names("a", "uid-rs2"); !slices.Equal(got, []string{"orphan", "other"}) {
		t.Errorf("after adoption rs2 has %v", got)
	}
	if got := names("a", ""); !slices.Equal(got, []string{"not-controller"}) {
		t.Errorf("after adoption the orphans are %v", got)
	}
}

func TestOwnAndOrphans(t *testing.T) {
	pod := func(ns, name, ownerUID string) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
		if ownerUID != "" {
			p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "DaemonSet", Name: "ds-" + ownerUID, UID: ktypes.UID(ownerUID), Controller: ptr.To(true)}}
		}
		return p
	}
	inf := informers.NewSharedInformerFactory(fake.NewClientset(), 0).Core().V1().Pods().Informer()
	// Before the index exists, the lookup fails rather than finding nothing.
	if _, err := OwnAndOrphans(inf.GetIndexer(), "a", "u1"); err == nil {
		t.Error("OwnAndOrphans without the index: no error")
	}
	if err := AddControllerIndex(inf); err != nil {
		t.Fatal(err)
	}
	for _, p := range []*corev1.Pod{
		pod("a", "mine", "u1"), pod("a", "theirs", "u2"), pod("a", "orphan", ""),
		pod("b", "mine-elsewhere", "u1"), pod("b", "orphan-elsewhere", ""),
	} {
		if err := inf.GetIndexer().Add(p); err != nil {
			t.Fatal(err)
		}
	}
	names := func(ns string, uid ktypes.UID) []string {
		t.Helper()
		pods, err := OwnAndOrphans(inf.GetIndexer(), ns, uid)
		return sortedNames(t, pods, err)
	}
	for _, tc := range []struct {
		ns   string
		uid  ktypes.UID
		want []string
	}{
		{"a", "u1", []string{"mine", "orphan"}},
		{"a", "u2", []string{"orphan", "theirs"}},
		{"a", "u3", []string{"orphan"}},
		{"a", "", []string{"orphan"}}, // no UID: the orphans once, not twice
		{"b", "u1", []string{"mine-elsewhere", "orphan-elsewhere"}},
		{"c", "u1", nil},
	} {
		if got := names(tc.ns, tc.uid); !slices.Equal(got, tc.want) {
			t.Errorf("OwnAndOrphans(%q, %q) = %v, want %v", tc.ns, tc.uid, got, tc.want)
		}
	}
}

// sortedNames fails t on err, else returns the pods' names, sorted.
func sortedNames(t *testing.T, pods []*corev1.Pod, err error) []string {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range pods {
		out = append(out, p.Name)
	}
	slices.Sort(out)
	return out
}
