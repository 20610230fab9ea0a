package volumebinding

import (
	"context"
	"testing"

	"github.com/skiffhq/skiff/controlplane/controllers/persistentvolume"
	"github.com/skiffhq/skiff/controlplane/scheduler/framework"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	corelisters "k8s.io/client-go/listers/core/v1"
	storagelisters "k8s.io/client-go/listers/storage/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
)

func plugin(t *testing.T, objs ...any) *VolumeBinding {
	t.Helper()
	claims := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	vols := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	classes := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	drivers := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	caps := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	for _, o := range objs {
		var err error
		switch o.(type) {
		case *corev1.PersistentVolumeClaim:
			err = claims.Add(o)
		case *corev1.PersistentVolume:
			err = vols.Add(o)
		case *storagev1.StorageClass:
			err = classes.Add(o)
		case *storagev1.CSIStorageCapacity:
			err = caps.Add(o)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return &VolumeBinding{
		claims: corelisters.NewPersistentVolumeClaimLister(claims), volumes: corelisters.NewPersistentVolumeLister(vols),
		classes: storagelisters.NewStorageClassLister(classes), assumed: map[string]types.UID{},
		drivers: storagelisters.NewCSIDriverLister(drivers), caps: storagelisters.NewCSIStorageCapacityLister(caps),
	}
}

// capacity is a CSIStorageCapacity of class for node.
func capacity(class, node, size string) *storagev1.CSIStorageCapacity {
	q := resource.MustParse(size)
	return &storagev1.CSIStorageCapacity{
		ObjectMeta:       metav1.ObjectMeta{Namespace: "kube-system", Name: class + "-" + node},
		NodeTopology:     &metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelHostname: node}},
		StorageClassName: class, Capacity: &q,
	}
}

func class(name, provisioner string, wait bool) *storagev1.StorageClass {
	mode := storagev1.VolumeBindingImmediate
	if wait {
		mode = storagev1.VolumeBindingWaitForFirstConsumer
	}
	return &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: name}, Provisioner: provisioner, VolumeBindingMode: &mode}
}

func claim(name, class, size, volume string) *corev1.PersistentVolumeClaim {
	c := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: types.UID("uid-" + name)},
		Spec: corev1.PersistentVolumeClaimSpec{
			StorageClassName: ptr.To(class), VolumeName: volume,
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)}},
		},
	}
	if volume != "" {
		c.Annotations = map[string]string{persistentvolume.AnnBindCompleted: "yes"}
		c.Status.Phase = corev1.ClaimBound
	}
	return c
}

func localPV(name, class, size, node string) *corev1.PersistentVolume {
	return &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PersistentVolumeSpec{
			StorageClassName: class,
			Capacity:         corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)},
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
				MatchExpressions: []corev1.NodeSelectorRequirement{{Key: corev1.LabelHostname, Operator: corev1.NodeSelectorOpIn, Values: []string{node}}},
			}}}},
		},
		Status: corev1.PersistentVolumeStatus{Phase: corev1.VolumeAvailable},
	}
}

func podWith(claims ...string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p", UID: "pod-uid"}}
	for _, c := range claims {
		p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: c, VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: c}}})
	}
	return p
}

func nodeInfo(name string) *framework.NodeInfo {
	ni := framework.NewNodeInfo()
	ni.SetNode(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{corev1.LabelHostname: name, "zone": "z-" + name}}})
	return ni
}

