package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/skiffhq/skiff/controlplane/apiserver"
	"github.com/skiffhq/skiff/controlplane/apiserver/registry"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
)

// installStreamingProxy serves pods/exec, pods/attach, pods/portforward
// and nodes/proxy by proxying to the node agent with the server's
// kubelet-client certificate. Upgrades (WebSocket and SPDY) pass through
// unchanged: the agent speaks every protocol kubectl offers, so unlike
// kube-apiserver nothing is translated here (see docs/architecture.md).
func (s *Server) installStreamingProxy() error {
	rc, err := s.ComponentConfig(kubeletClientUser, []string{"system:masters"})
	if err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	clientCert, err := s.clientLeaf(kubeletClientUser, []string{"system:masters"})
	if err != nil {
		return err
	}
	// HTTP/1.1 only: upgrades do not exist in HTTP/2.
	tr := &http.Transport{
		TLSClientConfig:       &tls.Config{RootCAs: s.ca.Pool(), GetClientCertificate: clientCert.GetClientCertificate, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}},
		ResponseHeaderTimeout: 60 * time.Second,
		IdleConnTimeout:       90 * time.Second,
	}
	p := &streamProxy{s: s, cs: cs, tr: tr}
	for _, sub := range []string{"exec", "attach", "portforward"} {
		s.api.HandleSubresource("", "pods", sub, p.pod(sub))
	}
	s.api.HandleSubresource("", "nodes", "proxy", p.node)
	return nil
}

type streamProxy struct {
	s  *Server
	cs kubernetes.Interface
	tr http.RoundTripper
}

// pod proxies one of the pods' streaming subresources.
func (p *streamProxy) pod(sub string) apiserver.SubresourceHandler {
	return func(w http.ResponseWriter, r *http.Request, _ *registry.Resource, ns, name string) {
		gr := schema.GroupResource{Resource: "pods"}
		if r.Method != http.MethodGet && r.Method != http.MethodPost {
			writeAPIError(w, apierrors.NewMethodNotSupported(gr, r.Method))
			return
		}
		// A WebSocket upgrade arrives as GET; upstream also requires the
		// create verb for it (AuthorizePodWebsocketUpgradeCreatePermission).
		if r.Method == http.MethodGet {
			if err := p.authorizeCreate(r.Context()); err != nil {
				writeAPIError(w, err)
				return
			}
		}
		target, err := p.podTarget(r.Context(), sub, ns, name, r.URL.Query())
		if err != nil {
			writeAPIError(w, err)
			return
		}
		p.proxy(w, r, target, fmt.Sprintf("pod %s/%s", ns, name))
	}
}

func (p *streamProxy) authorizeCreate(ctx context.Context) error {
	info, ok := apiserver.RequestInfoFrom(ctx)
	if !ok || p.s.authz == nil {
		return nil
	}
	u, _ := apiserver.UserFrom(ctx)
	cp := *info
	cp.Verb = "create"
	allowed, reason, err := p.s.authz.chain.Authorize(ctx, u, &cp)
	if allowed {
		return nil
	}
	if err != nil {
		p.s.log.Warn("authorization error", "err", err)
	}
	user := "system:anonymous"
	if u != nil {
		user = u.Name
	}
	msg := fmt.Sprintf("User %q cannot create resource %q in API group %q in the namespace %q", user, cp.Resource+"/"+cp.Subresource, cp.APIGroup, cp.Namespace)
	if reason != "" {
		msg += ": " + reason
	}
	return apierrors.NewForbidden(schema.GroupResource{Resource: cp.Resource}, cp.Name, errors.New(msg))
}

