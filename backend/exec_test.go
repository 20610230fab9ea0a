package backend_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/skiffhq/skiff/backend"
	"github.com/skiffhq/skiff/internal/nodetest"
	"github.com/skiffhq/skiff/internal/testimages"
	"github.com/skiffhq/skiff/nodeagent/agent"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
)

// This package's own pod range and bridge inside the blackholed
// 10.42.0.0/16 (internal/nodetest).
const (
	podCIDR = "10.42.243.0/24"
	bridge  = "skiffdb0"
)

// startNode runs a real node agent on containerd (busybox imported) for
// e's API server; everything it made is removed after the test.
func startNode(t *testing.T, e *env) string {
	t.Helper()
	nodetest.Require(t)
	state := nodetest.StateDir(t, nodetest.Busybox)
	name := fmt.Sprintf("dash-node-%d", time.Now().UnixNano()%1e6)
	opts := nodetest.AgentOptions(name, state, podCIDR, bridge)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	a, err := e.ts.StartAgent(ctx, opts)
	cancel()
	if err != nil {
		t.Fatalf("start agent: %v", err)
	}
	t.Cleanup(func() { cleanupAgent(t, e, a, opts) })
	return name
}

func cleanupAgent(t *testing.T, e *env, a *agent.Agent, opts agent.Options) {
	ctx := context.Background()
	for _, ns := range []string{"team", "other", "default"} {
		_ = e.ts.Client.AppsV1().Deployments(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
	}
	pods, _ := e.ts.Client.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	for _, p := range pods.Items {
		_ = e.ts.Client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
	}
	nodetest.Sweep(t, a, opts)
}

// waitFor polls cond every 200 ms until it returns "" or the deadline.
func waitFor(t *testing.T, d time.Duration, what string, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		last := cond()
		if last == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not met in %v (last: %s)", what, d, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func runningPod(t *testing.T, e *env, ns, name, node string, command ...string) {
	t.Helper()
	ctx := context.Background()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.PodSpec{
		NodeName: node, TerminationGracePeriodSeconds: ptr.To[int64](0), AutomountServiceAccountToken: ptr.To(false),
		Containers: []corev1.Container{{Name: "main", Image: testimages.Busybox, Command: command}},
	}}
	waitFor(t, 15*time.Second, "create pod "+name, func() string {
		if _, err := e.ts.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			return err.Error()
		}
		return ""
	})
	waitFor(t, 90*time.Second, "pod "+name+" running", func() string {
		p, err := e.ts.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err.Error()
		}
		if p.Status.Phase != corev1.PodRunning {
			return string(p.Status.Phase)
		}
		return ""
	})
}

// term is a browser's exec socket.
type term struct {
	t    *testing.T
	conn *websocket.Conn
	out  strings.Builder // channel 1
	err  strings.Builder // channel 2
	// notices are channel 6 texts.
	notices []string
	status  *struct {
		Status, Reason, Message string
		ExitCode                int
	}
}

func (u *user) exec(t *testing.T, query url.Values) (*term, *http.Response, error) {
	t.Helper()
	d := websocket.Dialer{TLSClientConfig: u.e.web.Client().Transport.(*http.Transport).TLSClientConfig.Clone()}
	hdr := http.Header{"Origin": {u.e.web.URL}, "Cookie": {u.cookie.Name + "=" + u.cookie.Value}}
	conn, resp, err := d.Dial("wss"+strings.TrimPrefix(u.e.web.URL, "https")+"/api/exec?"+query.Encode(), hdr)
	if err != nil {
		return nil, resp, err
	}
	t.Cleanup(func() { conn.Close() })
	return &term{t: t, conn: conn}, resp, nil
}

func (c *term) frame(ch byte, data string) {
	c.t.Helper()
	if err := c.conn.WriteMessage(websocket.BinaryMessage, append([]byte{ch}, data...)); err != nil {
		c.t.Fatal(err)
	}
}

