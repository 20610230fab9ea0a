package backend

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
)

// Merged workload logs (issue #9): GET /api/workloadlogs?group=&version=
// &resource=&namespace=&name=[&container=][&tailLines=N][&timestamps=1]
// streams, as NDJSON, the logs of every pod the workload's selector picks
// (like `kubectl logs -f deploy/x --all-pods` or stern), following pods
// that appear later. All of it runs as the user: the workload is read,
// the pods listed and watched, and each container's log followed with
// the user's own credentials.
//
//	{"pod":"web-1","container":"app","line":"..."}
//	{"event":"start","pod":"web-1","container":"app"}
//	{"event":"end","pod":"web-1","container":"app","message":"..."}
//
// A container's log is followed from its start when it started after
// the request (new pods, restarts), else from its last tailLines lines
// (default 100). At most maxLogStreams containers are followed at once.

// workloadKinds are the kinds whose pods can be merged, with the field
// holding their selector.
var workloadKinds = map[schema.GroupResource]bool{
	{Group: "apps", Resource: "deployments"}:  true,
	{Group: "apps", Resource: "statefulsets"}: true,
	{Group: "apps", Resource: "daemonsets"}:   true,
	{Group: "apps", Resource: "replicasets"}:  true,
	{Group: "batch", Resource: "jobs"}:        true,
}

const (
	maxLogStreams = 64
	maxLogLine    = 64 << 10
)

type logLine struct {
	Event     string `json:"event,omitempty"`
	Pod       string `json:"pod"`
	Container string `json:"container"`
	Line      string `json:"line,omitempty"`
	Message   string `json:"message,omitempty"`
}

// workloadSelector reads the workload as the user and returns its pods'
// selector.
func workloadSelector(obj *unstructured.Unstructured) (labels.Selector, error) {
	m, found, err := unstructured.NestedMap(obj.Object, "spec", "selector")
	if err != nil || !found {
		return nil, fmt.Errorf("%s %s has no spec.selector", obj.GetKind(), obj.GetName())
	}
	var ls metav1.LabelSelector
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(m, &ls); err != nil {
		return nil, fmt.Errorf("spec.selector: %w", err)
	}
	sel, err := metav1.LabelSelectorAsSelector(&ls)
	if err != nil {
		return nil, fmt.Errorf("spec.selector: %w", err)
	}
	if sel.Empty() {
		return nil, errors.New("spec.selector selects every pod; refusing to merge them")
	}
	return sel, nil
}

func (s *Server) workloadLogs(w http.ResponseWriter, r *http.Request) {
	sess := sessionFrom(r.Context())
	gvr, ns, name, err := objectRef(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if !workloadKinds[gvr.GroupResource()] {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("merged logs are for Deployments, StatefulSets, DaemonSets, ReplicaSets and Jobs, not %s", gvr.Resource))
		return
	}
	if ns == "" {
		writeError(w, http.StatusBadRequest, "namespace is required")
		return
	}
	q := r.URL.Query()
	tail := int64(100)
	if v := q.Get("tailLines"); v != "" {
		if tail, err = strconv.ParseInt(v, 10, 64); err != nil || tail < 0 {
			writeError(w, http.StatusBadRequest, "tailLines: want a number >= 0")
			return
		}
	}
	container, timestamps := q.Get("container"), q.Get("timestamps") == "1"
	t, ok := s.targetFor(w, r)
	if !ok {
		return
	}
	obj, err := resourceClient(t.dynamic, gvr, ns).Get(r.Context(), name, metav1.GetOptions{})
	if err != nil {
		writeAPIError(w, err)
		return
	}
	sel, err := workloadSelector(obj)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	// A first list as the user gives a clear refusal before streaming
	// (the informer below would only retry).
	if _, err := t.client.CoreV1().Pods(ns).List(r.Context(), metav1.ListOptions{LabelSelector: sel.String(), Limit: 1}); err != nil {
		writeAPIError(w, err)
		return
	}
	s.log.Info("dashboard workload logs", "user", sess.user, "cluster", t.cluster, "resource", gvr.Resource, "namespace", ns, "name", name)

	// The stream ends with the session (logout, revocation, expiry).
	ctx, cancel := sess.stream(r.Context())
	defer cancel()
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	_ = rc.Flush()

	out := make(chan logLine, 256)
	m := &logMerger{ctx: ctx, t: t, ns: ns, container: container, timestamps: timestamps, tail: tail,
		since: time.Now(), out: out, streams: map[string]context.CancelFunc{}}
	factory := informers.NewSharedInformerFactoryWithOptions(t.client, 0, informers.WithNamespace(ns),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = sel.String() }))
	inf := factory.Core().V1().Pods().Informer()
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { m.pod(o) },
		UpdateFunc: func(_, o any) { m.pod(o) },
		DeleteFunc: func(o any) {
			if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
				o = d.Obj
			}
			if p, ok := o.(*corev1.Pod); ok {
				m.podGone(p)
			}
		},
	})
	factory.Start(ctx.Done())
	defer func() {
		cancel()
		factory.Shutdown()
		m.wg.Wait()
	}()

	enc := json.NewEncoder(w)
	flush := time.NewTicker(100 * time.Millisecond)
	defer flush.Stop()
	dirty := false
	for {
		select {
		case <-ctx.Done():
			if e := sessionEndOf(ctx); e != nil {
				_ = enc.Encode(logLine{Event: "revoked", Message: e.Error()})
				_ = rc.Flush()
			}
			return
		case l := <-out:
			if err := enc.Encode(l); err != nil {
				return
			}
			dirty = true
			if len(out) == 0 {
				if err := rc.Flush(); err != nil {
					return
				}
				dirty = false
			}
		case <-flush.C:
			if dirty {
				if err := rc.Flush(); err != nil {
					return
				}
				dirty = false
			}
		}
	}
}

