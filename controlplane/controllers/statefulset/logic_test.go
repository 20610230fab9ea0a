package statefulset

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// recorder is a podControl that records what a sync asked for.
type recorder struct{ ops []string }

func (r *recorder) create(_ context.Context, _ *appsv1.StatefulSet, p *corev1.Pod) error {
	r.ops = append(r.ops, "create "+p.Name+"@"+revisionOf(p))
	return nil
}
func (r *recorder) delete(_ context.Context, _ *appsv1.StatefulSet, p *corev1.Pod) error {
	r.ops = append(r.ops, "delete "+p.Name)
	return nil
}
func (r *recorder) fixIdentity(_ context.Context, _ *appsv1.StatefulSet, p *corev1.Pod) error {
	r.ops = append(r.ops, "identity "+p.Name)
	return nil
}
func (r *recorder) ensureClaims(context.Context, *appsv1.StatefulSet, *corev1.Pod) error { return nil }

func testSet(replicas int32, policy appsv1.PodManagementPolicyType, partition int32) *appsv1.StatefulSet {
	return &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "ns", UID: types.UID("uid")},
		Spec: appsv1.StatefulSetSpec{
			Replicas:            &replicas,
			PodManagementPolicy: policy,
			UpdateStrategy: appsv1.StatefulSetUpdateStrategy{Type: appsv1.RollingUpdateStatefulSetStrategyType,
				RollingUpdate: &appsv1.RollingUpdateStatefulSetStrategy{Partition: &partition}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}}},
		},
	}
}

var testRevs = Revisions{Current: "web-old", Update: "web-new", CurrentTmpl: &corev1.PodTemplateSpec{}, UpdateTmpl: &corev1.PodTemplateSpec{}}

// pod is ordinal ord at revision rev; state is "ready", "pending" or
// "terminating".
func pod(ord int, rev, state string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("web-%d", ord), Namespace: "ns", UID: types.UID(fmt.Sprint(ord)),
		Labels: map[string]string{appsv1.StatefulSetRevisionLabel: rev, appsv1.StatefulSetPodNameLabel: fmt.Sprintf("web-%d", ord), appsv1.PodIndexLabel: fmt.Sprint(ord)}}}
	switch state {
	case "ready":
		p.Status.Phase = corev1.PodRunning
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	case "pending":
		p.Status.Phase = corev1.PodPending
	case "failed":
		p.Status.Phase = corev1.PodFailed
	case "terminating":
		p.Status.Phase = corev1.PodRunning
		now := metav1.Now()
		p.DeletionTimestamp = &now
	}
	return p
}

