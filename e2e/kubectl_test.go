package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const manifest = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: registry.local/web:1
        ports:
        - containerPort: 8080
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports:
  - name: http
    port: 80
    targetPort: 8080
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  mode: fast
---
apiVersion: v1
kind: Secret
metadata:
  name: creds
type: Opaque
stringData:
  password: hunter2
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wd]}
  versions:
  - name: v1
    served: true
    storage: true
    additionalPrinterColumns:
    - name: Size
      type: integer
      jsonPath: .spec.size
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer, minimum: 0}
              color: {type: string}
---
apiVersion: example.com/v1
kind: Widget
metadata:
  name: gizmo
spec:
  size: 3
  color: blue
`

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestKubectlWorkflow drives the everyday kubectl commands against a real
// server, as a Kubernetes user would.
func TestKubectlWorkflow(t *testing.T) {
	c := startCluster(t)
	file := writeFile(t, c.dir, "app.yaml", manifest)

	// apply: as with upstream, a custom resource in the same file as its
	// CRD may need a second apply once the CRD is established.
	if out, err := c.run("apply", "-f", file); err != nil {
		if !strings.Contains(out, "widgets") && !strings.Contains(out, "Widget") {
			t.Fatalf("apply: %v\n%s", err, out)
		}
		c.k(t, "wait", "--for=condition=established", "--timeout=30s", "crd/widgets.example.com")
		c.k(t, "apply", "-f", file)
	}
	out := c.k(t, "apply", "-f", file)
	for _, want := range []string{"deployment.apps/web unchanged", "service/web unchanged", "configmap/settings unchanged", "widget.example.com/gizmo unchanged"} {
		if !strings.Contains(out, want) {
			t.Errorf("second apply: missing %q in:\n%s", want, out)
		}
	}

	t.Run("get", func(t *testing.T) {
		out := c.k(t, "get", "deploy,svc", "-o", "wide")
		if !strings.Contains(out, "deployment.apps/web") || !strings.Contains(out, "service/web") || !strings.Contains(out, "CLUSTER-IP") {
			t.Errorf("get deploy,svc -o wide:\n%s", out)
		}
		out = c.k(t, "get", "cm", "settings", "-o", "yaml")
		if !strings.Contains(out, "mode: fast") || !strings.Contains(out, "resourceVersion:") {
			t.Errorf("get -o yaml:\n%s", out)
		}
		var obj map[string]interface{}
		if err := json.Unmarshal([]byte(c.k(t, "get", "secret", "creds", "-o", "json")), &obj); err != nil {
			t.Fatal(err)
		}
		if obj["data"].(map[string]interface{})["password"] != "aHVudGVyMg==" {
			t.Errorf("secret data: %v", obj["data"])
		}
		if got := c.k(t, "get", "svc", "web", "-o", "jsonpath={.spec.ports[0].port}"); got != "80" {
			t.Errorf("jsonpath: %q", got)
		}
		if got := c.k(t, "get", "wd", "gizmo", "-o", "jsonpath={.spec.color}"); got != "blue" {
			t.Errorf("custom resource jsonpath: %q", got)
		}
		out = c.k(t, "get", "widgets")
		if !strings.Contains(out, "SIZE") || !strings.Contains(out, "gizmo") {
			t.Errorf("printer columns:\n%s", out)
		}
		out = c.k(t, "get", "all")
		if !strings.Contains(out, "deployment.apps/web") || !strings.Contains(out, "service/kubernetes") {
			t.Errorf("get all:\n%s", out)
		}
	})

	t.Run("watch", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "kubectl", "--kubeconfig", c.kubeconfig, "get", "cm", "settings", "-w", "-o", "jsonpath={.data.mode}{\"\\n\"}")
		cmd.Env = append(os.Environ(), "HOME="+c.dir)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
		lines := make(chan string, 10)
		go func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		expect := func(want string) {
			t.Helper()
			select {
			case l := <-lines:
				if l != want {
					t.Fatalf("watch line %q, want %q", l, want)
				}
			case <-ctx.Done():
				t.Fatalf("watch did not print %q", want)
			}
		}
		expect("fast")
		c.k(t, "patch", "cm", "settings", "--type=merge", "-p", `{"data":{"mode":"slow"}}`)
		expect("slow")
	})

	t.Run("label-annotate-patch", func(t *testing.T) {
		c.k(t, "label", "cm", "settings", "tier=backend")
		c.k(t, "annotate", "cm", "settings", "owner=team-a")
		if out := c.k(t, "get", "cm", "-l", "tier=backend", "-o", "name"); strings.TrimSpace(out) != "configmap/settings" {
			t.Errorf("label selector: %q", out)
		}
		c.kFail(t, "label", "cm", "settings", "tier=frontend")
		c.k(t, "label", "cm", "settings", "tier=frontend", "--overwrite")
		c.k(t, "patch", "deploy", "web", "-p", `{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"registry.local/web:2"}]}}}}`)
		c.k(t, "patch", "deploy", "web", "--type=json", "-p", `[{"op":"add","path":"/metadata/labels/patched","value":"json"}]`)
		c.k(t, "patch", "deploy", "web", "--type=merge", "-p", `{"metadata":{"annotations":{"merged":"yes"}}}`)
		out := c.k(t, "get", "deploy", "web", "-o", "jsonpath={.spec.template.spec.containers[0].image} {.metadata.labels.patched} {.metadata.annotations.merged} {.metadata.generation}")
		if out != "registry.local/web:2 json yes 2" {
			t.Errorf("after patches: %q", out)
		}
	})

	t.Run("scale", func(t *testing.T) {
		c.k(t, "scale", "deploy", "web", "--replicas=5")
		if out := c.k(t, "get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"); out != "5" {
			t.Errorf("replicas after scale: %q", out)
		}
		c.kFail(t, "scale", "deploy", "web", "--replicas=3", "--current-replicas=4")
	})

	t.Run("edit", func(t *testing.T) {
		editor := writeFile(t, c.dir, "editor.sh", "#!/bin/sh\nsed -i 's/mode: [a-z]*/mode: edited/' \"$1\"\n")
		if err := os.Chmod(editor, 0o755); err != nil {
			t.Fatal(err)
		}
		out, err := c.runIn("", []string{"KUBE_EDITOR=" + editor}, "edit", "cm", "settings")
		if err != nil {
			t.Fatalf("edit: %v\n%s", err, out)
		}
		if got := c.k(t, "get", "cm", "settings", "-o", "jsonpath={.data.mode}"); got != "edited" {
			t.Errorf("after edit: %q", got)
		}
	})

	t.Run("replace-diff", func(t *testing.T) {
		y := c.k(t, "get", "cm", "settings", "-o", "yaml")
		y = strings.Replace(y, "mode: edited", "mode: replaced", 1)
		c.kIn(t, y, "replace", "-f", "-")
		if got := c.k(t, "get", "cm", "settings", "-o", "jsonpath={.data.mode}"); got != "replaced" {
			t.Errorf("after replace: %q", got)
		}
		changed := strings.Replace(manifest, "mode: fast", "mode: diffed", 1)
		out, err := c.runIn(changed, nil, "diff", "-f", "-")
		// kubectl diff exits 1 when there are differences.
		if err == nil || !strings.Contains(out, "+  mode: diffed") {
			t.Errorf("diff: %v\n%s", err, out)
		}
		if got := c.k(t, "get", "cm", "settings", "-o", "jsonpath={.data.mode}"); got != "replaced" {
			t.Errorf("diff changed the object: %q", got)
		}
	})

	t.Run("create", func(t *testing.T) {
		c.k(t, "create", "configmap", "lit", "--from-literal=a=1", "--from-literal=b=2")
		c.k(t, "create", "secret", "generic", "gen", "--from-literal=token=abc")
		if got := c.k(t, "get", "cm", "lit", "-o", "jsonpath={.data.a}{.data.b}"); got != "12" {
			t.Errorf("configmap from literal: %q", got)
		}
		if got := c.k(t, "get", "secret", "gen", "-o", "jsonpath={.data.token}"); got != "YWJj" {
			t.Errorf("secret generic: %q", got)
		}
		out := c.kFail(t, "create", "configmap", "lit", "--from-literal=a=1")
		if !strings.Contains(out, "AlreadyExists") && !strings.Contains(out, "already exists") {
			t.Errorf("duplicate create: %s", out)
		}
	})

	t.Run("wait", func(t *testing.T) {
		go func() {
			time.Sleep(500 * time.Millisecond)
			_, _ = c.run("patch", "cm", "lit", "--type=merge", "-p", `{"data":{"ready":"yes"}}`)
		}()
		c.k(t, "wait", "--for=jsonpath={.data.ready}=yes", "cm/lit", "--timeout=30s")
	})

	t.Run("discovery-explain", func(t *testing.T) {
		out := c.k(t, "api-resources")
		for _, want := range []string{"deployments", "deploy", "apps/v1", "widgets", "customresourcedefinitions"} {
			if !strings.Contains(out, want) {
				t.Errorf("api-resources missing %q", want)
			}
		}
		out = c.k(t, "explain", "pod.spec.containers")
		if !strings.Contains(out, "image") || !strings.Contains(out, "FIELDS") {
			t.Errorf("explain:\n%s", tail(out, 800))
		}
	})

	t.Run("delete", func(t *testing.T) {
		c.kIn(t, `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p1"},"spec":{"containers":[{"name":"c","image":"busybox"}]}}`, "apply", "-f", "-")
		c.k(t, "delete", "pod", "p1", "--grace-period=0", "--force")
		c.kFail(t, "get", "pod", "p1")
		c.k(t, "delete", "deploy", "web", "--cascade=orphan")
		c.kFail(t, "get", "deploy", "web")
		c.k(t, "delete", "-f", file, "--ignore-not-found", "--cascade=foreground", "--timeout=60s")
		eventually(t, 30*time.Second, func() string {
			out, _ := c.run("get", "svc,cm", "-o", "name")
			if strings.Contains(out, "service/web") || strings.Contains(out, "configmap/settings") {
				return out
			}
			return ""
		})
	})
}

// TestKubectlRejectsBadInput checks kubectl's view of the API's 4xx answers.
func TestKubectlRejectsBadInput(t *testing.T) {
	c := startCluster(t)
	out, err := c.runIn("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: Bad_Name\n", nil, "apply", "-f", "-")
	if err == nil || !strings.Contains(out, "Invalid value") {
		t.Errorf("invalid name: %v %s", err, out)
	}
	out, err = c.runIn("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ok\nbogus: 1\n", nil, "apply", "-f", "-")
	if err == nil || !strings.Contains(out, "bogus") {
		t.Errorf("unknown field with strict validation: %v %s", err, out)
	}
	out, err = c.runIn("apiVersion: nope/v9\nkind: Thing\nmetadata:\n  name: x\n", nil, "apply", "-f", "-")
	if err == nil {
		t.Errorf("unknown kind accepted: %s", out)
	}
}