// logMerger follows the containers of the pods a workload selects.
type logMerger struct {
	ctx        context.Context
	t          *target
	ns         string
	container  string
	timestamps bool
	tail       int64
	since      time.Time
	out        chan logLine
	wg         sync.WaitGroup

	mu sync.Mutex
	// streams are the followed containers by pod uid/container/containerID
	// (a restarted container is a new stream); done ones stay with nil
	// so they are not followed again.
	streams map[string]context.CancelFunc
	active  int
}

func (m *logMerger) send(l logLine) {
	select {
	case m.out <- l:
	case <-m.ctx.Done():
	}
}

func (m *logMerger) pod(o any) {
	p, ok := o.(*corev1.Pod)
	if !ok {
		return
	}
	for _, cs := range p.Status.ContainerStatuses {
		if m.container != "" && cs.Name != m.container {
			continue
		}
		var started time.Time
		switch {
		case cs.State.Running != nil:
			started = cs.State.Running.StartedAt.Time
		case cs.State.Terminated != nil:
			started = cs.State.Terminated.StartedAt.Time
		default:
			continue
		}
		if cs.ContainerID == "" {
			continue
		}
		key := string(p.UID) + "/" + cs.Name + "/" + cs.ContainerID
		m.mu.Lock()
		if _, seen := m.streams[key]; seen {
			m.mu.Unlock()
			continue
		}
		if m.active >= maxLogStreams {
			m.mu.Unlock()
			m.send(logLine{Event: "end", Pod: p.Name, Container: cs.Name, Message: fmt.Sprintf("not followed: at most %d containers at once", maxLogStreams)})
			continue
		}
		ctx, cancel := context.WithCancel(m.ctx)
		m.streams[key] = cancel
		m.active++
		m.mu.Unlock()
		opts := &corev1.PodLogOptions{Container: cs.Name, Follow: true, Timestamps: m.timestamps}
		if started.Before(m.since) {
			tail := m.tail
			opts.TailLines = &tail
		}
		m.wg.Add(1)
		go m.follow(ctx, key, p.Name, opts)
	}
}

func (m *logMerger) podGone(p *corev1.Pod) {
	m.mu.Lock()
	defer m.mu.Unlock()
	prefix := string(p.UID) + "/"
	for k, cancel := range m.streams {
		if len(k) > len(prefix) && k[:len(prefix)] == prefix && cancel != nil {
			cancel()
		}
	}
}

func (m *logMerger) follow(ctx context.Context, key, pod string, opts *corev1.PodLogOptions) {
	defer m.wg.Done()
	defer func() {
		m.mu.Lock()
		if c := m.streams[key]; c != nil {
			c()
		}
		m.streams[key] = nil
		m.active--
		m.mu.Unlock()
	}()
	m.send(logLine{Event: "start", Pod: pod, Container: opts.Container})
	stream, err := m.t.client.CoreV1().Pods(m.ns).GetLogs(pod, opts).Stream(ctx)
	if err != nil {
		if ctx.Err() == nil {
			m.send(logLine{Event: "end", Pod: pod, Container: opts.Container, Message: err.Error()})
		}
		return
	}
	defer stream.Close()
	br := bufio.NewReaderSize(stream, 32<<10)
	for {
		line, err := readLine(br)
		if line != "" || err == nil {
			m.send(logLine{Pod: pod, Container: opts.Container, Line: line})
		}
		if err != nil {
			msg := "log ended"
			if !errors.Is(err, io.EOF) && ctx.Err() == nil {
				msg = err.Error()
			}
			if m.ctx.Err() == nil {
				m.send(logLine{Event: "end", Pod: pod, Container: opts.Container, Message: msg})
			}
			return
		}
	}
}

// readLine reads one line without its newline, cut at maxLogLine bytes
// (the rest of a longer line is dropped).
func readLine(br *bufio.Reader) (string, error) {
	var buf []byte
	for {
		frag, isPrefix, err := br.ReadLine()
		if len(buf) < maxLogLine {
			buf = append(buf, frag[:min(len(frag), maxLogLine-len(buf))]...)
		}
		if err != nil {
			return string(buf), err
		}
		if !isPrefix {
			return string(buf), nil
		}
	}
}
