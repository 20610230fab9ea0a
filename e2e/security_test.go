package e2e

import (
	"bufio"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"sigs.k8s.io/yaml"
)

// listenSocket is one listening socket of a process.
type listenSocket struct {
	proto string // tcp or udp
	ip    net.IP
	port  int
}

func (s listenSocket) String() string {
	return fmt.Sprintf("%s %s", s.proto, net.JoinHostPort(s.ip.String(), strconv.Itoa(s.port)))
}

// listeningSockets lists the listening TCP sockets and bound, unconnected
// UDP sockets owned by pid: the socket inodes of /proc/<pid>/fd matched
// against /proc/net/{tcp,tcp6,udp,udp6}.
func listeningSockets(t *testing.T, pid int) []listenSocket {
	t.Helper()
	fdDir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(fdDir)
	if err != nil {
		t.Fatalf("read %s: %v", fdDir, err)
	}
	inodes := map[string]bool{}
	for _, e := range ents {
		link, err := os.Readlink(filepath.Join(fdDir, e.Name()))
		if err != nil {
			continue // closed meanwhile
		}
		if ino, ok := strings.CutPrefix(link, "socket:["); ok {
			inodes[strings.TrimSuffix(ino, "]")] = true
		}
	}
	var out []listenSocket
	for _, tab := range []struct {
		file, proto, state string
	}{
		{"tcp", "tcp", "0A"}, {"tcp6", "tcp", "0A"}, // LISTEN
		{"udp", "udp", "07"}, {"udp6", "udp", "07"}, // CLOSE: bound, not connected
	} {
		f, err := os.Open(fmt.Sprintf("/proc/%d/net/%s", pid, tab.file))
		if err != nil {
			if os.IsNotExist(err) {
				continue // no IPv6
			}
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Scan() // header
		for sc.Scan() {
			fs := strings.Fields(sc.Text())
			if len(fs) < 10 || fs[3] != tab.state || !inodes[fs[9]] {
				continue
			}
			ip, port, err := parseProcAddr(fs[1])
			if err != nil {
				t.Fatalf("%s: %q: %v", tab.file, fs[1], err)
			}
			out = append(out, listenSocket{proto: tab.proto, ip: ip, port: port})
		}
		f.Close()
	}
	return out
}

// parseProcAddr parses /proc/net's "0100007F:1F90" (IPv4 or IPv6 in host
// byte order per 32-bit word, port in hex).
func parseProcAddr(s string) (net.IP, int, error) {
	h, p, ok := strings.Cut(s, ":")
	if !ok {
		return nil, 0, fmt.Errorf("no port")
	}
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return nil, 0, err
	}
	raw, err := hex.DecodeString(h)
	if err != nil || (len(raw) != 4 && len(raw) != 16) {
		return nil, 0, fmt.Errorf("bad address %q", h)
	}
	ip := make(net.IP, len(raw))
	for i := 0; i < len(raw); i += 4 {
		ip[i], ip[i+1], ip[i+2], ip[i+3] = raw[i+3], raw[i+2], raw[i+1], raw[i]
	}
	return ip, int(port), nil
}

