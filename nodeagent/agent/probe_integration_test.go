package agent_test

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiffhq/skiff/internal/testimages"
	"github.com/skiffhq/skiff/nodeagent/runtime"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// execIn runs cmd in the pod's container through the agent's runtime
// (what kubectl exec reaches) and returns its output and exit code.
func (e *env) execIn(ns, pod, container string, cmd ...string) (string, int) {
	e.t.Helper()
	p, err := e.srv.Client.CoreV1().Pods(ns).Get(context.Background(), pod, metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	id := ""
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Name == container {
			id = strings.TrimPrefix(cs.ContainerID, "containerd://")
		}
	}
	if id == "" {
		e.t.Fatalf("container %s of %s has no ID: %+v", container, pod, p.Status)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out := &syncBuffer{}
	code, err := e.agent.Runtime().Exec(ctx, id, cmd, runtime.StreamIO{Stdout: out, Stderr: out})
	if err != nil {
		e.t.Fatalf("exec %v in %s/%s: %v", cmd, pod, container, err)
	}
	return out.String(), code
}

// syncBuffer is a buffer that stdout and stderr copy into at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func status(p *corev1.Pod, name string) corev1.ContainerStatus {
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Name == name {
			return cs
		}
	}
	return corev1.ContainerStatus{}
}

func podCond(p *corev1.Pod, t corev1.PodConditionType) corev1.ConditionStatus {
	for _, c := range p.Status.Conditions {
		if c.Type == t {
			return c.Status
		}
	}
	return ""
}

// waitEvent polls until an event of the pod has reason and a message
// containing msg.
func (e *env) waitEvent(pod, reason, msg string) {
	e.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var seen []string
	for time.Now().Before(deadline) {
		evs, err := e.srv.Client.CoreV1().Events("default").List(context.Background(), metav1.ListOptions{
			FieldSelector: fields.OneTermEqualSelector("involvedObject.name", pod).String(),
		})
		if err == nil {
			seen = seen[:0]
			for _, ev := range evs.Items {
				if ev.Reason == reason && strings.Contains(ev.Message, msg) {
					return
				}
				seen = append(seen, ev.Reason+": "+ev.Message)
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	e.t.Fatalf("no %s event with %q for pod %s; events: %q", reason, msg, pod, seen)
}

func (e *env) deletePodAndWait(name string) {
	e.t.Helper()
	ctx := context.Background()
	if err := e.srv.Client.CoreV1().Pods("default").Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		e.t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, err := e.srv.Client.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("pod %s not deleted: %v", name, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitNoProbeWorkers proves that probe workers end with their pods.
func (e *env) waitNoProbeWorkers() {
	e.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		tracked, running := e.agent.ProbeWorkers()
		if tracked == 0 && running == 0 {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("probe workers left after their pods went: %d tracked, %d running", tracked, running)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func execProbe(period, failures int32, cmd ...string) *corev1.Probe {
	return &corev1.Probe{
		ProbeHandler:  corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: cmd}},
		PeriodSeconds: period, FailureThreshold: failures, SuccessThreshold: 1, TimeoutSeconds: 5,
	}
}

func TestReadinessProbeGatesReadyAndEndpoints(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	if _, err := e.srv.Client.CoreV1().Services("default").Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "rp"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "rp"},
			Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.createPod(&corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "rp", Labels: map[string]string{"app": "rp"}},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			Containers: []corev1.Container{{
				Name: "c", Image: testimages.Busybox, Command: []string{"sleep", "3600"},
				ReadinessProbe: execProbe(1, 1, "test", "-f", "/tmp/ready"),
			}},
		},
	})
	// httpGet (by port name, with a header) and tcpSocket probes against the
	// Go test server; a readiness probe on a closed port keeps "closed"
	// unready.
	e.createPod(&corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			Containers: []corev1.Container{{
				Name: "web", Image: testimages.HTTPServer, ImagePullPolicy: corev1.PullNever,
				Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: testimages.HTTPServerPort}},
				ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
					Path: "/healthz", Port: intstr.FromString("http"), HTTPHeaders: []corev1.HTTPHeader{{Name: "X-Test", Value: "1"}},
				}}, PeriodSeconds: 1, FailureThreshold: 1, SuccessThreshold: 1, TimeoutSeconds: 2},
				// As upstream, the first probe runs as soon as the container
				// starts, before the server may listen: a threshold of 3
				// leaves it the time a loaded machine needs (CI saw a restart
				// at threshold 1), while a dead port still fails in 3 s.
				LivenessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{
					Port: intstr.FromInt32(testimages.HTTPServerPort),
				}}, PeriodSeconds: 1, FailureThreshold: 3, SuccessThreshold: 1, TimeoutSeconds: 2},
			}},
		},
	})
	e.createPod(&corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "closed"},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			Containers: []corev1.Container{{
				Name: "web", Image: testimages.HTTPServer, ImagePullPolicy: corev1.PullNever,
				ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
					Path: "/", Port: intstr.FromInt32(9999),
				}}, PeriodSeconds: 1, FailureThreshold: 1, SuccessThreshold: 1, TimeoutSeconds: 2},
			}},
		},
	})

	p := e.waitPod("default", "rp", "Running", running)
	if cs := status(p, "c"); cs.Ready || cs.Started == nil || !*cs.Started {
		t.Errorf("before the probe succeeded: ready=%v started=%v", cs.Ready, cs.Started)
	}
	if podCond(p, corev1.PodReady) != corev1.ConditionFalse || podCond(p, corev1.ContainersReady) != corev1.ConditionFalse {
		t.Errorf("conditions before ready: %+v", p.Status.Conditions)
	}
	ip := p.Status.PodIP
	waitEndpoints := func(what string, ready bool) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			ep, err := e.srv.Client.CoreV1().Endpoints("default").Get(ctx, "rp", metav1.GetOptions{})
			var addrs, notReady []string
			if err == nil {
				for _, s := range ep.Subsets {
					for _, a := range s.Addresses {
						addrs = append(addrs, a.IP)
					}
					for _, a := range s.NotReadyAddresses {
						notReady = append(notReady, a.IP)
					}
				}
			}
			if (ready && slices.Contains(addrs, ip) && !slices.Contains(notReady, ip)) ||
				(!ready && slices.Contains(notReady, ip) && !slices.Contains(addrs, ip)) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("endpoints never %s: addresses %v, notReady %v (err %v)", what, addrs, notReady, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	waitEndpoints("listed the unready pod as not ready", false)
	e.waitEvent("rp", "Unhealthy", "Readiness probe failed: ")

	if out, code := e.execIn("default", "rp", "c", "touch", "/tmp/ready"); code != 0 {
		t.Fatalf("touch: %d %s", code, out)
	}
	p = e.waitPod("default", "rp", "Ready", func(p *corev1.Pod) bool { return podCond(p, corev1.PodReady) == corev1.ConditionTrue })
	if !status(p, "c").Ready || podCond(p, corev1.ContainersReady) != corev1.ConditionTrue {
		t.Errorf("ready pod: %+v", p.Status)
	}
	waitEndpoints("listed the ready pod as ready", true)

	if out, code := e.execIn("default", "rp", "c", "rm", "/tmp/ready"); code != 0 {
		t.Fatalf("rm: %d %s", code, out)
	}
	e.waitPod("default", "rp", "unready again", func(p *corev1.Pod) bool {
		return podCond(p, corev1.PodReady) == corev1.ConditionFalse && !status(p, "c").Ready && status(p, "c").RestartCount == 0
	})
	waitEndpoints("took the pod out again", false)

	web := e.waitPod("default", "web", "Ready", func(p *corev1.Pod) bool { return podCond(p, corev1.PodReady) == corev1.ConditionTrue })
	if cs := status(web, "web"); cs.RestartCount != 0 {
		t.Errorf("web restarted: %+v", cs)
	}
	e.waitEvent("closed", "Unhealthy", "Readiness probe failed: Get \"http://")
	closed := e.waitPod("default", "closed", "Running", running)
	if podCond(closed, corev1.PodReady) != corev1.ConditionFalse || status(closed, "web").Ready {
		t.Errorf("pod probed on a closed port is ready: %+v", closed.Status)
	}

	for _, n := range []string{"rp", "web", "closed"} {
		e.deletePodAndWait(n)
	}
	e.waitNoProbeWorkers()
}

