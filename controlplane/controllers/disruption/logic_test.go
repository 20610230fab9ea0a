package disruption

import (
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func pod(name string, ready bool, owner types.UID) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns"}}
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	p.Status.Phase = corev1.PodRunning
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: st}}
	if owner != "" {
		yes := true
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: string(owner), UID: owner, Controller: &yes}}
	}
	return p
}

// finder: every ReplicaSet named rs-N has scale scales[uid]; "dep-a" and
// "dep-b" are ReplicaSets of one Deployment "dep".
func finder(scales map[types.UID]int32) ScaleFinder {
	return func(ref *metav1.OwnerReference, ns string) (types.UID, int32, bool, error) {
		if ref.UID == "dep-a" || ref.UID == "dep-b" {
			return "dep", scales["dep"], true, nil
		}
		s, ok := scales[ref.UID]
		return ref.UID, s, ok, nil
	}
}

func TestStatusArithmetic(t *testing.T) {
	i := intstr.FromInt32
	s := intstr.FromString
	type tc struct {
		name              string
		minAvail, maxUnav *intstr.IntOrString
		ready, unready    int
		scale             int32
		wantExpected      int32
		wantDesired       int32
		wantAllowed       int32
		wantConditionTrue bool
	}
	ptr := func(v intstr.IntOrString) *intstr.IntOrString { return &v }
	cases := []tc{
		{name: "minAvailable int", minAvail: ptr(i(2)), ready: 3, scale: 3, wantExpected: 3, wantDesired: 2, wantAllowed: 1, wantConditionTrue: true},
		{name: "minAvailable int counts pods not scale", minAvail: ptr(i(2)), ready: 3, unready: 1, scale: 10, wantExpected: 4, wantDesired: 2, wantAllowed: 1, wantConditionTrue: true},
		{name: "minAvailable int equal", minAvail: ptr(i(3)), ready: 3, scale: 3, wantExpected: 3, wantDesired: 3, wantAllowed: 0},
		{name: "minAvailable int above healthy", minAvail: ptr(i(5)), ready: 3, scale: 3, wantExpected: 3, wantDesired: 5, wantAllowed: 0},
		{name: "minAvailable 50% of 5 rounds up", minAvail: ptr(s("50%")), ready: 5, scale: 5, wantExpected: 5, wantDesired: 3, wantAllowed: 2, wantConditionTrue: true},
		{name: "minAvailable % of scale not pods", minAvail: ptr(s("50%")), ready: 2, scale: 6, wantExpected: 6, wantDesired: 3, wantAllowed: 0},
		{name: "minAvailable 100%", minAvail: ptr(s("100%")), ready: 4, scale: 4, wantExpected: 4, wantDesired: 4, wantAllowed: 0},
		{name: "maxUnavailable int", maxUnav: ptr(i(1)), ready: 3, scale: 3, wantExpected: 3, wantDesired: 2, wantAllowed: 1, wantConditionTrue: true},
		{name: "maxUnavailable int uses scale", maxUnav: ptr(i(1)), ready: 3, scale: 4, wantExpected: 4, wantDesired: 3, wantAllowed: 0},
		{name: "maxUnavailable int above scale", maxUnav: ptr(i(9)), ready: 3, scale: 3, wantExpected: 3, wantDesired: 0, wantAllowed: 3, wantConditionTrue: true},
		{name: "maxUnavailable 30% of 10 rounds up", maxUnav: ptr(s("30%")), ready: 10, scale: 10, wantExpected: 10, wantDesired: 7, wantAllowed: 3, wantConditionTrue: true},
		{name: "maxUnavailable 25% of 3 rounds up", maxUnav: ptr(s("25%")), ready: 3, scale: 3, wantExpected: 3, wantDesired: 2, wantAllowed: 1, wantConditionTrue: true},
		{name: "maxUnavailable 0", maxUnav: ptr(i(0)), ready: 3, scale: 3, wantExpected: 3, wantDesired: 3, wantAllowed: 0},
		{name: "unready pods do not count", minAvail: ptr(i(2)), ready: 2, unready: 2, scale: 4, wantExpected: 4, wantDesired: 2, wantAllowed: 0},
		{name: "no pods: no disruption", maxUnav: ptr(i(1)), scale: 0, wantExpected: 0, wantDesired: 0, wantAllowed: 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pdb := &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: "b", Namespace: "ns", Generation: 4},
				Spec: policyv1.PodDisruptionBudgetSpec{MinAvailable: c.minAvail, MaxUnavailable: c.maxUnav}}
			var pods []*corev1.Pod
			for n := 0; n < c.ready+c.unready; n++ {
				pods = append(pods, pod(fmt.Sprint("p", n), n < c.ready, "rs-1"))
			}
			expected, desired, unmanaged, err := ExpectedCounts(pdb, pods, finder(map[types.UID]int32{"rs-1": c.scale}))
			if err != nil || len(unmanaged) > 0 {
				t.Fatalf("err %v, unmanaged %v", err, unmanaged)
			}
			now := time.Now()
			st := Status(pdb, CountHealthy(pods, nil, now), desired, expected, map[string]metav1.Time{})
			if st.ExpectedPods != c.wantExpected || st.DesiredHealthy != c.wantDesired || st.DisruptionsAllowed != c.wantAllowed || st.CurrentHealthy != int32(c.ready) {
				t.Fatalf("status %+v; want expected %d desired %d allowed %d healthy %d", st, c.wantExpected, c.wantDesired, c.wantAllowed, c.ready)
			}
			if st.ObservedGeneration != 4 {
				t.Fatalf("observedGeneration %d", st.ObservedGeneration)
			}
			cond := apimeta.FindStatusCondition(st.Conditions, policyv1.DisruptionAllowedCondition)
			if cond == nil || (cond.Status == metav1.ConditionTrue) != c.wantConditionTrue {
				t.Fatalf("condition %+v", cond)
			}
			want := policyv1.InsufficientPodsReason
			if c.wantConditionTrue {
				want = policyv1.SufficientPodsReason
			}
			if cond.Reason != want {
				t.Fatalf("reason %s, want %s", cond.Reason, want)
			}
		})
	}
}