// TestListeningPortsAndAuthentication starts `skiff server` with every
// add-on on, enumerates every socket the process listens on, and checks
// that each one is known and refuses unauthenticated access where it
// should. Public-by-design listeners (ingress, DNS) are listed explicitly.
// It also plants a Secret value, uses it the ways a user would (env of a
// pod, read back with kubectl, a rejected write) and checks it never
// appears in the server's output.
func TestListeningPortsAndAuthentication(t *testing.T) {
	dashPort, dnsPort, ingHTTP, ingHTTPS := freePort(t), freePort(t), freePort(t), freePort(t)
	etcdClient, etcdPeer := freePort(t), freePort(t)
	dir := t.TempDir()
	c := startClusterIn(t, dir,
		"--dashboard-port", fmt.Sprint(dashPort),
		"--dns-port", fmt.Sprint(dnsPort), "--dns-upstream", "127.0.0.1:9", // upstream never queried; loopback anyway
		"--ingress-bind-address", "127.0.0.1",
		"--ingress-http-port", fmt.Sprint(ingHTTP), "--ingress-https-port", fmt.Sprint(ingHTTPS),
		"--etcd-client-port", fmt.Sprint(etcdClient), "--etcd-peer-port", fmt.Sprint(etcdPeer),
		"--controller-manager-metrics-bind-address", "127.0.0.1:"+fmt.Sprint(freePort(t)))
	apiPort := serverPort(t, c)
	cmMetrics := 0
	for i, a := range c.cmd.Args {
		if a == "--controller-manager-metrics-bind-address" {
			_, p, _ := net.SplitHostPort(c.cmd.Args[i+1])
			cmMetrics, _ = strconv.Atoi(p)
		}
	}

	// Plant a secret before enumerating, so every code path that touches
	// it has run by the time the log is searched.
	secret := "planted-" + randHex(t, 16)
	secretB64 := base64.StdEncoding.EncodeToString([]byte(secret))
	c.kIn(t, fmt.Sprintf(`apiVersion: v1
kind: Secret
metadata: {name: planted}
type: Opaque
stringData: {token: %s}
---
apiVersion: v1
kind: Pod
metadata: {name: uses-secret}
spec:
  containers:
  - name: c
    image: registry.local/none:1
    env:
    - name: TOKEN
      valueFrom: {secretKeyRef: {name: planted, key: token}}
`, secret), "apply", "-f", "-")
	if got := c.k(t, "get", "secret", "planted", "-o", "jsonpath={.data.token}"); got != secretB64 {
		t.Fatalf("secret read back as %q, want %q", got, secretB64)
	}
	// A write the server rejects still carries the value.
	if out, err := c.runIn(fmt.Sprintf("apiVersion: v1\nkind: Secret\nmetadata: {name: \"Bad_Name\"}\nstringData: {\"bad key!\": %s}\n", secret), nil, "apply", "-f", "-"); err == nil {
		t.Fatalf("invalid secret accepted: %s", out)
	}
	c.k(t, "get", "secrets", "-A", "-o", "yaml")

	type portKind struct {
		name   string
		public bool
	}
	known := map[string]portKind{
		fmt.Sprintf("tcp/%d", apiPort):    {"api", false},
		fmt.Sprintf("tcp/%d", dashPort):   {"dashboard", false},
		fmt.Sprintf("tcp/%d", dnsPort):    {"dns", true},
		fmt.Sprintf("udp/%d", dnsPort):    {"dns", true},
		fmt.Sprintf("tcp/%d", ingHTTP):    {"ingress-http", true},
		fmt.Sprintf("tcp/%d", ingHTTPS):   {"ingress-https", true},
		fmt.Sprintf("tcp/%d", etcdClient): {"etcd-client", false},
		fmt.Sprintf("tcp/%d", etcdPeer):   {"etcd-peer", false},
		fmt.Sprintf("tcp/%d", cmMetrics):  {"controller-manager-metrics", false},
	}
	seen := map[string]bool{}
	socks := listeningSockets(t, c.cmd.Process.Pid)
	for _, s := range socks {
		key := fmt.Sprintf("%s/%d", s.proto, s.port)
		k, ok := known[key]
		if !ok {
			t.Errorf("unknown listening socket %s", s)
			continue
		}
		seen[k.name] = true
		if strings.HasPrefix(k.name, "etcd") && !s.ip.IsLoopback() {
			t.Errorf("%s listens on %s: etcd must be loopback-only", k.name, s)
		}
	}
	for _, k := range known {
		if !seen[k.name] {
			t.Errorf("%s is not listening (sockets: %v)", k.name, socks)
		}
	}

	insecure := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	get := func(url string, hdr map[string]string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", url, nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := insecure.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
		return resp.StatusCode, string(b)
	}

	t.Run("api", func(t *testing.T) {
		base := fmt.Sprintf("https://127.0.0.1:%d", apiPort)
		for _, p := range []string{"/healthz", "/livez", "/readyz", "/version"} {
			if code, body := get(base+p, nil); code != 200 {
				t.Errorf("anonymous GET %s = %d %s, want 200 (public as upstream)", p, code, body)
			}
		}
		for _, p := range []string{"/", "/api", "/apis", "/api/v1/secrets", "/api/v1/namespaces/default/secrets/planted",
			"/apis/apps/v1/deployments", "/metrics", "/debug/pprof/", "/openapi/v2", "/openapi/v3",
			"/.well-known/openid-configuration", "/openid/v1/jwks", "/logs/", "/api/v1/nodes/x/proxy/",
			"/healthz/etcd", "/readyz/informer-sync", "/livez/ping"} {
			for _, hdr := range []map[string]string{nil, {"Authorization": "Bearer not-a-token"}, {"Impersonate-User": "system:admin"}} {
				if code, body := get(base+p, hdr); code != 401 {
					t.Errorf("GET %s with %v = %d, want 401: %.200s", p, hdr, code, body)
				}
			}
		}
	})
	t.Run("api-path-tricks", func(t *testing.T) {
		// Dot segments and encoded slashes must not carry a request past
		// authentication into another handler: never API data, and never a
		// 200 other than a public health path's "ok".
		base := fmt.Sprintf("https://127.0.0.1:%d", apiPort)
		for _, p := range []string{"/healthz/../api/v1/secrets", "/version/../api/v1/secrets", "/readyz/%2e%2e/api/v1/secrets",
			"/livez/..%2fapi/v1/secrets", "//api/v1/secrets", "/api/v1/namespaces/default/secrets/planted/../planted"} {
			code, body := get(base+p, nil)
			if strings.Contains(body, "SecretList") || strings.Contains(body, secretB64) || strings.Contains(body, `"kind":"Secret"`) {
				t.Errorf("anonymous GET %s = %d returned secret data: %.300s", p, code, body)
			}
			if code == 200 && strings.TrimSpace(body) != "ok" {
				t.Errorf("anonymous GET %s = 200 with %.300s", p, body)
			}
		}
	})
	t.Run("dashboard", func(t *testing.T) {
		base := fmt.Sprintf("https://127.0.0.1:%d", dashPort)
		for _, p := range []string{"/api/session", "/api/discovery", "/api/object?resource=secrets&version=v1&namespace=default&name=planted", "/api/logs", "/api/ws", "/api/rules"} {
			code, body := get(base+p, nil)
			if code != 401 {
				t.Errorf("GET %s without a session = %d, want 401: %.200s", p, code, body)
			}
			if strings.Contains(body, secret) || strings.Contains(body, secretB64) {
				t.Errorf("GET %s leaked the secret", p)
			}
		}
		code, _ := get(base+"/api/session", map[string]string{"Cookie": "skiff_session=forged"})
		if code != 401 {
			t.Errorf("forged session cookie = %d, want 401", code)
		}
	})
	t.Run("controller-manager-metrics", func(t *testing.T) {
		// Upstream serves it over HTTPS with delegated authn/authz; Skiff
		// keeps it off unless asked and binds where told (loopback here).
		for _, s := range socks {
			if s.port == cmMetrics && !s.ip.IsLoopback() {
				t.Errorf("controller manager metrics on %s, want the requested loopback address", s)
			}
		}
	})
	t.Run("etcd", func(t *testing.T) {
		for _, s := range socks {
			if (s.port == etcdClient || s.port == etcdPeer) && !s.ip.IsLoopback() {
				t.Errorf("etcd socket %s not on loopback", s)
			}
		}
		// Mutual TLS on both ports: plain HTTP gets no etcd answer, and a
		// TLS client without a certificate of etcd's CA fails the handshake.
		for _, port := range []int{etcdClient, etcdPeer} {
			if resp, err := insecure.Get(fmt.Sprintf("http://127.0.0.1:%d/version", port)); err == nil {
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					t.Errorf("etcd port %d answered plain HTTP: %s", port, body)
				}
			}
			if resp, err := insecure.Get(fmt.Sprintf("https://127.0.0.1:%d/version", port)); err == nil {
				resp.Body.Close()
				t.Errorf("etcd port %d answered a TLS client without a certificate: %d", port, resp.StatusCode)
			}
		}
	})
	t.Run("ingress-public", func(t *testing.T) {
		resp, err := insecure.Get(fmt.Sprintf("http://127.0.0.1:%d/", ingHTTP))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 404 {
			t.Errorf("ingress without rules = %d, want 404", resp.StatusCode)
		}
	})
	t.Run("dns-public", func(t *testing.T) {
		m := new(dns.Msg)
		m.SetQuestion("kubernetes.default.svc.cluster.local.", dns.TypeA)
		cl := &dns.Client{Net: "udp", Timeout: 5 * time.Second}
		var r *dns.Msg
		eventually(t, 30*time.Second, func() string {
			var err error
			r, _, err = cl.Exchange(m, fmt.Sprintf("127.0.0.1:%d", dnsPort))
			if err != nil {
				return err.Error()
			}
			if r.Rcode != dns.RcodeSuccess || len(r.Answer) == 0 {
				return fmt.Sprintf("rcode %d, %d answers", r.Rcode, len(r.Answer))
			}
			return ""
		})
	})

	// Stop the server so its output is complete, then search it.
	if err := c.stop(); err != nil {
		t.Logf("stop: %v", err)
	}
	logText := c.log.String()
	for _, v := range []string{secret, secretB64} {
		if strings.Contains(logText, v) {
			i := strings.Index(logText, v)
			t.Errorf("planted secret value %q appears in the server output: ...%s...", v, logText[max(0, i-300):min(len(logText), i+100)])
		}
	}
	if len(logText) == 0 {
		t.Error("server wrote no output at all; the secret check proves nothing")
	}
}

