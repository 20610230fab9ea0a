package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	"github.com/skiffhq/skiff/internal/failpoint"
	"github.com/skiffhq/skiff/nodeagent/network"
	"github.com/skiffhq/skiff/nodeagent/runtime"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// sandbox is what the agent records about a pod's network, so that it can
// be torn down even after the pod is gone from the API.
type sandbox struct {
	UID       types.UID             `json:"uid"`
	Namespace string                `json:"namespace"`
	Name      string                `json:"name"`
	NetNS     string                `json:"netns"`
	IP        string                `json:"ip"`
	Ports     []network.PortMapping `json:"ports,omitempty"`
	Created   time.Time             `json:"created"`
}

func (a *Agent) podDir(uid types.UID) string { return filepath.Join(a.podsDir(), string(uid)) }

func (a *Agent) loadSandbox(uid types.UID) (*sandbox, error) {
	b, err := os.ReadFile(filepath.Join(a.podDir(uid), "sandbox.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read sandbox: %w", err)
	}
	var sb sandbox
	if err := json.Unmarshal(b, &sb); err != nil {
		return nil, fmt.Errorf("read sandbox: %w", err)
	}
	return &sb, nil
}

func (a *Agent) saveSandbox(sb *sandbox) error {
	b, err := json.Marshal(sb)
	if err != nil {
		return err
	}
	dir := a.podDir(sb.UID)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("save sandbox: %w", err)
	}
	tmp := filepath.Join(dir, ".sandbox.json")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("save sandbox: %w", err)
	}
	return os.Rename(tmp, filepath.Join(dir, "sandbox.json"))
}

// setupSandbox records the pod's network namespace before it creates it,
// and only then attaches it (CNI ADD: veth, address): an agent that dies
// anywhere in between finds the record without an IP when it starts
// again and releases what there is by the pod's UID (CNI DEL, the
// namespace if it was made) before trying anew, instead of leaking it.
func (a *Agent) setupSandbox(ctx context.Context, pod *corev1.Pod) (*sandbox, error) {
	ports := hostPorts(pod)
	nsPath, err := a.net.PlanNetNS(string(pod.UID))
	if err != nil {
		return nil, err
	}
	sb := &sandbox{UID: pod.UID, Namespace: pod.Namespace, Name: pod.Name, NetNS: nsPath, Ports: ports, Created: time.Now().UTC()}
	if err := a.saveSandbox(sb); err != nil {
		return nil, err
	}
	err = a.net.CreateNetNS(nsPath)
	if err == nil {
		err = failpoint.Inject("agent/after-netns-create", pod.Namespace+"/"+pod.Name)
	}
	if err != nil {
		// The record stays, without an IP: the next sync releases it.
		return nil, err
	}
	ip, err := a.net.Attach(ctx, string(pod.UID), nsPath, pod.Namespace, pod.Name, ports)
	if err == nil {
		err = failpoint.Inject("agent/after-network-attach", pod.Namespace+"/"+pod.Name)
	}
	if err != nil {
		// The record stays, without an IP: the next sync releases it.
		return nil, err
	}
	sb.IP = ip.String()
	if err := a.saveSandbox(sb); err != nil {
		return nil, err
	}
	return sb, nil
}

// containerID is deterministic: a retried create finds its container.
func containerID(uid types.UID, name string, restart int) string {
	h := sha256.Sum256([]byte(fmt.Sprintf("%s/%s/%d", uid, name, restart)))
	return hex.EncodeToString(h[:])
}

func (a *Agent) logPath(pod *corev1.Pod, name string, restart int) string {
	return filepath.Join(a.opts.PodLogDir, fmt.Sprintf("%s_%s_%s", pod.Namespace, pod.Name, pod.UID), name, strconv.Itoa(restart)+".log")
}

// podContainers groups a pod's containers by name, newest restart first.
func (a *Agent) podContainers(ctx context.Context, uid types.UID) (map[string][]runtime.Container, error) {
	all, err := a.rt.ListPod(ctx, string(uid))
	if err != nil {
		return nil, err
	}
	out := map[string][]runtime.Container{}
	for _, c := range all {
		if c.Labels[runtime.LabelPodUID] == string(uid) && a.ours(c) {
			n := c.Labels[runtime.LabelContainer]
			out[n] = append(out[n], c)
		}
	}
	for _, cs := range out {
		sort.Slice(cs, func(i, j int) bool { return cs[i].Restart() > cs[j].Restart() })
	}
	return out, nil
}

