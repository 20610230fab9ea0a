package agent_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/internal/testimages"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// run runs the real kubectl against the test server and returns its
// combined output and exit code.
func (e *env) run(stdin string, args ...string) (string, int) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "kubectl", append([]string{"--kubeconfig", e.srv.Kubeconfig()}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(out), ee.ExitCode()
	}
	if err != nil {
		e.t.Fatalf("kubectl %v: %v", args, err)
	}
	return string(out), 0
}

// withoutKlog drops kubectl's own log lines from combined output. kubectl's
// WebSocket client logs "Unknown stream id 1, discarding message" when the
// streaming server's connection-ready frame (an empty message on the lowest
// writable channel, as upstream's wsstream sends) arrives before the client
// registered that stream; no data is lost.
func withoutKlog(out string) string {
	var b strings.Builder
	for _, line := range strings.SplitAfter(out, "\n") {
		if len(line) > 5 && (line[0] == 'E' || line[0] == 'W' || line[0] == 'I') && line[1] >= '0' && line[1] <= '9' && strings.Contains(line, "] ") {
			continue
		}
		b.WriteString(line)
	}
	return b.String()
}

// TestKubectlExecAttachCpPortForward drives the real kubectl through the
// API server's pods/exec, attach and portforward proxies to the agent and
// containerd.
func TestKubectlExecAttachCpPortForward(t *testing.T) {
	e := setup(t)
	e.createPod(&corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "shell"},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			Containers: []corev1.Container{{Name: "main", Image: testimages.Busybox, ImagePullPolicy: corev1.PullNever,
				Command: []string{"sh", "-c", "echo started; exec sleep 3600"}}},
		},
	})
	e.createPod(&corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			Containers:                    []corev1.Container{{Name: "web", Image: testimages.HTTPServer, ImagePullPolicy: corev1.PullNever}},
		},
	})
	e.waitPod("default", "shell", "Running", running)

	t.Run("exec exit code", func(t *testing.T) {
		out, code := e.run("", "exec", "shell", "--", "sh", "-c", "echo hi; echo oops >&2; exit 3")
		if code != 3 || !strings.Contains(out, "hi\n") || !strings.Contains(out, "oops") {
			t.Fatalf("exit %d, output %q", code, out)
		}
	})
	t.Run("exec -i", func(t *testing.T) {
		out, code := e.run("hello stdin\n", "exec", "-i", "shell", "--", "tr", "a-z", "A-Z")
		if out = withoutKlog(out); code != 0 || out != "HELLO STDIN\n" {
			t.Fatalf("exit %d, output %q", code, out)
		}
	})
	t.Run("exec -it", func(t *testing.T) {
		// script gives kubectl a terminal, as a person's shell would.
		kc := fmt.Sprintf("kubectl --kubeconfig %s exec -it shell -- sh -c 'tty; stty size; exit 5'", e.srv.Kubeconfig())
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "script", "-qec", kc, "/dev/null")
		cmd.Env = append(os.Environ(), "COLUMNS=100", "LINES=30")
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 5 {
			t.Fatalf("want exit 5, got %v: %q", err, out)
		}
		if !strings.Contains(string(out), "/dev/pts/") {
			t.Fatalf("no tty in the container: %q", out)
		}
	})
	t.Run("cp", func(t *testing.T) {
		dir := t.TempDir()
		data := make([]byte, 300*1024)
		_, _ = rand.Read(data)
		in, back := filepath.Join(dir, "in.bin"), filepath.Join(dir, "back.bin")
		if err := os.WriteFile(in, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if out, code := e.run("", "cp", in, "shell:/tmp/in.bin"); code != 0 {
			t.Fatalf("cp in: %d %s", code, out)
		}
		if out, code := e.run("", "cp", "shell:/tmp/in.bin", back); code != 0 {
			t.Fatalf("cp out: %d %s", code, out)
		}
		got, err := os.ReadFile(back)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("round trip differs (%d of %d bytes): %v", len(got), len(data), err)
		}
	})
	t.Run("forbidden", func(t *testing.T) {
		// A user who may read pods but not exec into them.
		for _, args := range [][]string{
			{"create", "role", "pod-reader", "--verb=get,list", "--resource=pods"},
			{"create", "rolebinding", "pod-reader", "--role=pod-reader", "--user=viewer"},
		} {
			if out, code := e.run("", args...); code != 0 {
				t.Fatalf("kubectl %v: %s", args, out)
			}
		}
		out, code := e.run("", "--as", "viewer", "exec", "shell", "--", "true")
		if code == 0 || !strings.Contains(out, "forbidden") || !strings.Contains(out, "pods/exec") {
			t.Fatalf("exit %d, output %q", code, out)
		}
	})
	t.Run("port-forward", func(t *testing.T) {
		e.waitPod("default", "web", "Running", running)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		cmd := exec.CommandContext(ctx, "kubectl", "--kubeconfig", e.srv.Kubeconfig(), "port-forward", "pod/web", fmt.Sprintf("0:%d", testimages.HTTPServerPort))
		stdout, _ := cmd.StdoutPipe()
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { cancel(); _ = cmd.Wait() }()
		lines := make(chan string, 4)
		go func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		re := regexp.MustCompile(`Forwarding from 127\.0\.0\.1:(\d+)`)
		var port string
		deadline := time.After(30 * time.Second)
		for port == "" {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("port-forward ended: %s", stderr.String())
				}
				if m := re.FindStringSubmatch(l); m != nil {
					port = m[1]
				}
			case <-deadline:
				t.Fatalf("port-forward never ready: %s", stderr.String())
			}
		}
		c := &http.Client{Timeout: 10 * time.Second}
		for i := range 3 { // several connections over one session
			resp, err := c.Get("http://127.0.0.1:" + port + "/hello")
			if err != nil {
				t.Fatalf("GET %d: %v (%s)", i, err, stderr.String())
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || len(body) == 0 {
				t.Fatalf("GET %d: %d %q", i, resp.StatusCode, body)
			}
		}
	})
	t.Run("nodes/proxy", func(t *testing.T) {
		out, code := e.run("", "get", "--raw", "/api/v1/nodes/"+e.nodeName+"/proxy/healthz")
		if code != 0 || strings.TrimSpace(out) != "ok" {
			t.Fatalf("exit %d, output %q", code, out)
		}
	})
}

// TestKubectlAttach attaches to a container whose main process reads its
// stdin (stdin and stdinOnce): what is typed reaches it, its answers come
// back and also land in the container log.
func TestKubectlAttach(t *testing.T) {
	e := setup(t)
	e.createPod(&corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "reader"},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			RestartPolicy:                 corev1.RestartPolicyNever,
			Containers: []corev1.Container{{Name: "main", Image: testimages.Busybox, ImagePullPolicy: corev1.PullNever,
				Stdin: true, StdinOnce: true,
				Command: []string{"sh", "-c", `while read l; do echo "got $l"; done; echo bye`}}},
		},
	})
	e.waitPod("default", "reader", "Running", running)
	out, code := e.run("hello\nworld\n", "attach", "-i", "reader")
	if code != 0 || !strings.Contains(out, "got hello") || !strings.Contains(out, "got world") || !strings.Contains(out, "bye") {
		t.Fatalf("exit %d, output %q", code, out)
	}
	e.waitPod("default", "reader", "Succeeded", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodSucceeded })
	logs, _ := e.run("", "logs", "reader")
	if !strings.Contains(logs, "got world") || !strings.Contains(logs, "bye") {
		t.Fatalf("logs %q", logs)
	}
}
