package agent

import (
	"context"
	"fmt"
	"time"

	"github.com/skiffhq/skiff/nodeagent/runtime"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// updateStatus writes the pod's status from what runs (pods/status).
func (a *Agent) updateStatus(ctx context.Context, pod *corev1.Pod, ctrs map[string][]runtime.Container, sb *sandbox) error {
	st := pod.Status.DeepCopy()
	if st.StartTime == nil {
		now := metav1.Now()
		st.StartTime = &now
	}
	st.HostIP = a.opts.NodeIP
	st.HostIPs = []corev1.HostIP{{IP: a.opts.NodeIP}}
	if sb != nil && sb.IP != "" {
		st.PodIP = sb.IP
		st.PodIPs = []corev1.PodIP{{IP: sb.IP}}
	}
	st.InitContainerStatuses = a.containerStatuses(pod, pod.Spec.InitContainers, ctrs, st.InitContainerStatuses)
	st.ContainerStatuses = a.containerStatuses(pod, pod.Spec.Containers, ctrs, st.ContainerStatuses)
	st.Phase = podPhase(pod, st)
	initialized := true
	for _, s := range st.InitContainerStatuses {
		if s.State.Terminated == nil || s.State.Terminated.ExitCode != 0 {
			if s.State.Running == nil || s.Started == nil || !*s.Started {
				initialized = false
			}
		}
	}
	ready := len(st.ContainerStatuses) > 0
	for _, s := range st.ContainerStatuses {
		ready = ready && s.Ready
	}
	boolCond := func(b bool) corev1.ConditionStatus {
		if b {
			return corev1.ConditionTrue
		}
		return corev1.ConditionFalse
	}
	setCond(st, corev1.PodReadyToStartContainers, boolCond(sb != nil && exists(sb.NetNS)), "")
	initReason := ""
	if !initialized {
		initReason = "ContainersNotInitialized"
	}
	setCond(st, corev1.PodInitialized, boolCond(initialized), initReason)
	notReady := ""
	if !ready {
		notReady = "ContainersNotReady"
	}
	if st.Phase == corev1.PodSucceeded {
		notReady = "PodCompleted"
	}
	setCond(st, corev1.ContainersReady, boolCond(ready), notReady)
	podReady, podNotReady := ready, notReady
	if ready && !readinessGatesMet(pod, st) {
		// Readiness gates: conditions other components set.
		podReady, podNotReady = false, "ReadinessGatesNotReady"
	}
	setCond(st, corev1.PodReady, boolCond(podReady), podNotReady)
	if statusUnchanged(st, &pod.Status) {
		return nil
	}
	cp := pod.DeepCopy()
	cp.Status = *st
	_, err := a.client.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, cp, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("update pod status: %w", err)
	}
	return nil
}

// statusUnchanged reports whether st, as computed, is what the API
// already stores as old. The API keeps times to the second (RFC 3339)
// and containerd reports them to the nanosecond, so st's times are
// truncated first (in place), as the kubelet's status manager does;
// otherwise every sync of a running pod wrote its status again.
func statusUnchanged(st, old *corev1.PodStatus) bool {
	sec := func(t *metav1.Time) {
		if t != nil && !t.IsZero() {
			*t = t.Rfc3339Copy()
		}
	}
	state := func(s *corev1.ContainerState) {
		if s.Running != nil {
			sec(&s.Running.StartedAt)
		}
		if s.Terminated != nil {
			sec(&s.Terminated.StartedAt)
			sec(&s.Terminated.FinishedAt)
		}
	}
	sec(st.StartTime)
	for i := range st.Conditions {
		sec(&st.Conditions[i].LastProbeTime)
		sec(&st.Conditions[i].LastTransitionTime)
	}
	for _, list := range [][]corev1.ContainerStatus{st.InitContainerStatuses, st.ContainerStatuses, st.EphemeralContainerStatuses} {
		for i := range list {
			state(&list[i].State)
			state(&list[i].LastTerminationState)
		}
	}
	return equality.Semantic.DeepEqual(st, old)
}

func setCond(st *corev1.PodStatus, t corev1.PodConditionType, s corev1.ConditionStatus, reason string) {
	for i := range st.Conditions {
		c := &st.Conditions[i]
		if c.Type == t {
			if c.Status != s {
				c.Status, c.LastTransitionTime = s, metav1.Now()
			}
			c.Reason = reason
			return
		}
	}
	st.Conditions = append(st.Conditions, corev1.PodCondition{Type: t, Status: s, Reason: reason, LastTransitionTime: metav1.Now()})
}

