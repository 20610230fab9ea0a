package statefulset

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/skiffhq/skiff/controlplane/controllers/internal/podutil"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// GVK is the kind this controller owns pods for.
var GVK = appsv1.SchemeGroupVersion.WithKind("StatefulSet")

// Ordinal parses pod name <set>-<ordinal>; ok is false for pods that are
// not members of set.
func Ordinal(setName, podName string) (int, bool) {
	if len(podName) <= len(setName)+1 || podName[:len(setName)] != setName || podName[len(setName)] != '-' {
		return 0, false
	}
	s := podName[len(setName)+1:]
	if len(s) > 1 && s[0] == '0' {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}

// PodName is the stable name of ordinal.
func PodName(set *appsv1.StatefulSet, ordinal int) string {
	return fmt.Sprintf("%s-%d", set.Name, ordinal)
}

// ClaimName is the PVC of claim template tmpl for ordinal.
func ClaimName(tmpl, set string, ordinal int) string {
	return fmt.Sprintf("%s-%s-%d", tmpl, set, ordinal)
}

func startOrdinal(set *appsv1.StatefulSet) int {
	if set.Spec.Ordinals != nil {
		return int(set.Spec.Ordinals.Start)
	}
	return 0
}

func replicasOf(set *appsv1.StatefulSet) int {
	if set.Spec.Replicas == nil {
		return 1
	}
	return int(*set.Spec.Replicas)
}

// parallel reports podManagementPolicy Parallel (upstream's "burst").
func parallel(set *appsv1.StatefulSet) bool {
	return set.Spec.PodManagementPolicy == appsv1.ParallelPodManagement
}

// Claims are the PVCs pod of set needs, one per volumeClaimTemplate, with
// the set's selector labels added.
func Claims(set *appsv1.StatefulSet, ordinal int) []*corev1.PersistentVolumeClaim {
	out := make([]*corev1.PersistentVolumeClaim, 0, len(set.Spec.VolumeClaimTemplates))
	for i := range set.Spec.VolumeClaimTemplates {
		t := &set.Spec.VolumeClaimTemplates[i]
		c := &corev1.PersistentVolumeClaim{
			ObjectMeta: metav1.ObjectMeta{
				Name:        ClaimName(t.Name, set.Name, ordinal),
				Namespace:   set.Namespace,
				Labels:      copyMap(t.Labels),
				Annotations: copyMap(t.Annotations),
			},
			Spec: *t.Spec.DeepCopy(),
		}
		if set.Spec.Selector != nil && len(set.Spec.Selector.MatchLabels) > 0 {
			if c.Labels == nil {
				c.Labels = map[string]string{}
			}
			for k, v := range set.Spec.Selector.MatchLabels {
				c.Labels[k] = v
			}
		}
		if p := set.Spec.PersistentVolumeClaimRetentionPolicy; p != nil && p.WhenDeleted == appsv1.DeletePersistentVolumeClaimRetentionPolicyType {
			c.OwnerReferences = []metav1.OwnerReference{*podutil.NewControllerRef(set, GVK)}
		}
		out = append(out, c)
	}
	return out
}

// NewPod is the pod of ordinal built from tmpl (the template of revision),
// with the set's identity and storage.
func NewPod(set *appsv1.StatefulSet, tmpl *corev1.PodTemplateSpec, revision string, ordinal int) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:            PodName(set, ordinal),
			Namespace:       set.Namespace,
			Labels:          copyMap(tmpl.Labels),
			Annotations:     copyMap(tmpl.Annotations),
			Finalizers:      append([]string(nil), tmpl.Finalizers...),
			OwnerReferences: []metav1.OwnerReference{*podutil.NewControllerRef(set, GVK)},
		},
		Spec: *tmpl.Spec.DeepCopy(),
	}
	setIdentity(set, p, ordinal)
	p.Spec.Hostname = p.Name
	p.Spec.Subdomain = set.Spec.ServiceName
	var vols []corev1.Volume
	claims := map[string]bool{}
	for _, c := range set.Spec.VolumeClaimTemplates {
		claims[c.Name] = true
		vols = append(vols, corev1.Volume{Name: c.Name, VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: ClaimName(c.Name, set.Name, ordinal)},
		}})
	}
	for _, v := range p.Spec.Volumes {
		if !claims[v.Name] {
			vols = append(vols, v)
		}
	}
	p.Spec.Volumes = vols
	if p.Labels == nil {
		p.Labels = map[string]string{}
	}
	p.Labels[appsv1.StatefulSetRevisionLabel] = revision
	return p
}

func setIdentity(set *appsv1.StatefulSet, p *corev1.Pod, ordinal int) {
	if p.Labels == nil {
		p.Labels = map[string]string{}
	}
	p.Labels[appsv1.StatefulSetPodNameLabel] = p.Name
	p.Labels[appsv1.PodIndexLabel] = strconv.Itoa(ordinal)
}

