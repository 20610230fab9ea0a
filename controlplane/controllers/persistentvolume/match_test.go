package persistentvolume

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8stypes "k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
)

type pvOpt func(*corev1.PersistentVolume)

func pv(name, size string, opts ...pvOpt) *corev1.PersistentVolume {
	v := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{}},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:    corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)},
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
		},
		Status: corev1.PersistentVolumeStatus{Phase: corev1.VolumeAvailable},
	}
	for _, o := range opts {
		o(v)
	}
	return v
}

func withClass(c string) pvOpt {
	return func(v *corev1.PersistentVolume) { v.Spec.StorageClassName = c }
}
func withModes(m ...corev1.PersistentVolumeAccessMode) pvOpt {
	return func(v *corev1.PersistentVolume) { v.Spec.AccessModes = m }
}
func withLabel(k, val string) pvOpt { return func(v *corev1.PersistentVolume) { v.Labels[k] = val } }
func withBlock() pvOpt {
	return func(v *corev1.PersistentVolume) { v.Spec.VolumeMode = ptr.To(corev1.PersistentVolumeBlock) }
}
func withClaim(ns, name, uid string) pvOpt {
	return func(v *corev1.PersistentVolume) {
		v.Spec.ClaimRef = &corev1.ObjectReference{Namespace: ns, Name: name, UID: k8stypes.UID("u-" + uid)}
	}
}
func withPhase(p corev1.PersistentVolumePhase) pvOpt {
	return func(v *corev1.PersistentVolume) { v.Status.Phase = p }
}
func onNode(n string) pvOpt {
	return func(v *corev1.PersistentVolume) {
		v.Spec.NodeAffinity = &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
			MatchExpressions: []corev1.NodeSelectorRequirement{{Key: corev1.LabelHostname, Operator: corev1.NodeSelectorOpIn, Values: []string{n}}},
		}}}}
	}
}

func claim(size string, mutate ...func(*corev1.PersistentVolumeClaim)) *corev1.PersistentVolumeClaim {
	c := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "c", UID: "u-c"},
		Spec: corev1.PersistentVolumeClaimSpec{
			StorageClassName: ptr.To(""),
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)}},
		},
	}
	for _, m := range mutate {
		m(c)
	}
	return c
}

func node(name string) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{corev1.LabelHostname: name}}}
}

