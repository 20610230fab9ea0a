package admission_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/admission"
	"github.com/skiffhq/skiff/internal/testserver"
	"github.com/skiffhq/skiff/server"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// TestAdmission runs every plugin's test against one real server (each in
// its own namespace) to keep the suite cheap.
func TestAdmission(t *testing.T) {
	// Without the server's default local-path class: the
	// DefaultStorageClass test starts from a cluster with no default.
	s := testserver.Start(t, func(c *server.Config) { c.Disable = append(c.Disable, "local-storage") })
	t.Run("Chain", func(t *testing.T) { testChain(t, s) })
	t.Run("ServiceAccount", func(t *testing.T) { testServiceAccount(t, s) })
	t.Run("LimitRanger", func(t *testing.T) { testLimitRanger(t, s) })
	t.Run("ResourceQuota", func(t *testing.T) { testResourceQuota(t, s) })
	t.Run("DefaultStorageClass", func(t *testing.T) { testDefaultStorageClass(t, s) })
	t.Run("DefaultIngressClass", func(t *testing.T) { testDefaultIngressClass(t, s) })
	t.Run("PodSecurity", func(t *testing.T) { testPodSecurity(t, s) })
	t.Run("Priority", func(t *testing.T) { testPriority(t, s) })
	t.Run("DefaultTolerationSeconds", func(t *testing.T) { testDefaultTolerationSeconds(t, s) })
	t.Run("Webhook", func(t *testing.T) { testWebhook(t, s) })
}

func testChain(t *testing.T, s *testserver.Server) {
	on, err := admission.Enabled(nil, []string{"ResourceQuota"})
	if err != nil || on["ResourceQuota"] || !on["NamespaceLifecycle"] {
		t.Fatalf("disable ResourceQuota: %v %v", on, err)
	}
	if _, err := admission.Enabled([]string{"AlwaysAdmitEverything"}, nil); err == nil ||
		!strings.Contains(err.Error(), `enable-admission-plugins plugin "AlwaysAdmitEverything" is unknown`) {
		t.Fatalf("unknown plugin: %v", err)
	}
	// NamespaceLifecycle still runs first in the wired chain.
	_, err = s.Client.CoreV1().ConfigMaps("no-such-ns").Create(context.Background(),
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, metav1.CreateOptions{})
	if !apierrors.IsNotFound(err) || !strings.Contains(err.Error(), `namespaces "no-such-ns" not found`) {
		t.Fatalf("create in a missing namespace: %v", err)
	}
}

// namespace creates ns with labels, plus the default ServiceAccount and
// kube-root-ca.crt when their controller has not made them yet.
func namespace(t *testing.T, c kubernetes.Interface, name string, labels map[string]string) {
	t.Helper()
	ctx := context.Background()
	if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace %s: %v", name, err)
	}
	ensureDefaultSA(t, c, name)
}

func ensureDefaultSA(t *testing.T, c kubernetes.Interface, ns string) {
	t.Helper()
	ctx := context.Background()
	_, err := c.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("create default service account in %s: %v", ns, err)
	}
}

func pod(name string, mutate ...func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
	}
	for _, m := range mutate {
		m(p)
	}
	return p
}

// wantStatus asserts err is an API error with code and exact message.
func wantStatus(t *testing.T, err error, code int32, msg string) {
	t.Helper()
	var se *apierrors.StatusError
	if !errors.As(err, &se) {
		t.Fatalf("want a %d status %q, got %v", code, msg, err)
	}
	if se.ErrStatus.Code != code || se.ErrStatus.Message != msg {
		t.Fatalf("want %d %q\n got %d %q", code, msg, se.ErrStatus.Code, se.ErrStatus.Message)
	}
}

func eventually(t *testing.T, what string, timeout time.Duration, f func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		ok, err := f()
		if ok {
			return
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: timed out (last error: %v)", what, last)
}

// warnings records the Warning headers a client receives.
type warnings struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warnings) HandleWarningHeader(code int, agent, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, text)
}

func (w *warnings) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.msgs
	w.msgs = nil
	return out
}

func clientWithWarnings(t *testing.T, s *testserver.Server) (kubernetes.Interface, *warnings) {
	t.Helper()
	w := &warnings{}
	rc := rest.CopyConfig(s.Config)
	rc.WarningHandler = w
	c, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	return c, w
}