// ours reports whether this agent created c: another agent on the same
// containerd (tests, a hollow node beside a real one) has its own pods,
// which this one must not take for deleted ones. Containers from before
// the node label count as ours.
func (a *Agent) ours(c runtime.Container) bool { return a.oursByLabels(c.Labels) }

func (a *Agent) oursByLabels(l map[string]string) bool {
	n := l[runtime.LabelNode]
	return n == "" || n == a.opts.NodeName
}

// syncPod brings one pod to its desired state. It returns when to look
// again (0 = on the next event).
func (a *Agent) syncPod(ctx context.Context, uid types.UID) (time.Duration, error) {
	// The start trace is kept only when it can be logged (trace.go); a
	// nil trace records nothing.
	var tr *syncTrace
	if a.log.Enabled(ctx, slog.LevelDebug) {
		tr = &syncTrace{start: time.Now()}
		ctx = withSyncTrace(ctx, tr)
	}
	pod := a.podByUID(uid)
	ctrs, err := a.podContainers(ctx, uid)
	if err != nil {
		return 0, err
	}
	sb, err := a.loadSandbox(uid)
	if err != nil {
		return 0, err
	}
	if pod == nil || pod.DeletionTimestamp != nil || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		a.sources.track(uid, nil)
	} else {
		a.sources.track(uid, pod)
	}
	if pod == nil {
		a.seen.take(uid)
		if len(ctrs) == 0 && sb == nil {
			return 0, nil
		}
		a.probes.stopPod(uid)
		a.log.Info("tearing down a pod that no longer exists", "uid", uid)
		return 0, a.teardown(ctx, uid, ctrs, sb, 2*time.Second, nil)
	}
	if pod.DeletionTimestamp != nil {
		a.probes.stopPod(uid)
		return 0, a.terminate(ctx, pod, ctrs, sb)
	}
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		a.probes.stopPod(uid)
		// Terminal: nothing runs again; release the network.
		for _, cs := range ctrs {
			if len(cs) > 0 && cs[0].State == runtime.StateRunning {
				_ = a.rt.Stop(ctx, cs[0].ID, grace(pod))
			}
		}
		if sb != nil {
			if err := a.net.Teardown(ctx, string(uid), sb.NetNS, sb.Namespace, sb.Name, sb.Ports); err != nil {
				return 0, err
			}
			_ = os.Remove(filepath.Join(a.podDir(uid), "sandbox.json"))
		}
		return a.releaseVolumes(ctx, uid)
	}

	if sb == nil || sb.IP == "" || !exists(sb.NetNS) {
		// No sandbox, or one whose attachment never finished (the agent
		// died during it): release what there is, then build it anew.
		// A namespace that could not be removed keeps its record, and the
		// sync is retried (as the kubelet does not make a new sandbox
		// before the old one is stopped): a new record would forget it,
		// and nothing would remove it ever after. A failed CNI DEL alone
		// does not hold the pod back: the pod's own DEL at its deletion
		// releases every address of its UID.
		if sb != nil {
			if err := a.net.Teardown(ctx, string(uid), sb.NetNS, sb.Namespace, sb.Name, sb.Ports); err != nil {
				if sb.NetNS != "" && exists(sb.NetNS) {
					return 0, fmt.Errorf("release an unfinished sandbox: %w", err)
				}
				a.log.Warn("release an unfinished sandbox", "pod", pod.Namespace+"/"+pod.Name, "err", err)
			}
		}
		var err error
		t0 := time.Now()
		sb, err = a.setupSandbox(ctx, pod)
		tr.add(stepSandbox, t0)
		if err != nil {
			a.setWaiting(uid, "", "ContainerCreating", err.Error())
			a.event(pod, corev1.EventTypeWarning, "FailedCreatePodSandBox", "Failed to create pod sandbox: %v", err)
			return 0, a.updateStatus(ctx, pod, ctrs, nil)
		}
	}
	t0 := time.Now()
	mounts, err := a.preparePod(ctx, pod, sb)
	if err == nil {
		err = applyFSGroup(pod, mounts)
	}
	tr.add(stepPrepare, t0)
	if err != nil {
		a.event(pod, corev1.EventTypeWarning, "FailedMount", "%v", err)
		a.setWaiting(uid, "", "ContainerCreating", err.Error())
		_ = a.updateStatus(ctx, pod, ctrs, sb)
		return a.mountFailed(uid), nil
	}
	a.mountDone(uid)

	requeue := time.Duration(0)
	initDone := true
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			// Sidecar-style init containers are started like regular
			// ones once their predecessors ran; not gated further.
			after, err := a.ensureContainer(ctx, pod, c, true, ctrs[c.Name], mounts, sb, corev1.RestartPolicyAlways)
			if err != nil {
				return 0, err
			}
			requeue = minPositive(requeue, after)
			continue
		}
		cs := ctrs[c.Name]
		if len(cs) > 0 && cs[0].State == runtime.StateExited && cs[0].ExitCode == 0 {
			continue
		}
		initDone = false
		policy := pod.Spec.RestartPolicy
		if policy == corev1.RestartPolicyAlways {
			policy = corev1.RestartPolicyOnFailure
		}
		after, err := a.ensureContainer(ctx, pod, c, true, cs, mounts, sb, policy)
		if err != nil {
			return 0, err
		}
		requeue = minPositive(requeue, after)
		break
	}
	if initDone {
		for i := range pod.Spec.Containers {
			c := &pod.Spec.Containers[i]
			after, err := a.ensureContainer(ctx, pod, c, false, ctrs[c.Name], mounts, sb, pod.Spec.RestartPolicy)
			if err != nil {
				return 0, err
			}
			requeue = minPositive(requeue, after)
		}
	}
	if ctrs, err = a.podContainers(ctx, uid); err != nil {
		return 0, err
	}
	a.probes.syncPod(pod, ctrs, sb.IP)
	if err := a.updateStatus(ctx, pod, ctrs, sb); err != nil {
		return 0, err
	}
	a.logStartTrace(ctx, pod, tr, time.Now())
	return requeue, nil
}