// identityMatches reports a pod carrying its ordinal's name labels.
func identityMatches(set *appsv1.StatefulSet, p *corev1.Pod) bool {
	ord, ok := Ordinal(set.Name, p.Name)
	return ok && p.Namespace == set.Namespace && p.Labels[appsv1.StatefulSetPodNameLabel] == p.Name &&
		p.Labels[appsv1.PodIndexLabel] == strconv.Itoa(ord)
}

func revisionOf(p *corev1.Pod) string { return p.Labels[appsv1.StatefulSetRevisionLabel] }

func isRunningAndReady(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodRunning && podutil.IsReady(p)
}

func isTerminating(p *corev1.Pod) bool { return p.DeletionTimestamp != nil }

func isHealthy(p *corev1.Pod) bool { return isRunningAndReady(p) && !isTerminating(p) }

// availableIn is how long until a ready pod counts as available (0 when it
// already does, <0 when it is not ready).
func availableIn(p *corev1.Pod, minReadySeconds int32, now time.Time) time.Duration {
	if !isRunningAndReady(p) {
		return -1
	}
	if minReadySeconds == 0 || podutil.IsAvailable(p, minReadySeconds, now) {
		return 0
	}
	c := podutil.ReadyCondition(p)
	return max(c.LastTransitionTime.Add(time.Duration(minReadySeconds)*time.Second).Sub(now), time.Millisecond)
}

// Revisions are the current and update revisions of a sync.
type Revisions struct {
	Current, Update         string
	CurrentTmpl, UpdateTmpl *corev1.PodTemplateSpec
}

// podFor is the pod of a missing ordinal: below the partition (or, without
// a rolling update config, below currentReplicas) it is built from the
// current revision, otherwise from the update revision (upstream's rule).
func (r Revisions) podFor(set *appsv1.StatefulSet, ordinal int) *corev1.Pod {
	start := startOrdinal(set)
	st := set.Spec.UpdateStrategy
	current := false
	if st.Type == appsv1.RollingUpdateStatefulSetStrategyType {
		if st.RollingUpdate == nil {
			current = ordinal < start+int(set.Status.CurrentReplicas)
		} else if st.RollingUpdate.Partition != nil {
			current = ordinal < start+int(*st.RollingUpdate.Partition)
		}
	}
	if current {
		return NewPod(set, r.CurrentTmpl, r.Current, ordinal)
	}
	return NewPod(set, r.UpdateTmpl, r.Update, ordinal)
}

// podControl does the writes of a sync; the controller's talks to the API
// server, tests record.
type podControl interface {
	// create makes the pod's missing PVCs, then the pod.
	create(ctx context.Context, set *appsv1.StatefulSet, p *corev1.Pod) error
	// delete deletes the pod (UID precondition).
	delete(ctx context.Context, set *appsv1.StatefulSet, p *corev1.Pod) error
	// fixIdentity rewrites the pod's identity labels.
	fixIdentity(ctx context.Context, set *appsv1.StatefulSet, p *corev1.Pod) error
	// ensureClaims makes the pod's missing PVCs.
	ensureClaims(ctx context.Context, set *appsv1.StatefulSet, p *corev1.Pod) error
}