func TestFindMatch(t *testing.T) {
	tests := []struct {
		name    string
		claim   *corev1.PersistentVolumeClaim
		volumes []*corev1.PersistentVolume
		node    *corev1.Node
		delayed bool
		want    string
	}{
		{"smallest large enough", claim("5Gi"), []*corev1.PersistentVolume{pv("a", "10Gi"), pv("b", "5Gi"), pv("c", "1Gi"), pv("d", "8Gi")}, nil, false, "b"},
		{"nothing large enough", claim("50Gi"), []*corev1.PersistentVolume{pv("a", "10Gi")}, nil, false, ""},
		{"binary and decimal units compare", claim("1G"), []*corev1.PersistentVolume{pv("a", "1Gi")}, nil, false, "a"},
		{"class must match", claim("1Gi", func(c *corev1.PersistentVolumeClaim) { c.Spec.StorageClassName = ptr.To("fast") }),
			[]*corev1.PersistentVolume{pv("slow", "1Gi", withClass("slow")), pv("none", "1Gi"), pv("fast", "2Gi", withClass("fast"))}, nil, false, "fast"},
		{"beta class annotation wins", claim("1Gi", func(c *corev1.PersistentVolumeClaim) {
			c.Annotations = map[string]string{AnnBetaStorageClass: "gold"}
		}), []*corev1.PersistentVolume{pv("none", "1Gi"), pv("gold", "1Gi", withClass("gold"))}, nil, false, "gold"},
		{"access modes must be contained", claim("1Gi", func(c *corev1.PersistentVolumeClaim) {
			c.Spec.AccessModes = []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany}
		}), []*corev1.PersistentVolume{pv("rwo", "1Gi"), pv("rwx", "5Gi", withModes(corev1.ReadWriteOnce, corev1.ReadWriteMany))}, nil, false, "rwx"},
		{"selector", claim("1Gi", func(c *corev1.PersistentVolumeClaim) {
			c.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "db"}}
		}), []*corev1.PersistentVolume{pv("web", "1Gi", withLabel("tier", "web")), pv("db", "3Gi", withLabel("tier", "db"))}, nil, false, "db"},
		{"volume mode", claim("1Gi"), []*corev1.PersistentVolume{pv("block", "1Gi", withBlock()), pv("fs", "2Gi")}, nil, false, "fs"},
		{"block claim", claim("1Gi", func(c *corev1.PersistentVolumeClaim) { c.Spec.VolumeMode = ptr.To(corev1.PersistentVolumeBlock) }),
			[]*corev1.PersistentVolume{pv("fs", "1Gi"), pv("block", "2Gi", withBlock())}, nil, false, "block"},
		{"bound elsewhere or not available", claim("1Gi"), []*corev1.PersistentVolume{
			pv("taken", "1Gi", withClaim("ns", "other", "o"), withPhase(corev1.VolumeBound)),
			pv("released", "1Gi", withPhase(corev1.VolumeReleased)),
			pv("failed", "1Gi", withPhase(corev1.VolumeFailed)),
		}, nil, false, ""},
		{"pre-bound to the claim wins even if larger", claim("1Gi"), []*corev1.PersistentVolume{pv("small", "1Gi"), pv("mine", "9Gi", withClaim("ns", "c", "c"))}, nil, false, "mine"},
		{"pre-bound by name only", claim("1Gi"), []*corev1.PersistentVolume{pv("mine", "9Gi", func(v *corev1.PersistentVolume) {
			v.Spec.ClaimRef = &corev1.ObjectReference{Namespace: "ns", Name: "c"}
		})}, nil, false, "mine"},
		{"pre-bound to an older claim of that name", claim("1Gi"), []*corev1.PersistentVolume{pv("old", "9Gi", withClaim("ns", "c", "previous"))}, nil, false, ""},
		{"delayed without node binds nothing new", claim("1Gi"), []*corev1.PersistentVolume{pv("a", "1Gi")}, nil, true, ""},
		{"delayed without node keeps a pre-bound volume", claim("1Gi"), []*corev1.PersistentVolume{pv("mine", "1Gi", withClaim("ns", "c", "c"))}, nil, true, "mine"},
		{"node affinity", claim("1Gi"), []*corev1.PersistentVolume{pv("n1", "1Gi", onNode("n1")), pv("n2", "2Gi", onNode("n2")), pv("any", "3Gi")}, node("n2"), true, "n2"},
		{"node affinity excludes", claim("1Gi"), []*corev1.PersistentVolume{pv("n1", "1Gi", onNode("n1"))}, node("n2"), true, ""},
		{"being deleted", claim("1Gi"), []*corev1.PersistentVolume{pv("gone", "1Gi", func(v *corev1.PersistentVolume) {
			v.DeletionTimestamp = &metav1.Time{}
		})}, nil, false, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := FindMatch(tc.claim, tc.volumes, tc.node, tc.delayed)
			if err != nil {
				t.Fatal(err)
			}
			name := ""
			if got != nil {
				name = got.Name
			}
			if name != tc.want {
				t.Fatalf("FindMatch = %q, want %q", name, tc.want)
			}
		})
	}
}

func TestMismatch(t *testing.T) {
	if m := Mismatch(pv("a", "1Gi"), claim("2Gi")); m == "" {
		t.Error("too small volume accepted")
	}
	if m := Mismatch(pv("a", "1Gi", withClass("x")), claim("1Gi")); m == "" {
		t.Error("other class accepted")
	}
	if m := Mismatch(pv("a", "1Gi", withBlock()), claim("1Gi")); m == "" {
		t.Error("block volume accepted for a filesystem claim")
	}
	if m := Mismatch(pv("a", "1Gi"), claim("1Gi", func(c *corev1.PersistentVolumeClaim) {
		c.Spec.AccessModes = []corev1.PersistentVolumeAccessMode{corev1.ReadOnlyMany}
	})); m == "" {
		t.Error("other access mode accepted")
	}
	if m := Mismatch(pv("a", "2Gi"), claim("1Gi")); m != "" {
		t.Errorf("fitting volume refused: %s", m)
	}
}

func TestDelayedBinding(t *testing.T) {
	wait := storagev1.VolumeBindingWaitForFirstConsumer
	imm := storagev1.VolumeBindingImmediate
	if DelayedBinding(nil) || DelayedBinding(&storagev1.StorageClass{}) || DelayedBinding(&storagev1.StorageClass{VolumeBindingMode: &imm}) {
		t.Error("immediate class delayed")
	}
	if !DelayedBinding(&storagev1.StorageClass{VolumeBindingMode: &wait}) {
		t.Error("WaitForFirstConsumer not delayed")
	}
}