func TestLivenessAndStartupProbes(t *testing.T) {
	e := setup(t)
	// "sick" is healthy for 2 seconds, then its liveness probe fails.
	e.createPod(&corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "sick"},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](30),
			Containers: []corev1.Container{{
				Name: "c", Image: testimages.Busybox,
				Command: []string{"sh", "-c", "touch /tmp/healthy; sleep 2; rm /tmp/healthy; sleep 3600"},
				LivenessProbe: func() *corev1.Probe {
					p := execProbe(1, 2, "cat", "/tmp/healthy")
					// The probe's own grace period wins over the pod's
					// 30 s (sh as PID 1 ignores SIGTERM: SIGKILL after 1 s).
					p.TerminationGracePeriodSeconds = ptr.To[int64](1)
					return p
				}(),
			}},
		},
	})
	// "slow" starts in 5 seconds; its liveness probe would fail before
	// that, but the startup probe holds it back.
	e.createPod(&corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "slow"},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			Containers: []corev1.Container{{
				Name: "c", Image: testimages.Busybox,
				Command:       []string{"sh", "-c", "sleep 5; touch /tmp/started; sleep 3600"},
				StartupProbe:  execProbe(1, 30, "test", "-f", "/tmp/started"),
				LivenessProbe: execProbe(1, 1, "test", "-f", "/tmp/started"),
			}},
		},
	})

	slow := e.waitPod("default", "slow", "Running", running)
	if cs := status(slow, "c"); cs.Started == nil || *cs.Started || cs.Ready {
		t.Errorf("slow before its startup probe succeeded: started=%v ready=%v", cs.Started, cs.Ready)
	}

	sick := e.waitPod("default", "sick", "restarted after liveness failures", func(p *corev1.Pod) bool {
		return status(p, "c").RestartCount >= 1
	})
	if lt := status(sick, "c").LastTerminationState.Terminated; lt == nil || lt.ExitCode != 137 {
		t.Errorf("lastState after the liveness kill: %+v (want SIGKILL's 137)", status(sick, "c").LastTerminationState)
	}
	e.waitEvent("sick", "Unhealthy", "Liveness probe failed: cat: can't open '/tmp/healthy'")
	e.waitEvent("sick", "Killing", "Container c failed liveness probe, will be restarted")

	slow = e.waitPod("default", "slow", "started and ready", func(p *corev1.Pod) bool {
		cs := status(p, "c")
		return cs.Started != nil && *cs.Started && cs.Ready
	})
	if cs := status(slow, "c"); cs.RestartCount != 0 {
		t.Errorf("liveness probe ran before the startup probe succeeded: %+v", cs)
	}

	e.deletePodAndWait("sick")
	e.deletePodAndWait("slow")
	e.waitNoProbeWorkers()
}