func minPositive(a, b time.Duration) time.Duration {
	if a <= 0 {
		return b
	}
	if b <= 0 || a < b {
		return a
	}
	return b
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func grace(pod *corev1.Pod) time.Duration {
	if pod.DeletionGracePeriodSeconds != nil {
		return time.Duration(*pod.DeletionGracePeriodSeconds) * time.Second
	}
	if pod.Spec.TerminationGracePeriodSeconds != nil {
		return time.Duration(*pod.Spec.TerminationGracePeriodSeconds) * time.Second
	}
	return 30 * time.Second
}

func hostPorts(pod *corev1.Pod) []network.PortMapping {
	var out []network.PortMapping
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			if p.HostPort == 0 {
				continue
			}
			proto := string(p.Protocol)
			if proto == "" {
				proto = "TCP"
			}
			out = append(out, network.PortMapping{HostPort: p.HostPort, ContainerPort: p.ContainerPort, Protocol: lower(proto), HostIP: p.HostIP})
		}
	}
	return out
}

func lower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 32
		}
	}
	return string(b)
}

// mountBackoff is how long to wait before setting up the volumes of a
// pod whose setup failed n times in a row (n >= 1): 500 ms doubling up
// to 5 s. Upstream starts a failed volume operation's retries at 500 ms
// too (nestedpendingoperations); it lets them grow to 2m2s, but it also
// re-examines pods waiting for a claim every 100 ms, and the agent has
// no watch on claims, so its cap stays at the 5 s it retried at before.
// A reference the API denies for a moment (the node authorizer has not
// seen the pod yet) or a ConfigMap created just after its pod then costs
// half a second, not 5; a change to a watched ConfigMap or Secret
// requeues the pod at once anyway (sourcewatch.go).
func mountBackoff(n int) time.Duration {
	const limit = 5 * time.Second
	if n > 4 {
		return limit
	}
	return min(500*time.Millisecond<<max(n-1, 0), limit)
}

// mountFailed counts a failed volume setup of uid and returns when to
// try again.
func (a *Agent) mountFailed(uid types.UID) time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.mountN == nil {
		a.mountN = map[types.UID]int{}
	}
	a.mountN[uid]++
	return mountBackoff(a.mountN[uid])
}

