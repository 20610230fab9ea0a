package integration_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const (
	nginx = "nginx.ingress.kubernetes.io/"
	skiff = "skiff.io/"
	impl  = networkingv1.PathTypeImplementationSpecific
)

// TestAnnotations: each supported annotation changes what a request gets.
func TestAnnotations(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	cs := e.ts.Client
	e.service("app", backend(t, "127.0.0.2", "app"))
	e.service("stable", backend(t, "127.0.0.3", "stable"))
	e.service("canary", backend(t, "127.0.0.4", "canary"))
	one := func(host string, paths ...networkingv1.HTTPIngressPath) networkingv1.IngressSpec {
		return networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{rule(host, paths...)}}
	}

	t.Run("rewrite-target", func(t *testing.T) {
		e.ingress("rw-regex", map[string]string{nginx + "rewrite-target": "/$2"}, one("rw.example.com", path(impl, "/app(/|$)(.*)", "app")))
		e.ingress("rw-prefix", map[string]string{skiff + "rewrite-target": "/v2"}, one("rw2.example.com", path(prefix, "/api", "app")))
		e.waitRoute("rw.example.com", "/app/x", "app")
		e.waitRoute("rw2.example.com", "/api", "app")
		for _, c := range []struct{ host, uri, want string }{
			{"rw.example.com", "/app/x/y", "/x/y"},
			{"rw.example.com", "/app", "/"},
			{"rw.example.com", "/APP/z", "/z"},
			{"rw2.example.com", "/api/users", "/v2/users"},
			{"rw2.example.com", "/api", "/v2"},
		} {
			if code, ec, body := e.get(c.host, c.uri); code != 200 || ec.Path != c.want {
				t.Errorf("%s%s: %d %s, want path %s", c.host, c.uri, code, body, c.want)
			}
		}
	})

	t.Run("ssl-redirect", func(t *testing.T) {
		e.ingress("force", map[string]string{nginx + "force-ssl-redirect": "true"}, one("force.example.com", path(prefix, "/", "app")))
		spec := one("noredir.example.com", path(prefix, "/", "app"))
		spec.TLS = []networkingv1.IngressTLS{{Hosts: []string{"noredir.example.com"}}}
		e.ingress("noredir", map[string]string{nginx + "ssl-redirect": "false"}, spec)
		waitFor(t, 20*time.Second, "force-ssl-redirect", func() (bool, string) {
			resp, _ := e.do("GET", "force.example.com", "/x", nil, nil)
			return resp.StatusCode == http.StatusPermanentRedirect && strings.HasPrefix(resp.Header.Get("Location"), "https://force.example.com:"), resp.Status
		})
		e.waitRoute("noredir.example.com", "/", "app")
	})

	t.Run("proxy-body-size", func(t *testing.T) {
		e.ingress("body", map[string]string{nginx + "proxy-body-size": "1k"}, one("body.example.com", path(prefix, "/", "app")))
		e.waitRoute("body.example.com", "/", "app")
		resp, _ := e.do("POST", "body.example.com", "/", nil, strings.NewReader(strings.Repeat("x", 512)))
		if resp.StatusCode != 200 {
			t.Errorf("512 B: %d", resp.StatusCode)
		}
		resp, body := e.do("POST", "body.example.com", "/", nil, strings.NewReader(strings.Repeat("x", 2048)))
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("2 KiB: %d %s", resp.StatusCode, body)
		}
		// Unknown length: cut off while streaming.
		resp, body = e.do("POST", "body.example.com", "/", nil, struct{ *strings.Reader }{strings.NewReader(strings.Repeat("x", 4096))})
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("4 KiB chunked: %d %s", resp.StatusCode, body)
		}
	})

	t.Run("proxy-read-timeout", func(t *testing.T) {
		e.ingress("slow", map[string]string{nginx + "proxy-read-timeout": "1"}, one("slow.example.com", path(prefix, "/", "app")))
		e.waitRoute("slow.example.com", "/", "app")
		start := time.Now()
		code, _, body := e.get("slow.example.com", "/?sleep=5s")
		if code != http.StatusGatewayTimeout || !strings.Contains(body, "did not answer in time") {
			t.Errorf("slow backend: %d %s", code, body)
		}
		if d := time.Since(start); d > 4*time.Second {
			t.Errorf("504 after %v", d)
		}
		if code, _, _ := e.get("slow.example.com", "/?sleep=100ms"); code != 200 {
			t.Errorf("fast enough backend: %d", code)
		}
		// A body that stops mid-way: the read timeout bounds each wait
		// for more of it too, and the answer is cut, not passed as whole.
		req, _ := http.NewRequest("GET", "http://"+e.httpAddr+"/?stall=8s", nil)
		req.Host = "slow.example.com"
		start = time.Now()
		resp, err := e.client.Do(req)
		if err != nil {
			t.Fatalf("stalled body: %v", err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil {
			t.Errorf("a body stalled past the read timeout reached the client whole: %q", b)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("stalled body cut after %v, want about the 1 s read timeout", d)
		}
	})

	t.Run("limit-rps", func(t *testing.T) {
		e.ingress("limited", map[string]string{nginx + "limit-rps": "2", nginx + "limit-burst-multiplier": "1"}, one("limited.example.com", path(prefix, "/", "app")))
		waitFor(t, 20*time.Second, "rate limit", func() (bool, string) {
			codes := map[int]int{}
			for range 6 {
				code, _, _ := e.get("limited.example.com", "/")
				codes[code]++
			}
			return codes[200] >= 1 && codes[503] >= 1 && codes[200]+codes[503] == 6, ""
		})
	})

	t.Run("canary", func(t *testing.T) {
		e.ingress("main", nil, one("canary.example.com", path(prefix, "/", "stable")))
		c := e.ingress("canary", map[string]string{nginx + "canary": "true", nginx + "canary-by-header": "X-Canary", nginx + "canary-weight": "0"}, one("canary.example.com", path(prefix, "/", "canary")))
		waitFor(t, 20*time.Second, "canary by header", func() (bool, string) {
			_, b := e.do("GET", "canary.example.com", "/", http.Header{"X-Canary": {"always"}}, nil)
			return strings.Contains(string(b), `"backend":"canary"`), string(b)
		})
		for range 10 {
			if _, b := e.do("GET", "canary.example.com", "/", http.Header{"X-Canary": {"never"}}, nil); !strings.Contains(string(b), `"backend":"stable"`) {
				t.Fatalf("never: %s", b)
			}
			if _, ec, _ := e.get("canary.example.com", "/"); ec.Backend != "stable" {
				t.Fatalf("weight 0 without header: %s", ec.Backend)
			}
		}
		c, _ = cs.NetworkingV1().Ingresses(e.ns).Get(ctx, "canary", metav1.GetOptions{})
		c.Annotations[nginx+"canary-weight"] = "100"
		if _, err := cs.NetworkingV1().Ingresses(e.ns).Update(ctx, c, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		e.waitRoute("canary.example.com", "/", "canary")
		for range 10 {
			if _, ec, _ := e.get("canary.example.com", "/"); ec.Backend != "canary" {
				t.Fatalf("weight 100: %s", ec.Backend)
			}
		}
	})

	t.Run("load-balance", func(t *testing.T) {
		// Two backends; a request held open on one of them. With
		// least_request every other request goes to the other backend;
		// round-robin would alternate.
		arrived := make(chan string, 1)
		release := make(chan struct{})
		var releaseOnce sync.Once
		// Deferred, so the held request ends before the backends' cleanup
		// waits for it, also when the subtest fails.
		defer releaseOnce.Do(func() { close(release) })
		holding := func(name string) http.Handler {
			echoH := echoHandler(name)
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/hold" {
					arrived <- name
					<-release
				}
				echoH.ServeHTTP(w, r)
			})
		}
		e.service("lr", backendWith(t, "127.0.0.5", holding("lr-a")), backendWith(t, "127.0.0.6", holding("lr-b")))
		e.ingress("lr", map[string]string{skiff + "load-balance": "least_request"}, one("lr.example.com", path(prefix, "/", "lr")))
		waitFor(t, 20*time.Second, "both lr backends", func() (bool, string) {
			seen := map[string]bool{}
			for range 4 {
				_, ec, _ := e.get("lr.example.com", "/")
				seen[ec.Backend] = true
			}
			return seen["lr-a"] && seen["lr-b"], fmt.Sprint(seen)
		})
		held := make(chan int, 1)
		go func() {
			code, _, _ := e.get("lr.example.com", "/hold")
			held <- code
		}()
		busy := <-arrived
		for range 6 {
			if _, ec, _ := e.get("lr.example.com", "/"); ec.Backend == busy || ec.Backend == "" {
				t.Fatalf("least_request sent a request to %q while %s holds one", ec.Backend, busy)
			}
		}
		releaseOnce.Do(func() { close(release) })
		if code := <-held; code != 200 {
			t.Fatalf("held request: %d", code)
		}
	})

	t.Run("basic-auth", func(t *testing.T) {
		// openssl passwd -apr1 -salt rsTkZ1uM secret
		_, err := cs.CoreV1().Secrets(e.ns).Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "htpasswd"},
			Data:       map[string][]byte{"auth": []byte("alice:$apr1$rsTkZ1uM$yW.Y41cifHnyxsO0iCZBe/\n")},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		e.ingress("auth", map[string]string{nginx + "auth-type": "basic", nginx + "auth-secret": "htpasswd", nginx + "auth-realm": "staff"},
			one("auth.example.com", path(prefix, "/", "app")))
		e.ingress("auth-missing", map[string]string{nginx + "auth-type": "basic", nginx + "auth-secret": "nope"},
			one("auth-missing.example.com", path(prefix, "/", "app")))
		waitFor(t, 20*time.Second, "401", func() (bool, string) {
			resp, _ := e.do("GET", "auth.example.com", "/", nil, nil)
			return resp.StatusCode == 401 && resp.Header.Get("WWW-Authenticate") == `Basic realm="staff"`, resp.Status
		})
		req := func(user, pw string) int {
			r, _ := http.NewRequest("GET", "http://"+e.httpAddr+"/", nil)
			r.Host = "auth.example.com"
			r.SetBasicAuth(user, pw)
			resp, err := e.client.Do(r)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp.StatusCode
		}
		if code := req("alice", "wrong"); code != 401 {
			t.Errorf("wrong password: %d", code)
		}
		if code := req("bob", "secret"); code != 401 {
			t.Errorf("unknown user: %d", code)
		}
		if code := req("alice", "secret"); code != 200 {
			t.Errorf("right password: %d", code)
		}
		// A missing auth Secret denies rather than serving unprotected
		// (once its Ingress is routed at all: 404 before that).
		var code int
		var body string
		waitFor(t, 20*time.Second, "auth-missing routed", func() (bool, string) {
			code, _, body = e.get("auth-missing.example.com", "/")
			return code != 404, body
		})
		if code != 503 {
			t.Errorf("missing auth secret: %d %s", code, body)
		}
	})

	t.Run("cors", func(t *testing.T) {
		e.ingress("cors", map[string]string{nginx + "enable-cors": "true", nginx + "cors-allow-origin": "https://app.example.com", nginx + "cors-allow-methods": "GET, POST"},
			one("cors.example.com", path(prefix, "/", "app")))
		waitFor(t, 20*time.Second, "preflight", func() (bool, string) {
			resp, _ := e.do("OPTIONS", "cors.example.com", "/", http.Header{"Origin": {"https://app.example.com"}, "Access-Control-Request-Method": {"POST"}}, nil)
			h := resp.Header
			return resp.StatusCode == 204 && h.Get("Access-Control-Allow-Origin") == "https://app.example.com" &&
				h.Get("Access-Control-Allow-Methods") == "GET, POST" && h.Get("Access-Control-Allow-Credentials") == "true", resp.Status
		})
		resp, _ := e.do("GET", "cors.example.com", "/", http.Header{"Origin": {"https://app.example.com"}}, nil)
		if resp.StatusCode != 200 || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" {
			t.Errorf("simple request: %d %v", resp.StatusCode, resp.Header)
		}
		resp, _ = e.do("GET", "cors.example.com", "/", http.Header{"Origin": {"https://evil.example.com"}}, nil)
		if resp.Header.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("other origin allowed: %v", resp.Header)
		}
	})

	t.Run("invalid-annotation", func(t *testing.T) {
		// A bad value is reported and ignored; the route still serves.
		e.ingress("badann", map[string]string{nginx + "proxy-body-size": "lots", nginx + "use-regex": "true"},
			networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{rule("badann.example.com", path(impl, "/ok", "app"), path(impl, "/(", "app"))}})
		e.waitRoute("badann.example.com", "/ok", "app")
		waitFor(t, 20*time.Second, "InvalidAnnotation event", func() (bool, string) {
			evs, _ := cs.CoreV1().Events(e.ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=badann"})
			reasons := ""
			for _, ev := range evs.Items {
				reasons += ev.Reason + " "
			}
			return strings.Contains(reasons, "InvalidAnnotation") && strings.Contains(reasons, "InvalidPath"), reasons
		})
	})
}