// TestPodSecurityAndSubPathValidation: a `restricted` PodSecurity
// namespace rejects a privileged pod through kubectl (and admits a
// compliant one), and volume subPaths that leave their volume are
// rejected by validation, as upstream.
func TestPodSecurityAndSubPathValidation(t *testing.T) {
	c := startCluster(t)
	c.k(t, "create", "namespace", "locked")
	c.k(t, "label", "namespace", "locked", "pod-security.kubernetes.io/enforce=restricted")

	privileged := `apiVersion: v1
kind: Pod
metadata: {name: priv, namespace: locked}
spec:
  containers:
  - name: c
    image: registry.local/none:1
    securityContext: {privileged: true}
`
	out, err := c.runIn(privileged, nil, "apply", "-f", "-")
	if err == nil || !strings.Contains(out, "violates PodSecurity") || !strings.Contains(out, "privileged") {
		t.Errorf("privileged pod in a restricted namespace: err=%v\n%s", err, out)
	}
	c.kFail(t, "get", "pod", "priv", "-n", "locked")
	// The same pod is fine where no level is enforced.
	c.kIn(t, strings.Replace(privileged, "namespace: locked", "namespace: default", 1), "apply", "-f", "-")

	compliant := `apiVersion: v1
kind: Pod
metadata: {name: ok, namespace: locked}
spec:
  securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}
  containers:
  - name: c
    image: registry.local/none:1
    securityContext:
      allowPrivilegeEscalation: false
      capabilities: {drop: [ALL]}
`
	c.kIn(t, compliant, "apply", "-f", "-")

	for _, tc := range []struct{ name, field, value, want string }{
		{"dotdot", "subPath", "../x", "must not contain '..'"},
		{"nested-dotdot", "subPath", "a/../../x", "must not contain '..'"},
		{"absolute", "subPath", "/etc", "must be a relative path"},
		{"expr-dotdot", "subPathExpr", "$(POD_NAME)/../..", "must not contain '..'"},
		{"expr-absolute", "subPathExpr", "/$(POD_NAME)", "must be a relative path"},
	} {
		t.Run("subpath-"+tc.name, func(t *testing.T) {
			pod := map[string]any{
				"apiVersion": "v1", "kind": "Pod",
				"metadata": map[string]any{"name": "sp-" + tc.name},
				"spec": map[string]any{
					"volumes": []any{map[string]any{"name": "v", "emptyDir": map[string]any{}}},
					"containers": []any{map[string]any{"name": "c", "image": "registry.local/none:1",
						"volumeMounts": []any{map[string]any{"name": "v", "mountPath": "/data", tc.field: tc.value}}}},
				},
			}
			b, _ := yaml.Marshal(pod)
			out, err := c.runIn(string(b), nil, "apply", "-f", "-")
			if err == nil || !strings.Contains(out, tc.want) || !strings.Contains(out, tc.field) {
				t.Errorf("%s %q: err=%v, want a rejection mentioning %q:\n%s", tc.field, tc.value, err, tc.want, out)
			}
		})
	}
	// A descending subPath is fine.
	c.kIn(t, `apiVersion: v1
kind: Pod
metadata: {name: sp-fine}
spec:
  volumes: [{name: v, emptyDir: {}}]
  containers:
  - name: c
    image: registry.local/none:1
    volumeMounts: [{name: v, mountPath: /data, subPath: a/b..c/d}]
`, "apply", "-f", "-")
}

func randHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// serverPort reads the API server's port from the admin kubeconfig.
func serverPort(t *testing.T, c *cluster) int {
	t.Helper()
	b, err := os.ReadFile(c.kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "server: "); ok {
			_, p, err := net.SplitHostPort(strings.TrimPrefix(v, "https://"))
			if err != nil {
				t.Fatal(err)
			}
			port, _ := strconv.Atoi(p)
			return port
		}
	}
	t.Fatal("no server in kubeconfig")
	return 0
}
