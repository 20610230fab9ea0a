package agent

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/skiffhq/skiff/nodeagent/runtime"
	corev1 "k8s.io/api/core/v1"
)

// Lifecycle hooks and graceful stops, as the kubelet: postStart runs right
// after a container started (a failure kills it, and restartPolicy
// decides what follows); preStop runs before the stop signal, inside the
// grace period; the stop signal (the image's STOPSIGNAL, else SIGTERM) is
// followed by SIGKILL when the rest of the grace period ran out.

// minStopGrace is what is left for the stop signal when preStop used the
// whole grace period (upstream's minimumGracePeriodInSeconds).
const minStopGrace = 2 * time.Second

// maxPostStart bounds a postStart hook (upstream has no bound; here a
// hook that never returns must not hold one of the agent's workers).
const maxPostStart = 2 * time.Minute

// errHookFailed marks a hook that ran and failed.
var errHookFailed = errors.New("lifecycle hook failed")

// runHook runs one lifecycle handler against the running container id.
func (a *Agent) runHook(ctx context.Context, pod *corev1.Pod, c *corev1.Container, h *corev1.LifecycleHandler, id, podIP string) error {
	switch {
	case h.Exec != nil:
		out := &limitedBuffer{max: maxProbeOutput}
		code, err := a.rt.Exec(ctx, id, h.Exec.Command, runtime.StreamIO{Stdout: out, Stderr: out})
		if err == nil && code != 0 {
			err = fmt.Errorf("command '%s' exited with %d: %s", strings.Join(h.Exec.Command, " "), code, out.String())
		}
		if err != nil {
			return fmt.Errorf("%w: Exec lifecycle hook (%v) for Container %q in Pod %q failed - error: %v, message: %q",
				errHookFailed, h.Exec.Command, c.Name, podRef(pod), err, out.String())
		}
		return nil
	case h.HTTPGet != nil:
		res, out := a.probes.doHTTPGet(ctx, h.HTTPGet, c, podIP, 10*time.Second)
		if res != probeSuccess {
			u, _ := httpGetURL(h.HTTPGet, c, podIP)
			return fmt.Errorf("%w: HTTP lifecycle hook (%s) for Container %q in Pod %q failed - error: %s",
				errHookFailed, u, c.Name, podRef(pod), out)
		}
		return nil
	case h.Sleep != nil:
		t := time.NewTimer(time.Duration(h.Sleep.Seconds) * time.Second)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
		}
		return nil
	case h.TCPSocket != nil:
		// Deprecated and never run by upstream kubelets: accepted, ignored.
		return nil
	}
	return fmt.Errorf("%w: lifecycle hook for Container %q has no handler", errHookFailed, c.Name)
}

// podRef is upstream's format.Pod: name_namespace(uid).
func podRef(pod *corev1.Pod) string {
	return fmt.Sprintf("%s_%s(%s)", pod.Name, pod.Namespace, pod.UID)
}

// postStart runs the container's postStart hook; on failure it records
// FailedPostStartHook and kills the container (restartPolicy then
// decides).
func (a *Agent) postStart(ctx context.Context, pod *corev1.Pod, c *corev1.Container, id, podIP string) {
	if c.Lifecycle == nil || c.Lifecycle.PostStart == nil {
		return
	}
	hctx, cancel := context.WithTimeout(ctx, maxPostStart)
	err := a.runHook(hctx, pod, c, c.Lifecycle.PostStart, id, podIP)
	cancel()
	if err == nil || ctx.Err() != nil {
		return
	}
	a.event(pod, corev1.EventTypeWarning, "FailedPostStartHook", "%s", strings.TrimPrefix(err.Error(), errHookFailed.Error()+": "))
	a.event(pod, corev1.EventTypeNormal, "Killing", "FailedPostStartHook")
	cur, gerr := a.rt.Get(ctx, id)
	if gerr != nil {
		return
	}
	if err := a.stopContainer(ctx, pod, c, cur, grace(&corev1.Pod{Spec: pod.Spec}), podIP); err != nil {
		a.log.Warn("kill container after postStart failure", "pod", pod.Namespace+"/"+pod.Name, "container", c.Name, "err", err)
	}
}

// stopContainer stops a running container gracefully: preStop (when the
// spec has one) within g, then the stop signal with what is left of g
// (at least minStopGrace after a preStop), then SIGKILL. spec may be nil
// (a container whose pod is gone).
func (a *Agent) stopContainer(ctx context.Context, pod *corev1.Pod, spec *corev1.Container, cur runtime.Container, g time.Duration, podIP string) error {
	if cur.State != runtime.StateRunning {
		return a.rt.Stop(ctx, cur.ID, g)
	}
	if pod != nil && spec != nil && spec.Lifecycle != nil && spec.Lifecycle.PreStop != nil && g > 0 {
		start := time.Now()
		hctx, cancel := context.WithTimeout(ctx, g)
		err := a.runHook(hctx, pod, spec, spec.Lifecycle.PreStop, cur.ID, podIP)
		timedOut := hctx.Err() != nil
		cancel()
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case timedOut:
			a.log.Info("preStop hook did not complete within the grace period", "pod", pod.Namespace+"/"+pod.Name, "container", spec.Name, "grace", g)
		case err != nil:
			a.event(pod, corev1.EventTypeWarning, "FailedPreStopHook", "%s", strings.TrimPrefix(err.Error(), errHookFailed.Error()+": "))
		}
		g = max(g-time.Since(start), minStopGrace)
	}
	return a.rt.Stop(ctx, cur.ID, g)
}

// specOf finds a container (or init container) of the pod by name.
func specOf(pod *corev1.Pod, name string) *corev1.Container {
	if pod == nil {
		return nil
	}
	for i := range pod.Spec.InitContainers {
		if pod.Spec.InitContainers[i].Name == name {
			return &pod.Spec.InitContainers[i]
		}
	}
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == name {
			return &pod.Spec.Containers[i]
		}
	}
	return nil
}

// watchGraceCut SIGKILLs the given containers of a terminating pod once a
// shortened grace period ran out (a second delete with a smaller
// gracePeriodSeconds moves deletionTimestamp earlier), or at once when the
// pod was deleted from the API meanwhile (forced). g is the grace period
// the termination started with. The returned func stops watching.
func (a *Agent) watchGraceCut(ctx context.Context, pod *corev1.Pod, g time.Duration, ids []string) (stop func()) {
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-wctx.Done():
				return
			case <-t.C:
			}
			cur := a.podByUID(pod.UID)
			switch {
			case cur == nil:
			case cur.DeletionTimestamp != nil && cur.DeletionGracePeriodSeconds != nil &&
				time.Duration(*cur.DeletionGracePeriodSeconds)*time.Second < g && !time.Now().Before(cur.DeletionTimestamp.Time):
			default:
				continue
			}
			a.log.Info("grace period cut short: killing containers", "pod", pod.Namespace+"/"+pod.Name)
			for _, id := range ids {
				_ = a.rt.Stop(wctx, id, 0)
			}
			return
		}
	}()
	return func() { cancel(); <-done }
}
