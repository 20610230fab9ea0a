package audit_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/audit"
	"github.com/skiffhq/skiff/internal/testserver"
	"github.com/skiffhq/skiff/server"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
)

const testPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
rules:
- level: None
  nonResourceURLs: ["/api", "/api/*", "/apis", "/apis/*", "/openapi/*", "/version"]
- level: RequestResponse
  resources:
  - group: ""
    resources: ["secrets"]
- level: Request
  resources:
  - group: ""
    resources: ["configmaps"]
- level: RequestResponse
  resources:
  - group: ""
    resources: ["namespaces"]
    resourceNames: ["audit-rr"]
- level: Metadata
  omitStages: ["RequestReceived"]
`

func readEvents(t *testing.T, path string) []audit.Event {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []audit.Event
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		var ev audit.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("bad audit line %q: %v", sc.Text(), err)
		}
		out = append(out, ev)
	}
	return out
}

func find(evs []audit.Event, verb, resource, name string, stage audit.Stage) []audit.Event {
	var out []audit.Event
	for _, e := range evs {
		// Only the test's own requests: controllers write too.
		if e.User.Username == "system:admin" && e.Verb == verb && e.Stage == stage && e.ObjectRef != nil && e.ObjectRef.Resource == resource && e.ObjectRef.Name == name {
			out = append(out, e)
		}
	}
	return out
}

func one(t *testing.T, evs []audit.Event, verb, resource, name string, stage audit.Stage) audit.Event {
	t.Helper()
	got := find(evs, verb, resource, name, stage)
	if len(got) != 1 {
		t.Fatalf("%d %s events for %s %s %q, want 1", len(got), stage, verb, resource, name)
	}
	return got[0]
}

func TestAuditLog(t *testing.T) {
	dir := t.TempDir()
	logPath := filepath.Join(dir, "audit.log")
	policyPath := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policyPath, []byte(testPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	s := testserver.Start(t, func(c *server.Config) {
		c.AuditLogPath = logPath
		c.AuditPolicyFile = policyPath
	})
	ctx := context.Background()
	const secretValue = "hunter2-very-secret-value"
	cs := s.Client
	if _, err := cs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "cm1"}, Data: map[string]string{"k": "visible-cm-value"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().ConfigMaps("default").Get(ctx, "cm1", metav1.GetOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := cs.CoreV1().ConfigMaps("default").Delete(ctx, "cm1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Secrets("default").Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "sec1"}, Data: map[string][]byte{"password": []byte(secretValue)},
		StringData: map[string]string{"token": secretValue + "-2"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Secrets("default").Get(ctx, "sec1", metav1.GetOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Secrets("default").List(ctx, metav1.ListOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "audit-rr"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Namespaces().Get(ctx, "audit-rr", metav1.GetOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err := cs.CoreV1().ConfigMaps("default").Get(ctx, "missing", metav1.GetOptions{})
	if err == nil {
		t.Fatal("missing configmap found")
	}

	// Audit-Id header, and impersonation, with a raw request.
	hc, err := rest.HTTPClientFor(s.Config)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, s.Config.Host+"/api/v1/namespaces/default/configmaps", nil)
	req.Header.Set("Impersonate-User", "jane")
	req.Header.Set("Impersonate-Group", "devs")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	auditID := resp.Header.Get("Audit-Id")
	if len(auditID) < 32 {
		t.Fatalf("Audit-Id header = %q", auditID)
	}

	// PodSecurity audit mode: the violation is an audit annotation, the pod
	// is still admitted (enforce is only baseline).
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "audit-pss",
		Labels: map[string]string{"pod-security.kubernetes.io/audit": "restricted", "pod-security.kubernetes.io/enforce": "baseline"}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	plainPod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "plain"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		// The default ServiceAccount appears shortly after the namespace.
		_, err := cs.CoreV1().Pods("audit-pss").Create(ctx, plainPod, metav1.CreateOptions{})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("create pod in audit-pss: %v", err)
		}
	}

	evs := readEvents(t, logPath)
	var pss *audit.Event
	for _, e := range find(evs, "create", "pods", "", audit.StageResponseComplete) {
		if e.ObjectRef.Namespace == "audit-pss" && e.ResponseStatus != nil && e.ResponseStatus.Code == 201 {
			pss = &e
		}
	}
	if pss == nil {
		t.Fatal("no audit event for the pod created in audit-pss")
	}
	if v := pss.Annotations["pod-security.kubernetes.io/audit-violations"]; !strings.HasPrefix(v, `would violate PodSecurity "restricted:latest": `) ||
		!strings.Contains(v, "allowPrivilegeEscalation != false") {
		t.Fatalf("audit-violations annotation = %q", v)
	}
	if v := pss.Annotations["pod-security.kubernetes.io/enforce-policy"]; v != "baseline:latest" {
		t.Fatalf("enforce-policy annotation = %q", v)
	}
	if cm := one(t, evs, "create", "configmaps", "", audit.StageResponseComplete); cm.Annotations["pod-security.kubernetes.io/audit-violations"] != "" {
		t.Fatal("a configmap event carries a PodSecurity annotation")
	}
	raw, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, leak := range []string{secretValue, base64.StdEncoding.EncodeToString([]byte(secretValue))} {
		if strings.Contains(string(raw), leak) {
			t.Fatalf("audit log contains secret data %q", leak)
		}
	}

	// create configmap: Request level, both stages, request body logged, no response body.
	recv := one(t, evs, "create", "configmaps", "", audit.StageRequestReceived)
	done := one(t, evs, "create", "configmaps", "", audit.StageResponseComplete)
	if recv.AuditID != done.AuditID || done.Level != audit.LevelRequest {
		t.Fatalf("create events: %+v / %+v", recv, done)
	}
	if !strings.Contains(string(done.RequestObject), "visible-cm-value") || done.ResponseObject != nil {
		t.Fatalf("create configmap objects: request %s response %s", done.RequestObject, done.ResponseObject)
	}
	if done.ResponseStatus == nil || done.ResponseStatus.Code != 201 || done.User.Username != "system:admin" ||
		done.ObjectRef.Namespace != "default" || done.ObjectRef.APIVersion != "v1" || done.APIVersion != "audit.k8s.io/v1" || done.Kind != "Event" ||
		done.RequestURI != "/api/v1/namespaces/default/configmaps" || len(done.SourceIPs) == 0 || done.SourceIPs[0] != "127.0.0.1" ||
		done.UserAgent == "" || done.RequestReceivedTimestamp.IsZero() || done.StageTimestamp.Before(&done.RequestReceivedTimestamp) ||
		done.Annotations[audit.AnnotationDecision] != "allow" {
		t.Fatalf("create configmap event: %+v", done)
	}
	if got := one(t, evs, "get", "configmaps", "cm1", audit.StageResponseComplete); got.ResponseStatus.Code != 200 || got.RequestObject != nil {
		t.Fatalf("get event: %+v", got)
	}
	if got := one(t, evs, "delete", "configmaps", "cm1", audit.StageResponseComplete); got.ResponseStatus.Code != 200 {
		t.Fatalf("delete event: %+v", got)
	}
	if got := one(t, evs, "get", "configmaps", "missing", audit.StageResponseComplete); got.ResponseStatus.Code != 404 ||
		got.ResponseStatus.Reason != metav1.StatusReasonNotFound || !strings.Contains(got.ResponseStatus.Message, `"missing" not found`) {
		t.Fatalf("404 event status: %+v", got.ResponseStatus)
	}
	// Secrets: forced down to Metadata despite the RequestResponse rule.
	for _, verb := range []string{"create", "get"} {
		name := "sec1"
		if verb == "create" {
			name = ""
		}
		got := one(t, evs, verb, "secrets", name, audit.StageResponseComplete)
		if got.Level != audit.LevelMetadata || got.RequestObject != nil || got.ResponseObject != nil {
			t.Fatalf("secret %s event at %s with objects", verb, got.Level)
		}
	}
	// resourceNames: RequestResponse for audit-rr only.
	if got := one(t, evs, "get", "namespaces", "audit-rr", audit.StageResponseComplete); got.Level != audit.LevelRequestResponse ||
		!strings.Contains(string(got.ResponseObject), `"name":"audit-rr"`) {
		t.Fatalf("namespace get event: level %s response %s", got.Level, got.ResponseObject)
	}
	// Metadata rule with omitStages: no RequestReceived.
	if len(find(evs, "list", "pods", "", audit.StageRequestReceived)) != 0 {
		t.Fatal("RequestReceived written although omitted")
	}
	if got := one(t, evs, "list", "pods", "", audit.StageResponseComplete); got.Level != audit.LevelMetadata {
		t.Fatalf("pods list level %s", got.Level)
	}
	// Level None: discovery is not logged.
	for _, e := range evs {
		if e.RequestURI == "/api" || strings.HasPrefix(e.RequestURI, "/apis?") || e.RequestURI == "/apis" {
			t.Fatalf("discovery logged despite level None: %s", e.RequestURI)
		}
	}
	// The raw request: its Audit-Id, and the impersonated user.
	var imp *audit.Event
	for i := range evs {
		if string(evs[i].AuditID) == auditID && evs[i].Stage == audit.StageResponseComplete {
			imp = &evs[i]
		}
	}
	if imp == nil {
		t.Fatalf("no event with Audit-Id %s", auditID)
	}
	if imp.User.Username != "system:admin" || imp.ImpersonatedUser == nil || imp.ImpersonatedUser.Username != "jane" {
		t.Fatalf("impersonated request: user %+v impersonated %+v", imp.User, imp.ImpersonatedUser)
	}
}

func TestPolicyParse(t *testing.T) {
	if _, err := audit.ParsePolicy([]byte(testPolicy)); err != nil {
		t.Fatal(err)
	}
	bad := map[string]string{
		"level":    "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Everything\n",
		"no rules": "apiVersion: audit.k8s.io/v1\nkind: Policy\n",
		"kind":     "apiVersion: audit.k8s.io/v1\nkind: Nope\nrules:\n- level: None\n",
		"both":     "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: None\n  nonResourceURLs: [/x]\n  namespaces: [a]\n",
		"stage":    "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [Later]\nrules:\n- level: None\n",
		"unknown":  "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: None\n  colour: red\n",
		"middle *": "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: None\n  nonResourceURLs: ['/a*/b']\n",
	}
	for name, p := range bad {
		if _, err := audit.ParsePolicy([]byte(p)); err == nil {
			t.Errorf("%s: policy accepted", name)
		}
	}
}
