package apiserver_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/internal/testserver"
)

const kubectlPath = "/usr/bin/kubectl"

// kubectlRunner runs the real kubectl against s with a private home and
// cache dir; env adds variables to every run (KUBE_EDITOR...).
func kubectlRunner(t *testing.T, s *testserver.Server, env ...string) func(stdin string, args ...string) (string, error) {
	t.Helper()
	if _, err := os.Stat(kubectlPath); err != nil {
		t.Skipf("kubectl not installed at %s", kubectlPath)
	}
	home := t.TempDir()
	return func(stdin string, args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		full := append([]string{"--kubeconfig", s.Kubeconfig(), "--cache-dir", filepath.Join(home, "cache")}, args...)
		cmd := exec.CommandContext(ctx, kubectlPath, full...)
		cmd.Env = append(append(os.Environ(), "HOME="+home, "KUBECTL_KUBERC=false"), env...)
		if stdin != "" {
			cmd.Stdin = strings.NewReader(stdin)
		}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
}

const appYAML = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: default
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  strategy:
    rollingUpdate: {maxSurge: 1, maxUnavailable: "25%"}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:1.27
        ports:
        - containerPort: 80
        resources:
          limits: {cpu: 100m, memory: 64Mi}
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: default
spec:
  selector: {app: web}
  ports:
  - port: 80
    targetPort: 80
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: web-config
  namespace: default
data:
  key: value
`

func TestKubectlApplyWithDefaultValidation(t *testing.T) {
	s := testserver.Start(t)
	// kubectl edit runs $KUBE_EDITOR on a temporary file: a sed script
	// plays the user.
	editor := filepath.Join(t.TempDir(), "editor.sh")
	if err := os.WriteFile(editor, []byte("#!/bin/sh\nsed -i 's/key: value/key: edited/' \"$1\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	kubectl := kubectlRunner(t, s, "KUBE_EDITOR="+editor)

	out, err := kubectl(appYAML, "apply", "-f", "-")
	if err != nil {
		t.Fatalf("kubectl apply: %v\n%s", err, out)
	}
	for _, want := range []string{"deployment.apps/web created", "service/web created", "configmap/web-config created"} {
		if !strings.Contains(out, want) {
			t.Errorf("apply output lacks %q:\n%s", want, out)
		}
	}
	// A second apply computes a strategic merge patch from the schema.
	changed := strings.Replace(appYAML, "replicas: 2", "replicas: 3", 1)
	out, err = kubectl(changed, "apply", "-f", "-")
	if err != nil || !strings.Contains(out, "deployment.apps/web configured") || !strings.Contains(out, "service/web unchanged") {
		t.Fatalf("re-apply: %v\n%s", err, out)
	}
	out, err = kubectl("", "get", "deployment", "web", "-n", "default", "-o", "jsonpath={.spec.replicas}")
	if err != nil || out != "3" {
		t.Fatalf("replicas after re-apply = %q (%v)", out, err)
	}

	// An unknown field fails with the server's strict decoding error.
	bad := `apiVersion: v1
kind: ConfigMap
metadata:
  name: bad-config
  namespace: default
data:
  key: value
bogusField: 1
`
	out, err = kubectl(bad, "apply", "-f", "-")
	if err == nil {
		t.Fatalf("apply of an unknown field succeeded:\n%s", out)
	}
	if !strings.Contains(out, "strict decoding error") || !strings.Contains(out, `unknown field "bogusField"`) {
		t.Fatalf("apply error does not name the field:\n%s", out)
	}
	badDeploy := strings.Replace(appYAML, "        image: nginx:1.27\n", "        image: nginx:1.27\n        imagePullPolcy: Always\n", 1)
	out, err = kubectl(badDeploy, "create", "-f", "-")
	if err == nil || !strings.Contains(out, `unknown field "spec.template.spec.containers[0].imagePullPolcy"`) {
		t.Fatalf("create with a misspelt nested field: %v\n%s", err, out)
	}

	out, err = kubectl("", "edit", "configmap", "web-config", "-n", "default")
	if err != nil || !strings.Contains(out, "configmap/web-config edited") {
		t.Fatalf("kubectl edit: %v\n%s", err, out)
	}
	out, err = kubectl("", "get", "configmap", "web-config", "-n", "default", "-o", "jsonpath={.data.key}")
	if err != nil || out != "edited" {
		t.Fatalf("data.key after edit = %q (%v)", out, err)
	}

	// kubectl diff (server-side dry run) works against the same documents.
	out, err = kubectl(strings.Replace(changed, "key: value", "key: other", 1), "diff", "-f", "-")
	if err == nil || !strings.Contains(out, "+  key: other") {
		t.Fatalf("kubectl diff: %v\n%s", err, out)
	}
}

func TestKubectlExplain(t *testing.T) {
	s := testserver.Start(t)
	kubectl := kubectlRunner(t, s)

	out, err := kubectl("", "explain", "pod.spec.containers")
	if err != nil {
		t.Fatalf("explain: %v\n%s", err, out)
	}
	for _, want := range []string{"KIND:       Pod", "FIELD: containers <[]Container>",
		"List of containers belonging to the pod", "image\t<string>", "ports\t<[]ContainerPort>",
		"name\t<string> -required-"} {
		if !strings.Contains(out, want) {
			t.Errorf("explain pod.spec.containers lacks %q:\n%s", want, out)
		}
	}

	out, err = kubectl("", "explain", "deployment", "--recursive")
	if err != nil {
		t.Fatalf("explain --recursive: %v\n%s", err, out)
	}
	for _, want := range []string{"GROUP:      apps", "KIND:       Deployment", "containerPort\t<integer> -required-",
		"maxSurge\t<IntOrString>", "creationTimestamp\t<string>"} {
		if !strings.Contains(out, want) {
			t.Errorf("explain deployment --recursive lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("output:\n%s", out)
	}

	s.API().Registry().Add(widgetResource())
	out, err = kubectl("", "explain", "widgets.spec")
	if err != nil {
		t.Fatalf("explain custom resource: %v\n%s", err, out)
	}
	for _, want := range []string{"GROUP:      stable.example.com", "KIND:       Widget", "size\t<integer>", "How big the widget is."} {
		if !strings.Contains(out, want) {
			t.Errorf("explain widgets.spec lacks %q:\n%s", want, out)
		}
	}
}