func TestSyncPods(t *testing.T) {
	ordered, par := appsv1.OrderedReadyPodManagement, appsv1.ParallelPodManagement
	for _, tc := range []struct {
		name     string
		set      *appsv1.StatefulSet
		onDelete bool
		pods     []*corev1.Pod
		want     []string
	}{
		{"ordered creates the first ordinal only", testSet(3, ordered, 0), false, nil, []string{"create web-0@web-new"}},
		{"ordered waits for a pending pod", testSet(3, ordered, 0), false, []*corev1.Pod{pod(0, "web-new", "pending")}, nil},
		{"ordered creates the next once ready", testSet(3, ordered, 0), false, []*corev1.Pod{pod(0, "web-new", "ready")}, []string{"create web-1@web-new"}},
		{"parallel creates all", testSet(3, par, 0), false, nil, []string{"create web-0@web-new", "create web-1@web-new", "create web-2@web-new"}},
		{"parallel does not wait", testSet(3, par, 0), false, []*corev1.Pod{pod(0, "web-new", "pending")}, []string{"create web-1@web-new", "create web-2@web-new"}},
		{"ordered scale down deletes the highest", testSet(1, ordered, 0), false,
			[]*corev1.Pod{pod(0, "web-new", "ready"), pod(1, "web-new", "ready"), pod(2, "web-new", "ready")}, []string{"delete web-2"}},
		{"ordered scale down waits for termination", testSet(1, ordered, 0), false,
			[]*corev1.Pod{pod(0, "web-new", "ready"), pod(1, "web-new", "ready"), pod(2, "web-new", "terminating")}, nil},
		{"parallel scale down deletes all", testSet(1, par, 0), false,
			[]*corev1.Pod{pod(0, "web-new", "ready"), pod(1, "web-new", "ready"), pod(2, "web-new", "ready")}, []string{"delete web-2", "delete web-1"}},
		{"rolling update starts at the highest ordinal", testSet(3, ordered, 0), false,
			[]*corev1.Pod{pod(0, "web-old", "ready"), pod(1, "web-old", "ready"), pod(2, "web-old", "ready")}, []string{"delete web-2"}},
		{"rolling update waits for the replacement", testSet(3, ordered, 0), false,
			[]*corev1.Pod{pod(0, "web-old", "ready"), pod(1, "web-old", "ready"), pod(2, "web-new", "pending")}, nil},
		{"rolling update continues downward", testSet(3, ordered, 0), false,
			[]*corev1.Pod{pod(0, "web-old", "ready"), pod(1, "web-old", "ready"), pod(2, "web-new", "ready")}, []string{"delete web-1"}},
		{"partition stops the update", testSet(3, ordered, 2), false,
			[]*corev1.Pod{pod(0, "web-old", "ready"), pod(1, "web-old", "ready"), pod(2, "web-new", "ready")}, nil},
		{"below the partition pods come back at the current revision", testSet(3, ordered, 2), false,
			[]*corev1.Pod{pod(0, "web-old", "ready"), pod(2, "web-new", "ready")}, []string{"create web-1@web-old"}},
		{"at or above the partition they come back updated", testSet(3, ordered, 2), false,
			[]*corev1.Pod{pod(0, "web-old", "ready"), pod(1, "web-old", "ready")}, []string{"create web-2@web-new"}},
		{"OnDelete replaces nothing", testSet(3, ordered, 0), true,
			[]*corev1.Pod{pod(0, "web-old", "ready"), pod(1, "web-old", "ready"), pod(2, "web-old", "ready")}, nil},
		{"failed pods are deleted", testSet(2, ordered, 0), false,
			[]*corev1.Pod{pod(0, "web-new", "failed"), pod(1, "web-new", "ready")}, []string{"delete web-0"}},
		{"identity labels are repaired", testSet(1, ordered, 0), false,
			[]*corev1.Pod{func() *corev1.Pod {
				p := pod(0, "web-new", "ready")
				delete(p.Labels, appsv1.StatefulSetPodNameLabel)
				return p
			}()},
			[]string{"identity web-0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.onDelete {
				tc.set.Spec.UpdateStrategy = appsv1.StatefulSetUpdateStrategy{Type: appsv1.OnDeleteStatefulSetStrategyType}
			}
			r := &recorder{}
			if _, err := syncPods(context.Background(), r, tc.set, testRevs, tc.pods, time.Now()); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(r.ops, tc.want) {
				t.Fatalf("ops %q, want %q", r.ops, tc.want)
			}
		})
	}
}

func TestMinReadySecondsBlocksOrderedCreate(t *testing.T) {
	set := testSet(2, appsv1.OrderedReadyPodManagement, 0)
	set.Spec.MinReadySeconds = 10
	p := pod(0, "web-new", "ready")
	now := time.Now()
	p.Status.Conditions[0].LastTransitionTime = metav1.NewTime(now.Add(-4 * time.Second))
	r := &recorder{}
	requeue, err := syncPods(context.Background(), r, set, testRevs, []*corev1.Pod{p}, now)
	if err != nil || len(r.ops) != 0 || requeue < 5*time.Second || requeue > 6*time.Second {
		t.Fatalf("ops %q requeue %v err %v", r.ops, requeue, err)
	}
}