// mountDone forgets uid's failed volume setups.
func (a *Agent) mountDone(uid types.UID) {
	a.mu.Lock()
	delete(a.mountN, uid)
	a.mu.Unlock()
}

// crashBackoff is how long to wait before restarting a container whose
// restart index is n and that exited: 0 for the first restart, then 10 s
// doubling up to 5 minutes (upstream's CrashLoopBackOff).
func crashBackoff(n int) time.Duration {
	if n <= 0 {
		return 0
	}
	d := 10 * time.Second
	for i := 1; i < n && d < 5*time.Minute; i++ {
		d *= 2
	}
	return min(d, 5*time.Minute)
}

// ensureContainer starts, keeps or restarts one container. cs is its
// containers, newest first.
func (a *Agent) ensureContainer(ctx context.Context, pod *corev1.Pod, c *corev1.Container, isInit bool, cs []runtime.Container, mounts map[string]string, sb *sandbox, policy corev1.RestartPolicy) (time.Duration, error) {
	restart := 0
	if len(cs) > 0 {
		cur := cs[0]
		switch cur.State {
		case runtime.StateRunning:
			a.clearWaiting(pod.UID, c.Name)
			return 0, nil
		case runtime.StateCreated:
			// A create that never started (agent died in between).
			if err := a.rt.Remove(ctx, cur.ID); err != nil {
				return 0, err
			}
			restart = cur.Restart()
			cs = cs[1:]
		default:
			if policy == corev1.RestartPolicyNever || (policy == corev1.RestartPolicyOnFailure && cur.ExitCode == 0) {
				return 0, nil
			}
			wait := crashBackoff(cur.Restart())
			if left := time.Until(cur.FinishedAt.Add(wait)); left > 0 {
				msg := fmt.Sprintf("back-off %s restarting failed container=%s pod=%s_%s(%s)", wait, c.Name, pod.Name, pod.Namespace, pod.UID)
				if a.setWaiting(pod.UID, c.Name, "CrashLoopBackOff", msg) {
					a.event(pod, corev1.EventTypeWarning, "BackOff", "Back-off restarting failed container %s in pod %s_%s(%s)", c.Name, pod.Name, pod.Namespace, pod.UID)
				}
				return left, nil
			}
			restart = cur.Restart() + 1
		}
	}
	// Keep the newest dead container (for lastState and --previous); older
	// ones go.
	for i, old := range cs {
		if i >= 1 {
			if err := a.rt.Remove(ctx, old.ID); err != nil {
				return 0, err
			}
			_ = os.Remove(a.logPath(pod, c.Name, old.Restart()))
		}
	}

	tr := traceOf(ctx)
	t0 := time.Now()
	img, after, err := a.ensureImage(ctx, pod, c)
	tr.add(stepImage, t0)
	if err != nil || after > 0 {
		return after, err
	}
	cfg, err := a.containerConfig(ctx, pod, c, isInit, restart, img, mounts, sb)
	if err == nil {
		err = a.applySecurity(ctx, pod, c, img, &cfg)
	}
	if err == nil {
		cfg.Labels[runtime.LabelNode] = a.opts.NodeName
	}
	if err != nil {
		a.setWaiting(pod.UID, c.Name, "CreateContainerConfigError", err.Error())
		a.event(pod, corev1.EventTypeWarning, "Failed", "Error: %v", err)
		return 10 * time.Second, nil
	}
	_ = os.Remove(cfg.Labels[runtime.LabelLogPath])
	t0 = time.Now()
	err = a.rt.Create(ctx, cfg)
	tr.add(stepCreate, t0)
	if err == nil {
		err = failpoint.Inject("agent/after-container-create", pod.Namespace+"/"+pod.Name+"/"+c.Name)
	}
	if err != nil {
		a.setWaiting(pod.UID, c.Name, "CreateContainerError", err.Error())
		a.event(pod, corev1.EventTypeWarning, "Failed", "Error: %v", err)
		return 10 * time.Second, nil
	}
	a.event(pod, corev1.EventTypeNormal, "Created", "Created container %s", c.Name)
	t0 = time.Now()
	if err := a.rt.Start(ctx, cfg.ID); err != nil {
		_ = a.rt.Remove(ctx, cfg.ID)
		a.setWaiting(pod.UID, c.Name, "RunContainerError", err.Error())
		a.event(pod, corev1.EventTypeWarning, "Failed", "Error: %v", err)
		return 10 * time.Second, nil
	}
	tr.add(stepStart, t0)
	a.clearWaiting(pod.UID, c.Name)
	a.event(pod, corev1.EventTypeNormal, "Started", "Started container %s", c.Name)
	a.postStart(ctx, pod, c, cfg.ID, sb.IP)
	return 0, nil
}