func TestExpectedScaleCountsEachControllerOnce(t *testing.T) {
	pods := []*corev1.Pod{pod("a", true, "dep-a"), pod("b", true, "dep-b"), pod("c", true, "rs-2"), pod("d", true, "rs-2"), pod("e", true, "")}
	got, unmanaged, err := ExpectedScale(pods, finder(map[types.UID]int32{"dep": 5, "rs-2": 2}))
	if err != nil {
		t.Fatal(err)
	}
	if got != 7 || len(unmanaged) != 1 || unmanaged[0] != "e" {
		t.Fatalf("got %d unmanaged %v; want 7 [e]", got, unmanaged)
	}
	if _, _, err := ExpectedScale([]*corev1.Pod{pod("x", true, "gone")}, finder(nil)); err == nil {
		t.Fatal("a pod whose controller is missing must fail the percentage computation")
	}
	// An integer minAvailable does not need the controllers.
	pdb := &policyv1.PodDisruptionBudget{Spec: policyv1.PodDisruptionBudgetSpec{MinAvailable: &intstr.IntOrString{IntVal: 1}}}
	if exp, des, _, err := ExpectedCounts(pdb, []*corev1.Pod{pod("x", true, "gone")}, finder(nil)); err != nil || exp != 1 || des != 1 {
		t.Fatalf("int minAvailable: %d %d %v", exp, des, err)
	}
}

func TestDisruptedPodsExpire(t *testing.T) {
	now := time.Now()
	recent := metav1.NewTime(now.Add(-30 * time.Second))
	old := metav1.NewTime(now.Add(-3 * time.Minute))
	pdb := &policyv1.PodDisruptionBudget{Status: policyv1.PodDisruptionBudgetStatus{DisruptedPods: map[string]metav1.Time{
		"recent": recent, "old": old, "deleted-already": recent, "gone": recent,
	}}}
	deleting := pod("deleted-already", true, "")
	deleting.DeletionTimestamp = &recent
	pods := []*corev1.Pod{pod("recent", true, ""), pod("old", true, ""), deleting, pod("other", true, "")}
	got, recheck, overdue := DisruptedPods(pdb, pods, now)
	if len(got) != 1 || got["recent"] != recent {
		t.Fatalf("kept %v, want only recent", got)
	}
	if len(overdue) != 1 || overdue[0] != "old" {
		t.Fatalf("overdue %v", overdue)
	}
	if recheck == nil || !recheck.Equal(recent.Add(DeletionTimeout)) {
		t.Fatalf("recheck %v", recheck)
	}
	// The pod about to be evicted and the deleting pod are not healthy.
	if h := CountHealthy(pods, got, now); h != 2 {
		t.Fatalf("healthy %d, want 2 (old and other)", h)
	}
}