func TestOrdinal(t *testing.T) {
	for _, tc := range []struct {
		set, pod string
		ord      int
		ok       bool
	}{
		{"web", "web-0", 0, true}, {"web", "web-12", 12, true}, {"web", "web-01", 0, false},
		{"web", "web-x", 0, false}, {"web", "webb-1", 0, false}, {"web-a", "web-a-3", 3, true}, {"web", "web-", 0, false},
	} {
		ord, ok := Ordinal(tc.set, tc.pod)
		if ord != tc.ord || ok != tc.ok {
			t.Errorf("Ordinal(%q, %q) = %d, %v; want %d, %v", tc.set, tc.pod, ord, ok, tc.ord, tc.ok)
		}
	}
}

func TestNewPodIdentityAndStorage(t *testing.T) {
	set := testSet(1, appsv1.OrderedReadyPodManagement, 0)
	set.Spec.ServiceName = "svc"
	set.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}
	set.Spec.VolumeClaimTemplates = []corev1.PersistentVolumeClaim{{ObjectMeta: metav1.ObjectMeta{Name: "data"}}}
	tmpl := set.Spec.Template.DeepCopy()
	tmpl.Spec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}, {Name: "cfg"}}
	p := NewPod(set, tmpl, "web-abc", 4)
	if p.Name != "web-4" || p.Spec.Hostname != "web-4" || p.Spec.Subdomain != "svc" || p.Labels[appsv1.StatefulSetPodNameLabel] != "web-4" ||
		p.Labels[appsv1.PodIndexLabel] != "4" || p.Labels[appsv1.StatefulSetRevisionLabel] != "web-abc" || p.Labels["app"] != "web" {
		t.Fatalf("pod %+v", p.ObjectMeta)
	}
	if len(p.Spec.Volumes) != 2 || p.Spec.Volumes[0].PersistentVolumeClaim == nil || p.Spec.Volumes[0].PersistentVolumeClaim.ClaimName != "data-web-4" || p.Spec.Volumes[1].Name != "cfg" {
		t.Fatalf("volumes %+v", p.Spec.Volumes)
	}
	if ref := metav1.GetControllerOf(p); ref == nil || ref.UID != "uid" || ref.Kind != "StatefulSet" {
		t.Fatalf("owner %+v", ref)
	}
	claims := Claims(set, 4)
	if len(claims) != 1 || claims[0].Name != "data-web-4" || claims[0].Labels["app"] != "web" || len(claims[0].OwnerReferences) != 0 {
		t.Fatalf("claims %+v", claims)
	}
	set.Spec.PersistentVolumeClaimRetentionPolicy = &appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy{WhenDeleted: appsv1.DeletePersistentVolumeClaimRetentionPolicyType}
	if c := Claims(set, 0); len(c[0].OwnerReferences) != 1 || c[0].OwnerReferences[0].UID != "uid" {
		t.Fatalf("whenDeleted=Delete claim owners %+v", c[0].OwnerReferences)
	}
}

func TestComputeStatus(t *testing.T) {
	set := testSet(3, appsv1.OrderedReadyPodManagement, 0)
	set.Generation = 4
	mixed := []*corev1.Pod{pod(0, "web-old", "ready"), pod(1, "web-old", "pending"), pod(2, "web-new", "ready")}
	st := ComputeStatus(set, mixed, "web-old", "web-new", 0, time.Now())
	if st.ObservedGeneration != 4 || st.Replicas != 3 || st.ReadyReplicas != 2 || st.AvailableReplicas != 2 || st.CurrentReplicas != 2 ||
		st.UpdatedReplicas != 1 || st.CurrentRevision != "web-old" || st.UpdateRevision != "web-new" || st.CollisionCount != nil {
		t.Fatalf("status %+v", st)
	}
	done := []*corev1.Pod{pod(0, "web-new", "ready"), pod(1, "web-new", "ready"), pod(2, "web-new", "ready")}
	st = ComputeStatus(set, done, "web-old", "web-new", 1, time.Now())
	if st.CurrentRevision != "web-new" || st.CurrentReplicas != 3 || st.CollisionCount == nil || *st.CollisionCount != 1 {
		t.Fatalf("completed status %+v", st)
	}
}