// podTarget validates the request as kube-apiserver does and builds the
// agent URL with the kubelet's query parameters.
func (p *streamProxy) podTarget(ctx context.Context, sub, ns, name string, q url.Values) (*url.URL, error) {
	pod, err := p.cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, asAPIError(err)
	}
	out := url.Values{}
	var path string
	switch sub {
	case "portforward":
		for _, port := range q["ports"] {
			n, err := strconv.ParseUint(port, 10, 16)
			if err != nil || n == 0 {
				return nil, apierrors.NewBadRequest(fmt.Sprintf("invalid port %q", port))
			}
			out.Add(corev1.PortHeader, port)
		}
		path = "/portForward/" + ns + "/" + name
	default:
		if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("cannot %s into a container in a completed pod; current phase is %s", sub, pod.Status.Phase))
		}
		container := q.Get("container")
		if container == "" {
			if len(pod.Spec.Containers) != 1 {
				names := make([]string, 0, len(pod.Spec.Containers))
				for _, c := range pod.Spec.Containers {
					names = append(names, c.Name)
				}
				return nil, apierrors.NewBadRequest(fmt.Sprintf("a container name must be specified for pod %s, choose one of: %v", name, names))
			}
			container = pod.Spec.Containers[0].Name
		}
		known := false
		for _, list := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
			for _, c := range list {
				known = known || c.Name == container
			}
		}
		if !known {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("container %s is not valid for pod %s", container, name))
		}
		streams := 0
		for api, kubelet := range map[string]string{"stdin": corev1.ExecStdinParam, "stdout": corev1.ExecStdoutParam, "stderr": corev1.ExecStderrParam, "tty": corev1.ExecTTYParam} {
			if v, _ := strconv.ParseBool(q.Get(api)); v {
				out.Set(kubelet, "1")
				if api != "tty" {
					streams++
				}
			}
		}
		if streams == 0 {
			return nil, apierrors.NewBadRequest("you must specify at least 1 of stdin, stdout, stderr")
		}
		if sub == "exec" {
			if len(q["command"]) == 0 {
				return nil, apierrors.NewBadRequest("you must specify at least one command for the container")
			}
			for _, c := range q["command"] {
				out.Add(corev1.ExecCommandParam, c)
			}
		}
		path = "/" + sub + "/" + ns + "/" + name + "/" + container
	}
	if pod.Spec.NodeName == "" {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("pod %s does not have a host assigned", name))
	}
	host, err := p.agentHost(ctx, pod.Spec.NodeName, "")
	if err != nil {
		return nil, err
	}
	return &url.URL{Scheme: "https", Host: host, Path: path, RawQuery: out.Encode()}, nil
}

// node proxies nodes/<name>/proxy/<path> to the node agent.
func (p *streamProxy) node(w http.ResponseWriter, r *http.Request, _ *registry.Resource, _, name string) {
	nodeName, port := name, ""
	if i := strings.LastIndex(name, ":"); i > 0 {
		nodeName, port = name[:i], name[i+1:]
		if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
			writeAPIError(w, apierrors.NewBadRequest(fmt.Sprintf("invalid port in %q", name)))
			return
		}
	}
	host, err := p.agentHost(r.Context(), nodeName, port)
	if err != nil {
		writeAPIError(w, err)
		return
	}
	// The rest of the path goes on as the client escaped it, so an
	// escaped slash stays inside its segment (a container name of
	// "..%2F..%2Fetc" reaches the agent as one name, which it refuses).
	marker := "/nodes/" + name + "/proxy"
	escaped := r.URL.EscapedPath()
	i := strings.Index(escaped, marker)
	rest := "/"
	if i >= 0 && len(escaped) > i+len(marker) {
		rest = escaped[i+len(marker):]
	}
	path, err := url.PathUnescape(rest)
	if err != nil {
		writeAPIError(w, apierrors.NewBadRequest(fmt.Sprintf("invalid proxy path %q", rest)))
		return
	}
	target := &url.URL{Scheme: "https", Host: host, Path: path, RawPath: rest, RawQuery: r.URL.RawQuery}
	p.proxy(w, r, target, "node "+nodeName)
}

// agentHost is host:port of a node's agent API (port overrides the
// kubelet endpoint's).
func (p *streamProxy) agentHost(ctx context.Context, nodeName, port string) (string, error) {
	node, err := p.cs.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
	if err != nil {
		return "", asAPIError(err)
	}
	host := ""
	for _, t := range []corev1.NodeAddressType{corev1.NodeInternalIP, corev1.NodeExternalIP, corev1.NodeHostName} {
		for _, a := range node.Status.Addresses {
			if a.Type == t && host == "" {
				host = a.Address
			}
		}
	}
	if port == "" && node.Status.DaemonEndpoints.KubeletEndpoint.Port > 0 {
		port = strconv.Itoa(int(node.Status.DaemonEndpoints.KubeletEndpoint.Port))
	}
	if host == "" || port == "" {
		return "", apierrors.NewBadRequest(fmt.Sprintf("node %s has no address or kubelet port", nodeName))
	}
	return net.JoinHostPort(host, port), nil
}

// proxy forwards r to target; an upgrade (101) becomes a raw byte tunnel
// between the client and the agent.
func (p *streamProxy) proxy(w http.ResponseWriter, r *http.Request, target *url.URL, what string) {
	rp := &httputil.ReverseProxy{
		Transport:     p.tr,
		FlushInterval: -1,
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL = target
			pr.Out.Host = target.Host
			// The caller's credentials are for the API server, not the agent.
			pr.Out.Header.Del("Authorization")
			for k := range pr.Out.Header {
				if strings.HasPrefix(strings.ToLower(k), "impersonate-") {
					pr.Out.Header.Del(k)
				}
			}
		},
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			writeAPIError(w, apierrors.NewServiceUnavailable(fmt.Sprintf("the node agent of %s does not answer: %v", what, err)))
		},
	}
	rp.ServeHTTP(w, r)
}

func asAPIError(err error) error {
	var st apierrors.APIStatus
	if errors.As(err, &st) {
		return err
	}
	return apierrors.NewInternalError(err)
}