// until reads frames until ok holds (20 s); it fails on the socket's end
// unless ok holds then.
func (c *term) until(what string, ok func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !ok() {
		_ = c.conn.SetReadDeadline(deadline)
		mt, data, err := c.conn.ReadMessage()
		if err != nil {
			c.t.Fatalf("waiting for %s: %v (stdout %q, stderr %q, notices %q)", what, err, c.out.String(), c.err.String(), c.notices)
		}
		if mt != websocket.BinaryMessage || len(data) == 0 {
			c.t.Fatalf("a frame that is not binary or is empty: %d %q", mt, data)
		}
		switch data[0] {
		case 1:
			c.out.Write(data[1:])
		case 2:
			c.err.Write(data[1:])
		case 3:
			if c.status != nil {
				c.t.Fatalf("a second status frame: %s", data[1:])
			}
			c.status = &struct {
				Status, Reason, Message string
				ExitCode                int
			}{}
			if err := json.Unmarshal(data[1:], c.status); err != nil {
				c.t.Fatalf("status %q: %v", data[1:], err)
			}
		case 6:
			c.notices = append(c.notices, string(data[1:]))
		default:
			c.t.Fatalf("frame on channel %d: %q", data[0], data[1:])
		}
	}
}

// TestExecTerminal opens shells in a real busybox pod on a real node
// agent through the dashboard, as the user: a tty with resize, bad frames
// refused with notices while the shell goes on, exit codes, stdout and
// stderr apart without a tty, the view user refused (RBAC create
// pods/exec), and a closed socket ending the shell in the container and
// the relay in the backend.
func TestExecTerminal(t *testing.T) {
	e := start(t)
	node := startNode(t, e)
	runningPod(t, e, "team", "shell", node, "sleep", "3600")
	admin, viewer := e.login(adminToken), e.login(viewerToken)
	q := func(kv ...string) url.Values {
		v := url.Values{"namespace": {"team"}, "pod": {"shell"}}
		for i := 0; i < len(kv); i += 2 {
			v.Add(kv[i], kv[i+1])
		}
		return v
	}

	t.Run("tty: resize, typed input, bad frames, exit code", func(t *testing.T) {
		c, _, err := admin.exec(t, q("container", "main"))
		if err != nil {
			t.Fatal(err)
		}
		c.frame(4, `{"Width":101,"Height":33}`)
		// The agent starts the shell at the first size if it comes within
		// its short wait, else applies it once the shell runs: on a loaded
		// machine the first stty can run before that. The size must show
		// within a few tries.
		for try := 1; ; try++ {
			n := time.Now().UnixNano() % 100000
			c.frame(0, fmt.Sprintf("stty size; echo hello-$((%d+1))\n", n))
			want := fmt.Sprintf("hello-%d", n+1)
			c.until(want, func() bool { return strings.Contains(c.out.String(), want) })
			if strings.Contains(c.out.String(), "33 101") {
				break
			}
			if try == 10 {
				t.Fatalf("stty size after the resize: %q", c.out.String())
			}
			time.Sleep(200 * time.Millisecond)
		}
		if err := c.conn.WriteMessage(websocket.TextMessage, []byte(`{"type":"stdin"}`)); err != nil {
			t.Fatal(err)
		}
		c.frame(9, "x")
		c.frame(4, `{"Width":"wide"}`)
		c.until("three notices", func() bool { return len(c.notices) == 3 })
		for i, w := range []string{"frames are binary", "unknown channel 9", "refused resize"} {
			if !strings.Contains(c.notices[i], w) {
				t.Errorf("notice %d = %q, want it to say %q", i, c.notices[i], w)
			}
		}
		c.frame(0, "echo still-$((2*21))\nexit 3\n")
		c.until("the status", func() bool { return c.status != nil })
		if !strings.Contains(c.out.String(), "still-42") {
			t.Errorf("the shell did not go on after the bad frames: %q", c.out.String())
		}
		if c.status.Status != "Failure" || c.status.Reason != "NonZeroExitCode" || c.status.ExitCode != 3 {
			t.Errorf("status = %+v, want exit code 3", *c.status)
		}
		if c.err.Len() != 0 {
			t.Errorf("stderr with a tty: %q", c.err.String())
		}
	})

	t.Run("no tty: stdout and stderr apart, success", func(t *testing.T) {
		c, _, err := admin.exec(t, q("tty", "0", "command", "sh", "command", "-c", "command", "read x; echo out-$x; echo err-$x >&2"))
		if err != nil {
			t.Fatal(err)
		}
		c.frame(0, "7\n")
		c.until("the status", func() bool { return c.status != nil })
		if c.out.String() != "out-7\n" || c.err.String() != "err-7\n" || c.status.Status != "Success" || c.status.ExitCode != 0 {
			t.Errorf("stdout %q, stderr %q, status %+v", c.out.String(), c.err.String(), *c.status)
		}
	})

	t.Run("the view user may not exec: a clear message", func(t *testing.T) {
		c, _, err := viewer.exec(t, q())
		if err != nil {
			t.Fatal(err)
		}
		c.until("the status", func() bool { return c.status != nil })
		if c.status.Reason != "Forbidden" || c.status.Message != "viewer cannot create pods/exec in namespace team" {
			t.Errorf("status = %+v", *c.status)
		}
	})

	t.Run("bad request and foreign origin", func(t *testing.T) {
		c, _, err := admin.exec(t, url.Values{"pod": {"shell"}})
		if err != nil {
			t.Fatal(err)
		}
		c.until("the status", func() bool { return c.status != nil })
		if c.status.Reason != "BadRequest" || !strings.Contains(c.status.Message, "namespace and pod are required") {
			t.Errorf("status = %+v", *c.status)
		}
		c, _, err = admin.exec(t, q("container", "nope"))
		if err != nil {
			t.Fatal(err)
		}
		c.until("the status", func() bool { return c.status != nil })
		if c.status.Status != "Failure" || !strings.Contains(c.status.Message, "nope") {
			t.Errorf("unknown container: status = %+v", *c.status)
		}
		d := websocket.Dialer{TLSClientConfig: e.web.Client().Transport.(*http.Transport).TLSClientConfig.Clone()}
		_, resp, err := d.Dial("wss"+strings.TrimPrefix(e.web.URL, "https")+"/api/exec?"+q().Encode(),
			http.Header{"Origin": {"https://evil.example"}, "Cookie": {admin.cookie.Name + "=" + admin.cookie.Value}})
		if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Errorf("foreign origin: %v %v", resp, err)
		}
	})

	t.Run("a flood of frames is slowed, nothing dropped", func(t *testing.T) {
		before := backend.ExecThrottled()
		c, _, err := admin.exec(t, q("tty", "0", "command", "sh", "command", "-c", "command", "head -c 4000 | wc -c"))
		if err != nil {
			t.Fatal(err)
		}
		for range 4000 {
			c.frame(0, "x")
		}
		c.until("the status", func() bool { return c.status != nil })
		if strings.TrimSpace(c.out.String()) != "4000" || c.status.Status != "Success" {
			t.Errorf("stdout %q, status %+v: want all 4000 bytes read", c.out.String(), *c.status)
		}
		if backend.ExecThrottled() == before {
			t.Error("4000 frames sent at once went through without waiting for the limit")
		}
	})

	t.Run("logging out ends the terminal", func(t *testing.T) {
		other := e.login(adminToken)
		c, _, err := other.exec(t, q())
		if err != nil {
			t.Fatal(err)
		}
		c.frame(0, "echo ready-$((20+22))\n")
		c.until("the shell", func() bool { return strings.Contains(c.out.String(), "ready-42") })
		if code, _ := other.call("POST", "/api/logout", ""); code != http.StatusNoContent {
			t.Fatalf("logout: %d", code)
		}
		c.until("the status", func() bool { return c.status != nil })
		if c.status.Reason != "SessionRevoked" || c.status.Message != "session ended: logged out; log in again" {
			t.Errorf("status after the logout = %+v", *c.status)
		}
		_ = c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, _, err = c.conn.ReadMessage()
		if !websocket.IsCloseError(err, 4401) {
			t.Errorf("after the status: %v, want close 4401", err)
		}
	})

	t.Run("closing the socket ends the shell and the relay", func(t *testing.T) {
		c, _, err := admin.exec(t, q())
		if err != nil {
			t.Fatal(err)
		}
		c.frame(0, "echo pid=$$\n")
		var pid string
		pidRE := regexp.MustCompile(`pid=(\d+)\r?\n`)
		c.until("the shell's pid", func() bool {
			m := pidRE.FindStringSubmatch(c.out.String())
			if m != nil {
				pid = m[1]
			}
			return m != nil
		})
		if got := backend.ExecSessions(); got != 1 {
			t.Errorf("exec relays open = %d, want 1", got)
		}
		c.conn.Close()
		waitFor(t, 15*time.Second, "no exec relay open", func() string {
			if n := backend.ExecSessions(); n != 0 {
				return fmt.Sprintf("%d open", n)
			}
			return ""
		})
		waitFor(t, 15*time.Second, "the shell gone from the container", func() string {
			k, _, err := admin.exec(t, q("tty", "0", "command", "sh", "command", "-c", "command", "kill -0 "+pid+" 2>/dev/null && echo alive || echo gone"))
			if err != nil {
				return err.Error()
			}
			k.until("the status", func() bool { return k.status != nil })
			return strings.TrimSpace(strings.ReplaceAll(k.out.String(), "gone", ""))
		})
	})
}