func (a *Agent) containerStatuses(pod *corev1.Pod, spec []corev1.Container, ctrs map[string][]runtime.Container, old []corev1.ContainerStatus) []corev1.ContainerStatus {
	if len(spec) == 0 {
		return nil
	}
	out := make([]corev1.ContainerStatus, 0, len(spec))
	for _, c := range spec {
		cs := corev1.ContainerStatus{Name: c.Name, Image: c.Image, Started: new(bool)}
		for _, o := range old {
			if o.Name == c.Name && o.ImageID != "" {
				cs.ImageID = o.ImageID
			}
		}
		list := ctrs[c.Name]
		if ref, err := runtime.NormalizeRef(c.Image); err == nil {
			if img, err := a.rt.GetImage(context.Background(), ref); err == nil {
				cs.ImageID = img.ID
			}
		}
		if len(list) > 0 {
			cur := list[0]
			cs.RestartCount = int32(cur.Restart())
			cs.ContainerID = "containerd://" + cur.ID
			cs.State = containerState(cur)
			if cur.State == runtime.StateRunning {
				started, ready := a.probes.containerReadiness(pod.UID, &c, cur.ID)
				cs.Started, cs.Ready = &started, ready
			}
			if len(list) > 1 {
				cs.LastTerminationState = containerState(list[1])
			}
			if w, ok := a.waitingFor(pod.UID, c.Name); ok && cur.State != runtime.StateRunning {
				if cs.State.Terminated != nil && cs.LastTerminationState.Terminated == nil {
					// Waiting to restart: upstream shows the dead
					// container as lastState.
					cs.LastTerminationState = cs.State
				} else if cs.State.Terminated != nil {
					cs.LastTerminationState = cs.State
				}
				cs.State = corev1.ContainerState{Waiting: &w}
			}
		} else {
			w, ok := a.waitingFor(pod.UID, c.Name)
			if !ok || w.Reason == "" {
				w = corev1.ContainerStateWaiting{Reason: "ContainerCreating"}
				if pw, ok := a.waitingFor(pod.UID, ""); ok {
					w = pw
				}
			}
			if isInitOf(pod, c.Name) == false && !initsDone(pod, ctrs) {
				w = corev1.ContainerStateWaiting{Reason: "PodInitializing"}
			}
			cs.State = corev1.ContainerState{Waiting: &w}
		}
		out = append(out, cs)
	}
	return out
}

// readinessGatesMet reports whether every readiness gate's condition is
// True.
func readinessGatesMet(pod *corev1.Pod, st *corev1.PodStatus) bool {
	for _, g := range pod.Spec.ReadinessGates {
		ok := false
		for _, c := range st.Conditions {
			ok = ok || (c.Type == g.ConditionType && c.Status == corev1.ConditionTrue)
		}
		if !ok {
			return false
		}
	}
	return true
}

func isInitOf(pod *corev1.Pod, name string) bool {
	for _, c := range pod.Spec.InitContainers {
		if c.Name == name {
			return true
		}
	}
	return false
}

func initsDone(pod *corev1.Pod, ctrs map[string][]runtime.Container) bool {
	for _, c := range pod.Spec.InitContainers {
		cs := ctrs[c.Name]
		if len(cs) == 0 || cs[0].State != runtime.StateExited || cs[0].ExitCode != 0 {
			if !(c.RestartPolicy != nil && len(cs) > 0 && cs[0].State == runtime.StateRunning) {
				return false
			}
		}
	}
	return true
}

func containerState(c runtime.Container) corev1.ContainerState {
	switch c.State {
	case runtime.StateRunning:
		return corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(c.StartedAt)}}
	case runtime.StateExited, runtime.StateUnknown:
		reason := "Completed"
		if c.ExitCode != 0 {
			reason = "Error"
		}
		if c.OOMKilled {
			reason = "OOMKilled"
		}
		fin := c.FinishedAt
		if fin.IsZero() {
			fin = time.Now()
		}
		return corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
			ExitCode: c.ExitCode, Reason: reason, StartedAt: metav1.NewTime(c.StartedAt),
			FinishedAt: metav1.NewTime(fin), ContainerID: "containerd://" + c.ID,
		}}
	}
	return corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}
}

// podPhase follows the kubelet's rules.
func podPhase(pod *corev1.Pod, st *corev1.PodStatus) corev1.PodPhase {
	for _, s := range st.InitContainerStatuses {
		if s.State.Terminated != nil && s.State.Terminated.ExitCode != 0 && pod.Spec.RestartPolicy == corev1.RestartPolicyNever {
			return corev1.PodFailed
		}
		done := s.State.Terminated != nil && s.State.Terminated.ExitCode == 0
		sidecar := s.Started != nil && *s.Started
		if !done && !sidecar {
			return corev1.PodPending
		}
	}
	var running, waiting, stopped, succeeded int
	for _, s := range st.ContainerStatuses {
		switch {
		case s.State.Running != nil:
			running++
		case s.State.Terminated != nil:
			stopped++
			if s.State.Terminated.ExitCode == 0 {
				succeeded++
			}
		case s.State.Waiting != nil:
			if s.LastTerminationState.Terminated != nil {
				stopped++
			} else {
				waiting++
			}
		}
	}
	switch {
	case waiting > 0:
		return corev1.PodPending
	case running > 0:
		return corev1.PodRunning
	case stopped == len(st.ContainerStatuses) && stopped > 0:
		switch pod.Spec.RestartPolicy {
		case corev1.RestartPolicyAlways:
			return corev1.PodRunning
		case corev1.RestartPolicyOnFailure:
			if succeeded == stopped {
				return corev1.PodSucceeded
			}
			return corev1.PodRunning
		default:
			if succeeded == stopped {
				return corev1.PodSucceeded
			}
			return corev1.PodFailed
		}
	}
	return corev1.PodPending
}
