package server

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/skiffhq/skiff/controlplane/apiserver/registry"
	"github.com/skiffhq/skiff/nodeagent/agent"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
)

// kubeletClientUser is the identity the API server presents to node
// agents when it proxies pods/log (upstream: --kubelet-client-certificate).
const kubeletClientUser = "kube-apiserver-kubelet-client"

// startNodeAgent serves pods/log by proxying to node agents and, unless
// --disable-agent, runs this machine's node agent in-process.
func (s *Server) startNodeAgent(ctx context.Context) {
	if err := s.installPodLogProxy(); err != nil {
		s.log.Error("pods/log proxy not available", "err", err)
	}
	if err := s.installStreamingProxy(); err != nil {
		s.log.Error("pods/exec, attach, portforward and nodes/proxy not available", "err", err)
	}
	if s.cfg.DisableAgent {
		// No pod bridge here: pods reach this server's DNS add-on at
		// the server's own address (their node's guard lets DNATed
		// traffic out, masqueraded), unless that is loopback, which no
		// other node reaches.
		if ip := net.ParseIP(s.kubernetesEndpointAddress()); ip != nil && !ip.IsLoopback() {
			s.serveClusterDNS(ip.String())
		}
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		a, err := s.StartAgent(ctx, agent.Options{ProxyMode: s.cfg.ProxyMode, PodPidsLimit: s.cfg.PodMaxPids})
		if err != nil {
			s.log.Error("node agent did not start (use --disable-agent to run without one)", "err", err)
			return
		}
		<-ctx.Done()
		a.Stop()
	}()
}

// StartAgent starts a node agent in this process with the identity
// system:node:<name> (group system:nodes) and an API certificate from the
// cluster CA. Unset options get the server's: state in <data-dir>/agent,
// the cluster CIDR, and the bind address as node IP when it is specific.
func (s *Server) StartAgent(ctx context.Context, opts agent.Options) (*agent.Agent, error) {
	if opts.NodeName == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("hostname: %w", err)
		}
		opts.NodeName = strings.ToLower(h)
	}
	if opts.StateDir == "" {
		opts.StateDir = filepath.Join(s.cfg.DataDir, "agent")
	}
	if opts.ClusterCIDR == "" {
		opts.ClusterCIDR = s.cfg.ClusterCIDR
	}
	if opts.ServiceCIDR == "" {
		opts.ServiceCIDR = s.cfg.ServiceCIDR
	}
	if opts.PodCIDR == "" && opts.PodCIDRWait == 0 && s.nodeIPAMEnabled() {
		opts.PodCIDRWait = 30 * time.Second
	}
	if opts.ClusterDNS == "" {
		opts.ClusterDNS = s.cfg.ClusterDNS
	}
	if opts.NodeIP == "" {
		if ip := net.ParseIP(s.cfg.BindAddress); ip != nil && !ip.IsUnspecified() {
			opts.NodeIP = ip.String()
		}
	}
	if opts.Logger == nil {
		opts.Logger = s.cfg.Logger
	}
	if opts.ServingCert == nil {
		ips := []net.IP{net.ParseIP("127.0.0.1")}
		if ip := net.ParseIP(opts.NodeIP); ip != nil {
			ips = append(ips, ip)
		}
		certPEM, keyPEM, err := s.ca.Issue("system:node:"+opts.NodeName, []string{"system:nodes"}, []string{opts.NodeName, "localhost"}, ips, true, 365*24*time.Hour)
		if err != nil {
			return nil, fmt.Errorf("agent serving certificate: %w", err)
		}
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, fmt.Errorf("agent serving certificate: %w", err)
		}
		opts.ServingCert = &cert
	}
	if opts.ClientCAs == nil {
		opts.ClientCAs = s.ca.Pool()
	}
	rc, err := s.ComponentConfig("system:node:"+opts.NodeName, []string{"system:nodes"})
	if err != nil {
		return nil, fmt.Errorf("agent identity: %w", err)
	}
	a, err := agent.Start(ctx, rc, opts)
	if err != nil {
		return nil, err
	}
	s.publishClusterDNS(a)
	return a, nil
}

// clusterDNSIP is the tenth address of the service range (10.43.0.10 by
// default), where the DNS add-on's service lives.
func clusterDNSIP(serviceCIDR string) string {
	_, n, err := net.ParseCIDR(serviceCIDR)
	if err != nil || n.IP.To4() == nil {
		return agent.DefaultClusterDNS
	}
	ip := n.IP.To4()
	return net.IPv4(ip[0], ip[1], ip[2], ip[3]+10).String()
}