func TestFilter(t *testing.T) {
	bound := localPV("bound-pv", "local", "1Gi", "n1")
	bound.Spec.ClaimRef = &corev1.ObjectReference{Namespace: "ns", Name: "bound"}
	restricted := class("zoned", "skiff.io/local-path", true)
	restricted.AllowedTopologies = []corev1.TopologySelectorTerm{{MatchLabelExpressions: []corev1.TopologySelectorLabelRequirement{{Key: "zone", Values: []string{"z-n2"}}}}}
	objs := []any{
		class("local", NoProvisioner, true), class("local-path", "skiff.io/local-path", true), class("fast", "skiff.io/local-path", false), restricted,
		bound, localPV("n1-small", "local", "1Gi", "n1"), localPV("n2-big", "local", "10Gi", "n2"),
		claim("bound", "local", "1Gi", "bound-pv"),
		claim("static", "local", "5Gi", ""),
		claim("static-small", "local", "1Gi", ""),
		claim("dynamic", "local-path", "1Gi", ""),
		claim("immediate", "fast", "1Gi", ""),
		claim("zoned", "zoned", "1Gi", ""),
		claim("nothing-fits", "local", "100Gi", ""),
		claim("dynamic-big", "local-path", "8Gi", ""),
		capacity("local-path", "n1", "10Gi"), capacity("local-path", "n2", "5Gi"), capacity("zoned", "n2", "10Gi"),
	}
	tests := []struct {
		name   string
		pod    *corev1.Pod
		pre    string // PreFilter rejection, if any
		fits   map[string]bool
		reason string
	}{
		{name: "no claims", pod: podWith(), pre: "skip"},
		{name: "missing claim", pod: podWith("ghost"), pre: `persistentvolumeclaim "ghost" not found`},
		{name: "unbound immediate", pod: podWith("immediate"), pre: ErrReasonUnboundImmediate},
		{name: "bound volume's node affinity", pod: podWith("bound"), fits: map[string]bool{"n1": true, "n2": false}, reason: ErrReasonNodeConflict},
		{name: "static match only where a volume fits", pod: podWith("static"), fits: map[string]bool{"n1": false, "n2": true}, reason: ErrReasonBindConflict},
		{name: "provisioner serves any node", pod: podWith("dynamic"), fits: map[string]bool{"n1": true, "n2": true}},
		{name: "storage capacity", pod: podWith("dynamic-big"), fits: map[string]bool{"n1": true, "n2": false}, reason: ErrReasonNotEnoughSpace},
		{name: "allowed topologies", pod: podWith("zoned"), fits: map[string]bool{"n1": false, "n2": true}, reason: ErrReasonBindConflict},
		{name: "nothing fits and no provisioner", pod: podWith("nothing-fits"), fits: map[string]bool{"n1": false, "n2": false}, reason: ErrReasonBindConflict},
		{name: "two claims need two volumes", pod: podWith("static-small", "static"), fits: map[string]bool{"n1": false, "n2": false}, reason: ErrReasonBindConflict},
		{name: "bound and dynamic", pod: podWith("bound", "dynamic"), fits: map[string]bool{"n1": true, "n2": false}, reason: ErrReasonNodeConflict},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := plugin(t, objs...)
			state := framework.NewCycleState()
			_, st := p.PreFilter(context.Background(), state, tc.pod)
			switch {
			case tc.pre == "skip":
				if !st.IsSkip() {
					t.Fatalf("PreFilter = %v, want Skip", st)
				}
				return
			case tc.pre != "":
				if st.Code() != framework.UnschedulableAndUnresolvable || st.Message() != tc.pre {
					t.Fatalf("PreFilter = %v, want %q", st, tc.pre)
				}
				return
			case !st.IsSuccess():
				t.Fatalf("PreFilter = %v", st)
			}
			for node, fits := range tc.fits {
				st := p.Filter(context.Background(), state, tc.pod, nodeInfo(node))
				if st.IsSuccess() != fits {
					t.Errorf("node %s: fits=%v want %v (%v)", node, st.IsSuccess(), fits, st)
				}
				if !fits && st.Message() != tc.reason {
					t.Errorf("node %s: reason %q want %q", node, st.Message(), tc.reason)
				}
			}
		})
	}
}

// TestReserveAssumes: a volume reserved for one pod is not offered to
// another until the first pod's binding ends.
func TestReserveAssumes(t *testing.T) {
	objs := []any{class("local", NoProvisioner, true), localPV("only", "local", "1Gi", "n1"), claim("a", "local", "1Gi", ""), claim("b", "local", "1Gi", "")}
	p := plugin(t, objs...)
	first := podWith("a")
	state := framework.NewCycleState()
	if _, st := p.PreFilter(context.Background(), state, first); !st.IsSuccess() {
		t.Fatal(st)
	}
	if st := p.Filter(context.Background(), state, first, nodeInfo("n1")); !st.IsSuccess() {
		t.Fatal(st)
	}
	if st := p.Reserve(context.Background(), state, first, "n1"); !st.IsSuccess() {
		t.Fatal(st)
	}
	second := podWith("b")
	second.UID = "other"
	state2 := framework.NewCycleState()
	if _, st := p.PreFilter(context.Background(), state2, second); !st.IsSuccess() {
		t.Fatal(st)
	}
	if st := p.Filter(context.Background(), state2, second, nodeInfo("n1")); st.IsSuccess() {
		t.Fatal("assumed volume offered to a second pod")
	}
	p.Unreserve(context.Background(), state, first, "n1")
	state3 := framework.NewCycleState()
	if _, st := p.PreFilter(context.Background(), state3, second); !st.IsSuccess() {
		t.Fatal(st)
	}
	if st := p.Filter(context.Background(), state3, second, nodeInfo("n1")); !st.IsSuccess() {
		t.Fatalf("volume not offered after unreserve: %v", st)
	}
}