// TestWorkloadLogsMerged follows a real 2-replica Deployment's pods as
// the view user: lines of both pods, each named, and of a third pod once
// the Deployment is scaled up; a user without access is refused, as are
// kinds without pods.
func TestWorkloadLogsMerged(t *testing.T) {
	e := start(t)
	node := startNode(t, e)
	ctx := context.Background()
	labels := map[string]string{"app": "logger"}
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "logger"}, Spec: appsv1.DeploymentSpec{
		Replicas: ptr.To[int32](2), Selector: &metav1.LabelSelector{MatchLabels: labels},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{
			NodeName: node, TerminationGracePeriodSeconds: ptr.To[int64](0), AutomountServiceAccountToken: ptr.To(false),
			Containers: []corev1.Container{{Name: "log", Image: testimages.Busybox,
				Command: []string{"sh", "-c", "i=0; while :; do echo tick-$i; i=$((i+1)); sleep 0.5; done"}}},
		}},
	}}
	if _, err := e.ts.Client.AppsV1().Deployments("team").Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	viewer, dev := e.login(viewerToken), e.login(devToken)
	path := "/api/workloadlogs?group=apps&version=v1&resource=deployments&namespace=team&name=logger"

	if code, body := dev.call("GET", path, ""); code != http.StatusForbidden {
		t.Errorf("dev (no access): %d %s", code, body)
	}
	if code, body := viewer.call("GET", "/api/workloadlogs?version=v1&resource=pods&namespace=team&name=x", ""); code != http.StatusBadRequest || !strings.Contains(body, "not pods") {
		t.Errorf("pods: %d %s", code, body)
	}

	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, _ := http.NewRequestWithContext(sctx, "GET", e.web.URL+path+"&tailLines=5", nil)
	req.Header.Set("Cookie", viewer.cookie.Name+"="+viewer.cookie.Value)
	resp, err := e.web.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("stream: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	lines := make(chan map[string]string, 1024)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			var l map[string]string
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				t.Errorf("line %q: %v", sc.Text(), err)
				return
			}
			lines <- l
		}
	}()
	seen := map[string]int{}
	waitPods := func(n int) {
		t.Helper()
		deadline := time.After(120 * time.Second)
		for {
			withLines := 0
			for _, c := range seen {
				if c >= 2 {
					withLines++
				}
			}
			if withLines >= n {
				return
			}
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("the stream ended; pods with lines: %v", seen)
				}
				if l["event"] == "" {
					if l["container"] != "log" || !strings.HasPrefix(l["line"], "tick-") {
						t.Fatalf("line %v", l)
					}
					seen[l["pod"]]++
				}
			case <-deadline:
				t.Fatalf("lines of %d pods wanted, have %v", n, seen)
			}
		}
	}
	waitPods(2)
	pods, err := e.ts.Client.CoreV1().Pods("team").List(ctx, metav1.ListOptions{LabelSelector: "app=logger"})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		if seen[p.Name] == 0 && p.DeletionTimestamp == nil {
			t.Errorf("no lines of pod %s (seen %v)", p.Name, seen)
		}
	}
	if _, err := e.ts.Client.AppsV1().Deployments("team").Patch(ctx, "logger", types.MergePatchType, []byte(`{"spec":{"replicas":3}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	waitPods(3)

	// Logging out ends the stream with a "revoked" line.
	if code, _ := viewer.call("POST", "/api/logout", ""); code != http.StatusNoContent {
		t.Fatalf("logout: %d", code)
	}
	deadline := time.After(20 * time.Second)
	for revoked := ""; ; {
		select {
		case l, ok := <-lines:
			if !ok {
				if revoked != "session ended: logged out; log in again" {
					t.Fatalf("the stream ended after the logout with revoked message %q", revoked)
				}
				return
			}
			if l["event"] == "revoked" {
				revoked = l["message"]
			}
		case <-deadline:
			t.Fatal("the stream goes on after the logout")
		}
	}
}