// syncPods moves set's pods one step (OrderedReady) or as far as it can
// (Parallel) toward the desired ordinals and revisions; pods are the pods
// set owns. It returns how soon to look again when waiting on
// minReadySeconds.
func syncPods(ctx context.Context, pc podControl, set *appsv1.StatefulSet, revs Revisions, pods []*corev1.Pod, now time.Time) (time.Duration, error) {
	start, n := startOrdinal(set), replicasOf(set)
	replicas := make([]*corev1.Pod, n)
	var condemned []*corev1.Pod
	for _, p := range pods {
		ord, ok := Ordinal(set.Name, p.Name)
		if !ok {
			continue
		}
		if ord >= start && ord < start+n {
			replicas[ord-start] = p
		} else {
			condemned = append(condemned, p)
		}
	}
	sort.Slice(condemned, func(i, j int) bool {
		a, _ := Ordinal(set.Name, condemned[i].Name)
		b, _ := Ordinal(set.Name, condemned[j].Name)
		return a < b
	})
	var firstUnhealthy *corev1.Pod
	for _, p := range replicas {
		if p != nil && !isHealthy(p) {
			firstUnhealthy = p
			break
		}
	}
	if firstUnhealthy == nil {
		for _, p := range condemned {
			if !isHealthy(p) {
				firstUnhealthy = p
				break
			}
		}
	}
	if set.DeletionTimestamp != nil {
		return 0, nil
	}
	ordered := !parallel(set)
	var requeue time.Duration
	wait := func(d time.Duration) {
		if d > 0 && (requeue == 0 || d < requeue) {
			requeue = d
		}
	}
	var errs []error

	// Living replicas, lowest ordinal first.
	for i := range replicas {
		ord := start + i
		p := replicas[i]
		if p != nil && podutil.IsTerminated(p) && !isTerminating(p) {
			if err := pc.delete(ctx, set, p); err != nil {
				return requeue, err
			}
			if ordered {
				return requeue, nil // recreated once the delete is seen
			}
			continue
		}
		if p == nil {
			np := revs.podFor(set, ord)
			if err := pc.create(ctx, set, np); err != nil {
				if ordered {
					return requeue, err
				}
				errs = append(errs, err)
				continue
			}
			if ordered {
				return requeue, nil
			}
			continue
		}
		if p.Status.Phase == corev1.PodPending {
			if err := pc.ensureClaims(ctx, set, p); err != nil {
				errs = append(errs, err)
			}
		}
		if ordered {
			if isTerminating(p) || !isRunningAndReady(p) {
				return requeue, errors.Join(errs...)
			}
			if d := availableIn(p, set.Spec.MinReadySeconds, now); d > 0 {
				wait(d)
				return requeue, errors.Join(errs...)
			}
		}
		if !isTerminating(p) && !identityMatches(set, p) {
			if err := pc.fixIdentity(ctx, set, p); err != nil {
				errs = append(errs, err)
			}
		}
	}

	// Condemned pods, highest ordinal first.
	for i := len(condemned) - 1; i >= 0; i-- {
		p := condemned[i]
		if isTerminating(p) {
			if ordered {
				return requeue, errors.Join(errs...)
			}
			continue
		}
		if ordered && p != firstUnhealthy {
			if !isRunningAndReady(p) {
				return requeue, errors.Join(errs...)
			}
			if d := availableIn(p, set.Spec.MinReadySeconds, now); d > 0 {
				wait(d)
				return requeue, errors.Join(errs...)
			}
		}
		if err := pc.delete(ctx, set, p); err != nil {
			if ordered {
				return requeue, errors.Join(append(errs, err)...)
			}
			errs = append(errs, err)
			continue
		}
		if ordered {
			return requeue, errors.Join(errs...)
		}
	}
	if len(errs) > 0 {
		return requeue, errors.Join(errs...)
	}

	// Rolling update: replace the highest ordinal at or above the partition
	// that is not at the update revision, one at a time, waiting for each
	// to be healthy. OnDelete leaves that to the user.
	if set.Spec.UpdateStrategy.Type == appsv1.OnDeleteStatefulSetStrategyType {
		return requeue, nil
	}
	minIdx := 0
	if ru := set.Spec.UpdateStrategy.RollingUpdate; ru != nil && ru.Partition != nil {
		minIdx = int(*ru.Partition)
	}
	for i := len(replicas) - 1; i >= minIdx; i-- {
		p := replicas[i]
		if p == nil {
			return requeue, nil
		}
		if revisionOf(p) != revs.Update && !isTerminating(p) {
			return requeue, pc.delete(ctx, set, p)
		}
		if !isHealthy(p) {
			return requeue, nil
		}
	}
	return requeue, nil
}

// ComputeStatus is set's status from the pods it owns and its revisions.
func ComputeStatus(set *appsv1.StatefulSet, pods []*corev1.Pod, currentRev, updateRev string, collisionCount int32, now time.Time) appsv1.StatefulSetStatus {
	st := appsv1.StatefulSetStatus{
		ObservedGeneration: set.Generation,
		CurrentRevision:    currentRev,
		UpdateRevision:     updateRev,
		Conditions:         set.Status.Conditions,
	}
	if collisionCount != 0 || set.Status.CollisionCount != nil {
		cc := collisionCount
		st.CollisionCount = &cc
	}
	for _, p := range pods {
		if p.Status.Phase != "" {
			st.Replicas++
		}
		if isRunningAndReady(p) {
			st.ReadyReplicas++
			if availableIn(p, set.Spec.MinReadySeconds, now) == 0 {
				st.AvailableReplicas++
			}
		}
		if p.Status.Phase != "" && !isTerminating(p) {
			if r := revisionOf(p); r == currentRev {
				st.CurrentReplicas++
			}
			if revisionOf(p) == updateRev {
				st.UpdatedReplicas++
			}
		}
	}
	// A finished rolling update makes the update revision current.
	if set.Spec.UpdateStrategy.Type == appsv1.RollingUpdateStatefulSetStrategyType &&
		st.UpdatedReplicas == st.Replicas && st.ReadyReplicas == st.Replicas {
		st.CurrentReplicas = st.UpdatedReplicas
		st.CurrentRevision = st.UpdateRevision
	}
	return st
}

func statusEqual(a, b appsv1.StatefulSetStatus) bool {
	cc := func(p *int32) int32 {
		if p == nil {
			return -1
		}
		return *p
	}
	return a.ObservedGeneration == b.ObservedGeneration && a.Replicas == b.Replicas && a.ReadyReplicas == b.ReadyReplicas &&
		a.CurrentReplicas == b.CurrentReplicas && a.UpdatedReplicas == b.UpdatedReplicas && a.AvailableReplicas == b.AvailableReplicas &&
		a.CurrentRevision == b.CurrentRevision && a.UpdateRevision == b.UpdateRevision && cc(a.CollisionCount) == cc(b.CollisionCount)
}

func copyMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