// ensureImage finds the container's image in the local store. Registry
// pulls are not done yet: an absent image gives ErrImagePull, then
// ImagePullBackOff with upstream's backoff.
func (a *Agent) ensureImage(ctx context.Context, pod *corev1.Pod, c *corev1.Container) (runtime.Image, time.Duration, error) {
	key := string(pod.UID) + "/" + c.Name
	ref, err := runtime.NormalizeRef(c.Image)
	if err != nil {
		a.setWaiting(pod.UID, c.Name, "InvalidImageName", fmt.Sprintf("Failed to apply default image tag %q: %v", c.Image, err))
		return runtime.Image{}, 30 * time.Second, nil
	}
	img, err := a.rt.GetImage(ctx, ref)
	if err == nil {
		a.mu.Lock()
		delete(a.backoff, key)
		delete(a.pullN, key)
		a.mu.Unlock()
		if a.setWaitingOnce(pod.UID, c.Name) {
			a.event(pod, corev1.EventTypeNormal, "Pulled", "Container image %q already present on machine", c.Image)
		}
		return img, 0, nil
	}
	if !errors.Is(err, runtime.ErrImageNotFound) {
		return runtime.Image{}, 0, err
	}
	if c.ImagePullPolicy == corev1.PullNever {
		msg := fmt.Sprintf("Container image %q is not present with pull policy of Never", c.Image)
		a.setWaiting(pod.UID, c.Name, "ErrImageNeverPull", msg)
		a.event(pod, corev1.EventTypeWarning, "ErrImageNeverPull", "%s", msg)
		return runtime.Image{}, 30 * time.Second, nil
	}
	a.mu.Lock()
	until, inBackoff := a.backoff[key]
	n := a.pullN[key]
	a.mu.Unlock()
	if inBackoff && time.Now().Before(until) {
		a.setWaiting(pod.UID, c.Name, "ImagePullBackOff", fmt.Sprintf("Back-off pulling image %q", c.Image))
		return runtime.Image{}, time.Until(until), nil
	}
	wait := crashBackoff(n + 1)
	a.mu.Lock()
	a.backoff[key] = time.Now().Add(wait)
	a.pullN[key] = n + 1
	a.mu.Unlock()
	msg := fmt.Sprintf("Failed to pull image %q: image %s is not in the node's image store and this agent does not pull from registries (import it with `skiff images import` or the airgap folder)", c.Image, ref)
	a.setWaiting(pod.UID, c.Name, "ErrImagePull", msg)
	a.event(pod, corev1.EventTypeWarning, "Failed", "%s", msg)
	return runtime.Image{}, wait, nil
}

// terminate stops a pod being deleted gracefully, then deletes it.
func (a *Agent) terminate(ctx context.Context, pod *corev1.Pod, ctrs map[string][]runtime.Container, sb *sandbox) error {
	g := grace(pod)
	var ids []string
	for name, cs := range ctrs {
		if len(cs) > 0 && cs[0].State == runtime.StateRunning {
			a.event(pod, corev1.EventTypeNormal, "Killing", "Stopping container %s", name)
			ids = append(ids, cs[0].ID)
		}
	}
	stopWatch := a.watchGraceCut(ctx, pod, g, ids)
	err := a.teardown(ctx, pod.UID, ctrs, sb, g, pod)
	stopWatch()
	if err != nil {
		return err
	}
	err = a.client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: new(int64),
		Preconditions:      &metav1.Preconditions{UID: &pod.UID},
	})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("delete pod: %w", err)
	}
	return nil
}

