package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/containerd/containerd/v2/pkg/netns"
	cnins "github.com/containernetworking/plugins/pkg/ns"
	"github.com/skiffhq/skiff/nodeagent/runtime"
	"github.com/skiffhq/skiff/nodeagent/streaming"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
)

// routeStreaming adds the kubelet's streaming endpoints (with and without
// the pod UID segment, as upstream).
func (a *Agent) routeStreaming(mux *http.ServeMux) {
	for _, m := range []string{"GET", "POST"} {
		mux.HandleFunc(m+" /exec/{ns}/{pod}/{container}", a.serveExec)
		mux.HandleFunc(m+" /exec/{ns}/{pod}/{uid}/{container}", a.serveExec)
		mux.HandleFunc(m+" /attach/{ns}/{pod}/{container}", a.serveAttach)
		mux.HandleFunc(m+" /attach/{ns}/{pod}/{uid}/{container}", a.serveAttach)
		mux.HandleFunc(m+" /portForward/{ns}/{pod}", a.servePortForward)
		mux.HandleFunc(m+" /portForward/{ns}/{pod}/{uid}", a.servePortForward)
	}
}

func (a *Agent) streamingConfig() streaming.Config {
	return streaming.Config{Logger: a.log}
}

// streamPod finds the pod of a streaming request (404 when this agent does
// not run it, or runs another pod of that name than the UID asks for).
func (a *Agent) streamPod(w http.ResponseWriter, r *http.Request) *corev1.Pod {
	ns, name := r.PathValue("ns"), r.PathValue("pod")
	pod := a.podByName(ns, name)
	if pod == nil || (r.PathValue("uid") != "" && types.UID(r.PathValue("uid")) != pod.UID) {
		writeErr(w, apierrors.NewNotFound(schema.GroupResource{Resource: "pods"}, name))
		return nil
	}
	return pod
}

// runningContainer finds the running container cname of pod, or answers
// the request with an error.
func (a *Agent) runningContainer(w http.ResponseWriter, r *http.Request, pod *corev1.Pod) (string, bool) {
	cname := r.PathValue("container")
	known := false
	for _, c := range append(append([]corev1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...) {
		known = known || c.Name == cname
	}
	if !known {
		writeErr(w, apierrors.NewBadRequest(fmt.Sprintf("container %s is not valid for pod %s", cname, pod.Name)))
		return "", false
	}
	ctrs, err := a.podContainers(r.Context(), pod.UID)
	if err != nil {
		writeErr(w, apierrors.NewInternalError(err))
		return "", false
	}
	if list := ctrs[cname]; len(list) > 0 && list[0].State == runtime.StateRunning {
		return list[0].ID, true
	}
	writeErr(w, apierrors.NewBadRequest(fmt.Sprintf("container %s is not running in pod %s", cname, pod.Name)))
	return "", false
}

func toRuntimeIO(s streaming.Streams) runtime.StreamIO {
	sio := runtime.StreamIO{Stdin: s.Stdin, Stdout: s.Stdout, Stderr: s.Stderr, TTY: s.TTY}
	if s.Resize != nil {
		ch := make(chan runtime.TerminalSize, 1)
		go func() {
			defer close(ch)
			for sz := range s.Resize {
				ch <- runtime.TerminalSize{Width: sz.Width, Height: sz.Height}
			}
		}()
		sio.Resize = ch
	}
	return sio
}

// serveExec is the kubelet's /exec: the command runs in the container
// through containerd and its exit code is the session's result.
func (a *Agent) serveExec(w http.ResponseWriter, r *http.Request) {
	pod := a.streamPod(w, r)
	if pod == nil {
		return
	}
	opts, err := streaming.ParseOptions(r)
	if err == nil && len(opts.Command) == 0 {
		err = errors.New("you must specify at least one command for the container")
	}
	if err != nil {
		writeErr(w, apierrors.NewBadRequest(err.Error()))
		return
	}
	id, ok := a.runningContainer(w, r, pod)
	if !ok {
		return
	}
	a.log.Debug("exec", "pod", pod.Namespace+"/"+pod.Name, "container", r.PathValue("container"), "tty", opts.TTY)
	streaming.ServeRemoteCommand(w, r, opts, a.streamingConfig(), func(ctx context.Context, s streaming.Streams) error {
		code, err := a.rt.Exec(ctx, id, opts.Command, toRuntimeIO(s))
		if err != nil {
			return err
		}
		if code != 0 {
			return streaming.ExitError{Code: code}
		}
		return nil
	})
}

// serveAttach is the kubelet's /attach: the client joins the main
// process's stdio until the container exits or the client leaves.
func (a *Agent) serveAttach(w http.ResponseWriter, r *http.Request) {
	pod := a.streamPod(w, r)
	if pod == nil {
		return
	}
	opts, err := streaming.ParseOptions(r)
	if err != nil {
		writeErr(w, apierrors.NewBadRequest(err.Error()))
		return
	}
	id, ok := a.runningContainer(w, r, pod)
	if !ok {
		return
	}
	streaming.ServeRemoteCommand(w, r, opts, a.streamingConfig(), func(ctx context.Context, s streaming.Streams) error {
		return a.rt.Attach(ctx, id, toRuntimeIO(s))
	})
}

// servePortForward is the kubelet's /portForward: connections are dialed
// to localhost:<port> inside the pod's network namespace, so ports bound to
// the pod's loopback are reachable too, as upstream.
func (a *Agent) servePortForward(w http.ResponseWriter, r *http.Request) {
	pod := a.streamPod(w, r)
	if pod == nil {
		return
	}
	sb, err := a.loadSandbox(pod.UID)
	if err != nil || sb == nil || sb.NetNS == "" {
		writeErr(w, apierrors.NewBadRequest(fmt.Sprintf("pod %s has no network namespace yet", pod.Name)))
		return
	}
	nsPath := sb.NetNS
	target := pod.Name + "_" + pod.Namespace
	streaming.ServePortForward(w, r, target, a.streamingConfig(), func(ctx context.Context, port uint16) (net.Conn, error) {
		return dialInNetNS(ctx, nsPath, port)
	})
}

// dialInNetNS connects to localhost:port inside the network namespace at
// path (the socket keeps its namespace after the thread leaves it).
func dialInNetNS(ctx context.Context, path string, port uint16) (net.Conn, error) {
	var conn net.Conn
	err := netns.LoadNetNS(path).Do(func(cnins.NetNS) error {
		d := net.Dialer{Timeout: 10 * time.Second}
		var err error
		conn, err = d.DialContext(ctx, "tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port))))
		if err != nil {
			conn, err = d.DialContext(ctx, "tcp6", net.JoinHostPort("::1", strconv.Itoa(int(port))))
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("dial port %d in pod network namespace: %w", port, err)
	}
	return conn, nil
}
