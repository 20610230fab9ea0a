package failover

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// ServerName is the name every Skiff API server's certificate carries
// (with kubernetes.default.svc and the rest): the TLS name a client
// checks whichever server it reached.
const ServerName = "kubernetes"

// Configure makes rc dial through a new Balancer over rc.Host followed by
// servers (URLs or host:port). Unless rc names a TLS server name of its
// own, it checks ServerName, which every server's certificate holds. The
// health check is /readyz with rc's TLS credentials. The caller runs the
// Balancer (Run) with a learner from Learner.
func Configure(rc *rest.Config, servers []string, log *slog.Logger) (*Balancer, error) {
	all := make([]string, 0, 1+len(servers))
	for _, u := range append([]string{rc.Host}, servers...) {
		hp, err := HostPort(u)
		if err != nil {
			return nil, err
		}
		all = append(all, hp)
	}
	if rc.TLSClientConfig.ServerName == "" && !rc.TLSClientConfig.Insecure {
		rc.TLSClientConfig.ServerName = ServerName
	}
	var check CheckFunc
	if strings.HasPrefix(rc.Host, "https://") {
		tc, err := rest.TLSConfigFor(rc)
		if err != nil {
			return nil, fmt.Errorf("failover: TLS: %w", err)
		}
		if tc != nil {
			check = ReadyzCheck(tc)
		}
	}
	b, err := New(Options{Servers: all, Check: check, Logger: log})
	if err != nil {
		return nil, err
	}
	rc.Dial = b.DialContext
	return b, nil
}

// HostPort turns a server URL (https://host[:port]) or host:port into
// host:port, with the scheme's default port.
func HostPort(s string) (string, error) {
	if !strings.Contains(s, "://") {
		if _, _, err := net.SplitHostPort(s); err != nil {
			return "", fmt.Errorf("server %q: want https://host:port or host:port: %w", s, err)
		}
		return s, nil
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("server %q: %w", s, err)
	}
	if u.Hostname() == "" {
		return "", fmt.Errorf("server %q: no host", s)
	}
	defaultPort := map[string]string{"https": "443", "http": "80"}[u.Scheme]
	if defaultPort == "" {
		return "", fmt.Errorf("server %q: scheme %q: want https", s, u.Scheme)
	}
	port := u.Port()
	if port == "" {
		port = defaultPort
	}
	return net.JoinHostPort(u.Hostname(), port), nil
}

// Learner returns the servers the `default/kubernetes` Endpoints list:
// every address with every port of its subset.
func Learner(cs kubernetes.Interface) LearnFunc {
	return func(ctx context.Context) ([]string, error) {
		ep, err := cs.CoreV1().Endpoints(metav1.NamespaceDefault).Get(ctx, "kubernetes", metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		var out []string
		for _, ss := range ep.Subsets {
			for _, p := range ss.Ports {
				for _, a := range ss.Addresses {
					out = append(out, net.JoinHostPort(a.IP, strconv.Itoa(int(p.Port))))
				}
			}
		}
		return out, nil
	}
}