// teardown stops and removes a pod's containers, its network and its
// files. pod, when set, gets a final status first.
func (a *Agent) teardown(ctx context.Context, uid types.UID, ctrs map[string][]runtime.Container, sb *sandbox, g time.Duration, pod *corev1.Pod) error {
	podIP := ""
	if sb != nil {
		podIP = sb.IP
	}
	done := make(chan error, len(ctrs))
	for name, cs := range ctrs {
		go func(name string, cs []runtime.Container) {
			var err error
			if len(cs) > 0 {
				// preStop first (pod known), then the stop signal.
				err = a.stopContainer(ctx, pod, specOf(pod, name), cs[0], g, podIP)
			}
			done <- err
		}(name, cs)
	}
	for range ctrs {
		if err := <-done; err != nil {
			return err
		}
	}
	if pod != nil {
		if fresh, err := a.podContainers(ctx, uid); err == nil {
			_ = a.updateStatus(ctx, pod, fresh, sb)
		}
	}
	var logDir string
	for _, cs := range ctrs {
		for _, c := range cs {
			if logDir == "" && c.Labels[runtime.LabelLogPath] != "" {
				logDir = filepath.Dir(filepath.Dir(c.Labels[runtime.LabelLogPath]))
			}
			if err := a.rt.Remove(ctx, c.ID); err != nil {
				return err
			}
		}
	}
	if sb != nil {
		if err := a.net.Teardown(ctx, string(uid), sb.NetNS, sb.Namespace, sb.Name, sb.Ports); err != nil {
			return err
		}
	}
	if err := a.cleanPodDir(uid); err != nil {
		return err
	}
	if logDir != "" && filepath.Dir(logDir) == filepath.Clean(a.opts.PodLogDir) {
		_ = os.RemoveAll(logDir)
	}
	a.mu.Lock()
	delete(a.waiting, uid)
	delete(a.mountN, uid)
	a.mu.Unlock()
	return nil
}

func (a *Agent) setWaiting(uid types.UID, container, reason, msg string) (changed bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	m := a.waiting[uid]
	if m == nil {
		m = map[string]corev1.ContainerStateWaiting{}
		a.waiting[uid] = m
	}
	old, had := m[container]
	m[container] = corev1.ContainerStateWaiting{Reason: reason, Message: msg}
	return !had || old.Reason != reason
}

// setWaitingOnce reports true the first time a container's image is
// found for its current start (for the Pulled event).
func (a *Agent) setWaitingOnce(uid types.UID, container string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	m := a.waiting[uid]
	if m == nil {
		m = map[string]corev1.ContainerStateWaiting{}
		a.waiting[uid] = m
	}
	key := "\x00pulled/" + container
	if _, ok := m[key]; ok {
		return false
	}
	m[key] = corev1.ContainerStateWaiting{}
	return true
}

func (a *Agent) clearWaiting(uid types.UID, container string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.waiting[uid], container)
}

func (a *Agent) waitingFor(uid types.UID, container string) (corev1.ContainerStateWaiting, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	w, ok := a.waiting[uid][container]
	return w, ok
}

func (a *Agent) event(pod *corev1.Pod, typ, reason, format string, args ...any) {
	if a.rec != nil {
		a.rec.Eventf(pod, typ, reason, format, args...)
	}
}

// releaseVolumes tears down the volumes of a terminated pod (Succeeded or
// Failed: nothing in it runs again), as the kubelet does for terminated
// pods without waiting for their deletion: once every container has
// exited, memory-backed emptyDirs are unmounted (their memory freed),
// the pod's emptyDir and API-data folders (secrets, tokens) removed and
// its token renewal stopped. Until then it asks to be synced again. A
// pod's claims are the host's directories and are kept.
func (a *Agent) releaseVolumes(ctx context.Context, uid types.UID) (time.Duration, error) {
	ctrs, err := a.podContainers(ctx, uid)
	if err != nil {
		return 0, err
	}
	for _, cs := range ctrs {
		for _, c := range cs {
			if c.State == runtime.StateRunning {
				return time.Second, nil
			}
		}
	}
	dir := filepath.Join(a.podDir(uid), "volumes")
	if _, err := os.Lstat(dir); errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	a.forgetTokens(uid)
	if err := unmountTmpfsVolumes(filepath.Join(dir, "kubernetes.io~empty-dir")); err != nil {
		return 0, fmt.Errorf("release volumes of terminated pod: %w", err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return 0, fmt.Errorf("release volumes of terminated pod: %w", err)
	}
	a.log.Info("released the volumes of a terminated pod", "uid", uid)
	return 0, nil
}