// installPodLogProxy serves GET pods/log by asking the pod's node agent
// (the kubelet API's /containerLogs) with the server's kubelet-client
// certificate; authorization of pods/log happened before.
func (s *Server) installPodLogProxy() error {
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
	pool := s.ca.Pool()
	tr := &http.Transport{
		TLSClientConfig:       &tls.Config{RootCAs: pool, GetClientCertificate: clientCert.GetClientCertificate, MinVersion: tls.VersionTLS12},
		ResponseHeaderTimeout: 30 * time.Second,
		IdleConnTimeout:       90 * time.Second,
	}
	insecure := &http.Transport{
		TLSClientConfig:       &tls.Config{InsecureSkipVerify: true, GetClientCertificate: clientCert.GetClientCertificate, MinVersion: tls.VersionTLS12}, //nolint:gosec // only when the client asks (insecureSkipTLSVerifyBackend)
		ResponseHeaderTimeout: 30 * time.Second,
	}
	s.api.HandleSubresource("", "pods", "log", func(w http.ResponseWriter, r *http.Request, _ *registry.Resource, ns, name string) {
		if r.Method != http.MethodGet {
			writeAPIError(w, apierrors.NewMethodNotSupported(schema.GroupResource{Resource: "pods"}, r.Method))
			return
		}
		target, err := podLogURL(r.Context(), cs, ns, name, r.URL.Query())
		if err != nil {
			writeAPIError(w, err)
			return
		}
		t := tr
		if q := r.URL.Query().Get("insecureSkipTLSVerifyBackend"); q == "true" {
			t = insecure
		}
		req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, target, nil)
		if err != nil {
			writeAPIError(w, apierrors.NewInternalError(err))
			return
		}
		resp, err := t.RoundTrip(req)
		if err != nil {
			writeAPIError(w, apierrors.NewServiceUnavailable(fmt.Sprintf("the node agent of pod %s/%s does not answer: %v", ns, name, err)))
			return
		}
		defer resp.Body.Close()
		for _, h := range []string{"Content-Type", "Cache-Control"} {
			if v := resp.Header.Get(h); v != "" {
				w.Header().Set(h, v)
			}
		}
		w.WriteHeader(resp.StatusCode)
		fl, _ := w.(http.Flusher)
		buf := make([]byte, 32*1024)
		for {
			n, rerr := resp.Body.Read(buf)
			if n > 0 {
				if _, werr := w.Write(buf[:n]); werr != nil {
					return
				}
				if fl != nil {
					fl.Flush()
				}
			}
			if rerr != nil {
				return
			}
		}
	})
	return nil
}

// podLogURL validates the request as upstream does and finds the agent.
func podLogURL(ctx context.Context, cs kubernetes.Interface, ns, name string, q url.Values) (string, error) {
	pod, err := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		var st apierrors.APIStatus
		if errors.As(err, &st) {
			return "", err
		}
		return "", apierrors.NewInternalError(err)
	}
	container := q.Get("container")
	if container == "" {
		switch {
		case len(pod.Spec.Containers) == 1:
			container = pod.Spec.Containers[0].Name
		default:
			names := make([]string, 0, len(pod.Spec.Containers))
			for _, c := range pod.Spec.Containers {
				names = append(names, c.Name)
			}
			return "", apierrors.NewBadRequest(fmt.Sprintf("a container name must be specified for pod %s, choose one of: %v", name, names))
		}
	}
	known := false
	for _, list := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range list {
			known = known || c.Name == container
		}
	}
	for _, c := range pod.Spec.EphemeralContainers {
		known = known || c.Name == container
	}
	if !known {
		return "", apierrors.NewBadRequest(fmt.Sprintf("container %s is not valid for pod %s", container, name))
	}
	for _, k := range []string{"tailLines", "limitBytes", "sinceSeconds"} {
		if v := q.Get(k); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || (n < 0) || (n == 0 && k != "tailLines") {
				return "", apierrors.NewBadRequest(fmt.Sprintf("invalid %s: %q must be greater than 0", k, v))
			}
		}
	}
	if pod.Spec.NodeName == "" {
		return "", apierrors.NewBadRequest(fmt.Sprintf("pod %s does not have a host assigned", name))
	}
	node, err := cs.CoreV1().Nodes().Get(ctx, pod.Spec.NodeName, metav1.GetOptions{})
	if err != nil {
		return "", apierrors.NewBadRequest(fmt.Sprintf("node %s of pod %s: %v", pod.Spec.NodeName, name, err))
	}
	host := ""
	for _, t := range []corev1.NodeAddressType{corev1.NodeInternalIP, corev1.NodeExternalIP, corev1.NodeHostName} {
		for _, a := range node.Status.Addresses {
			if a.Type == t && host == "" {
				host = a.Address
			}
		}
	}
	port := node.Status.DaemonEndpoints.KubeletEndpoint.Port
	if host == "" || port == 0 {
		return "", apierrors.NewBadRequest(fmt.Sprintf("node %s has no address or kubelet port", node.Name))
	}
	out := url.Values{}
	for _, k := range []string{"follow", "previous", "timestamps", "tailLines", "limitBytes", "sinceSeconds", "sinceTime"} {
		if v := q.Get(k); v != "" {
			out.Set(k, v)
		}
	}
	u := url.URL{Scheme: "https", Host: net.JoinHostPort(host, strconv.Itoa(int(port))),
		Path: "/containerLogs/" + ns + "/" + name + "/" + container, RawQuery: out.Encode()}
	return u.String(), nil
}

func writeAPIError(w http.ResponseWriter, err error) {
	var st apierrors.APIStatus
	status := metav1.Status{Status: metav1.StatusFailure, Code: http.StatusInternalServerError, Message: err.Error()}
	if errors.As(err, &st) {
		status = st.Status()
	}
	status.Kind, status.APIVersion = "Status", "v1"
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(int(status.Code))
	_ = json.NewEncoder(w).Encode(status)
}
