package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/skiffhq/skiff/controlplane/pki"
	"github.com/skiffhq/skiff/nodeagent/crilog"
	"github.com/skiffhq/skiff/nodeagent/runtime"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// apiServer is the agent's HTTPS API (the kubelet port).
type apiServer struct {
	srv  *http.Server
	ln   net.Listener
	port int
}

func (a *Agent) apiPort() int {
	if a.api == nil {
		return 0
	}
	return a.api.port
}

// APIAddress is where the agent's API listens ("" when disabled).
func (a *Agent) APIAddress() string {
	if a.api == nil {
		return ""
	}
	return a.api.ln.Addr().String()
}

func (a *Agent) startAPI() error {
	if a.opts.Port < 0 {
		return nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	switch cert := a.opts.ServingCert; {
	case cert != nil:
		tc.Certificates = []tls.Certificate{*cert}
	case a.opts.GetServingCertificate != nil:
		tc.GetCertificate = a.opts.GetServingCertificate
	default:
		c, err := pki.SelfSigned(a.opts.NodeName, []string{a.opts.NodeName}, []net.IP{net.ParseIP(a.opts.NodeIP)}, 365*24*time.Hour)
		if err != nil {
			return err
		}
		tc.Certificates = []tls.Certificate{c}
		a.log.Warn("agent API uses a self-signed certificate: the API server cannot verify it (pass a certificate from the cluster CA)")
	}
	if a.opts.ClientCAs != nil {
		// A certificate, when given, must be the cluster CA's; callers
		// without one may use a bearer token (see authz.go).
		tc.ClientCAs, tc.ClientAuth = a.opts.ClientCAs, tls.VerifyClientCertIfGiven
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(a.opts.NodeIP, strconv.Itoa(a.opts.Port)))
	if err != nil {
		return fmt.Errorf("agent API: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /containerLogs/{ns}/{pod}/{container}", a.serveLogs)
	mux.HandleFunc("GET /stats/summary", a.serveStatsSummary)
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.metricsRegistry(), promhttp.HandlerOpts{}))
	a.routeStreaming(mux)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	a.api = &apiServer{ln: ln, port: ln.Addr().(*net.TCPAddr).Port, srv: &http.Server{
		Handler: newAPIAuth(a.client, a.opts.NodeName).wrap(mux), TLSConfig: tc, ReadHeaderTimeout: 30 * time.Second,
	}}
	go func() {
		if err := a.api.srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("agent API stopped", "err", err)
		}
	}()
	return nil
}

func (s *apiServer) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = s.srv.Shutdown(ctx)
	_ = s.srv.Close()
}

func writeErr(w http.ResponseWriter, err *apierrors.StatusError) {
	st := err.Status()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(int(st.Code))
	_, _ = fmt.Fprintf(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","message":%q,"reason":%q,"code":%d}`, st.Message, st.Reason, st.Code)
}

// serveLogs is the kubelet's /containerLogs/<ns>/<pod>/<container>.
func (a *Agent) serveLogs(w http.ResponseWriter, r *http.Request) {
	ns, name, cname := r.PathValue("ns"), r.PathValue("pod"), r.PathValue("container")
	q := r.URL.Query()
	pod := a.podByName(ns, name)
	if pod == nil {
		writeErr(w, apierrors.NewNotFound(schema.GroupResource{Resource: "pods"}, name))
		return
	}
	known := false
	for _, c := range append(append([]corev1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...) {
		known = known || c.Name == cname
	}
	if !known {
		writeErr(w, apierrors.NewBadRequest(fmt.Sprintf("container %s is not valid for pod %s", cname, name)))
		return
	}
	opts := crilog.Options{TailLines: -1}
	parseInt := func(k string) (int64, bool) {
		v := q.Get(k)
		if v == "" {
			return 0, false
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			writeErr(w, apierrors.NewBadRequest(fmt.Sprintf("invalid %s %q", k, v)))
			return 0, true
		}
		return n, false
	}
	if n, b := parseInt("tailLines"); b {
		return
	} else if q.Get("tailLines") != "" {
		opts.TailLines = n
	}
	if n, b := parseInt("limitBytes"); b {
		return
	} else {
		opts.LimitBytes = n
	}
	if n, b := parseInt("sinceSeconds"); b {
		return
	} else if n > 0 {
		opts.Since = time.Now().Add(-time.Duration(n) * time.Second)
	}
	if v := q.Get("sinceTime"); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			writeErr(w, apierrors.NewBadRequest(fmt.Sprintf("invalid sinceTime %q", v)))
			return
		}
		opts.Since = t
	}
	opts.Timestamps = q.Get("timestamps") == "true" || q.Get("timestamps") == "1"
	follow := q.Get("follow") == "true" || q.Get("follow") == "1"
	previous := q.Get("previous") == "true" || q.Get("previous") == "1"

	ctrs, err := a.podContainers(r.Context(), pod.UID)
	if err != nil {
		writeErr(w, apierrors.NewInternalError(err))
		return
	}
	list := ctrs[cname]
	if previous {
		if len(list) < 2 {
			writeErr(w, apierrors.NewBadRequest(fmt.Sprintf("previous terminated container %q in pod %q not found", cname, name)))
			return
		}
		list = list[1:]
		follow = false
	}
	if len(list) == 0 {
		reason := "ContainerCreating"
		if wt, ok := a.waitingFor(pod.UID, cname); ok && wt.Reason != "" {
			reason = wt.Reason
		}
		writeErr(w, apierrors.NewBadRequest(fmt.Sprintf("container %q in pod %q is waiting to start: %s", cname, name, reason)))
		return
	}
	cur := list[0]
	opts.Follow = follow
	opts.Done = func() bool {
		c, err := a.rt.Get(context.Background(), cur.ID)
		return err != nil || c.State != runtime.StateRunning
	}
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	out := &flushWriter{w: w}
	if f, ok := w.(http.Flusher); ok {
		out.f = f
		f.Flush()
	}
	if err := crilog.Read(r.Context(), cur.Labels[runtime.LabelLogPath], out, opts); err != nil {
		a.log.Debug("serve logs", "pod", ns+"/"+name, "container", cname, "err", err)
	}
}

type flushWriter struct {
	w http.ResponseWriter
	f http.Flusher
}

func (f *flushWriter) Write(p []byte) (int, error) { return f.w.Write(p) }

// Flush pushes buffered output to the client (crilog calls it while
// following).
func (f *flushWriter) Flush() {
	if f.f != nil {
		f.f.Flush()
	}
}
