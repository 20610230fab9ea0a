package agent

import (
	"context"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Pod start traces: where the time from a pod's arrival to its
// containers running goes, logged at debug level as "pod start trace"
// by the sync that started containers. The fields are absolute times
// (RFC 3339 with nanoseconds) and durations in milliseconds:
//
//   - seen: the first informer event for the pod in this agent process;
//   - sync: the start of the sync that started the containers (the gap
//     after seen is the queue);
//   - sandbox_ms: network namespace and CNI ADD (0 if it existed);
//   - prepare_ms: volumes and the pod's files (hosts, resolv.conf);
//   - image_ms, create_ms, start_ms: summed over the containers started;
//   - status: when the status write returned (the pod is Running in
//     the API from then on, unless a later sync writes it).
//
// The pods benchmark reads them to split its slowest pods' latency
// between the API's delivery, the queue, the sync's steps and the watch.
// The kubelet keeps the same split as its pod start SLI metrics.

// syncTrace collects one sync's step durations.
type syncTrace struct {
	start                   time.Time
	sandbox, prepare, image time.Duration
	create, st              time.Duration
	started                 int // containers started
}

type syncTraceKey struct{}

func withSyncTrace(ctx context.Context, tr *syncTrace) context.Context {
	return context.WithValue(ctx, syncTraceKey{}, tr)
}

// traceOf is ctx's sync trace, or nil; a nil trace records nothing.
func traceOf(ctx context.Context) *syncTrace {
	tr, _ := ctx.Value(syncTraceKey{}).(*syncTrace)
	return tr
}

type traceStep int

const (
	stepSandbox traceStep = iota
	stepPrepare
	stepImage
	stepCreate
	stepStart
)

// add adds the time since t0 to step.
func (tr *syncTrace) add(step traceStep, t0 time.Time) {
	if tr == nil {
		return
	}
	d := time.Since(t0)
	switch step {
	case stepSandbox:
		tr.sandbox += d
	case stepPrepare:
		tr.prepare += d
	case stepImage:
		tr.image += d
	case stepCreate:
		tr.create += d
	case stepStart:
		tr.st += d
		tr.started++
	}
}

// podSeen remembers when this process first saw each pod (cleared when
// the pod's containers first run or it goes away).
type podSeen struct {
	mu sync.Mutex
	m  map[types.UID]time.Time
}

func (s *podSeen) note(uid types.UID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[types.UID]time.Time{}
	}
	if _, ok := s.m[uid]; !ok {
		s.m[uid] = time.Now()
	}
}

func (s *podSeen) take(uid types.UID) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.m[uid]
	delete(s.m, uid)
	return t, ok
}

// logStartTrace logs tr for pod if the sync started containers.
func (a *Agent) logStartTrace(ctx context.Context, pod *corev1.Pod, tr *syncTrace, statusDone time.Time) {
	if tr == nil || tr.started == 0 {
		return
	}
	const stamp = time.RFC3339Nano
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	attrs := []any{"pod", pod.Namespace + "/" + pod.Name, "uid", pod.UID, "containers", tr.started,
		"sync", tr.start.Format(stamp), "sandbox_ms", ms(tr.sandbox), "prepare_ms", ms(tr.prepare), "image_ms", ms(tr.image),
		"create_ms", ms(tr.create), "start_ms", ms(tr.st), "status", statusDone.Format(stamp)}
	if seen, ok := a.seen.take(pod.UID); ok {
		attrs = append(attrs, "seen", seen.Format(stamp))
	}
	a.log.Debug("pod start trace", attrs...)
}
