package crd_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/internal/testserver"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

const kubectlManifest = `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: crontabs.stable.example.com
spec:
  group: stable.example.com
  scope: Namespaced
  names:
    plural: crontabs
    singular: crontab
    kind: CronTab
    shortNames: [ct]
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
      scale:
        specReplicasPath: .spec.replicas
        statusReplicasPath: .status.replicas
    additionalPrinterColumns:
    - name: Spec
      type: string
      jsonPath: .spec.cronSpec
    - name: Replicas
      type: integer
      jsonPath: .spec.replicas
    - name: Age
      type: date
      jsonPath: .metadata.creationTimestamp
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              cronSpec:
                type: string
              image:
                type: string
              replicas:
                type: integer
                default: 1
          status:
            type: object
            properties:
              replicas:
                type: integer
---
apiVersion: stable.example.com/v1
kind: CronTab
metadata:
  name: my-cron
  namespace: default
spec:
  cronSpec: "* * * * */5"
  image: my-cron-image
`

func kubectl(t *testing.T, s *testserver.Server, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/usr/bin/kubectl", append([]string{"--kubeconfig", s.Kubeconfig(), "--cache-dir", filepath.Join(t.TempDir(), "cache")}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestKubectl(t *testing.T) {
	if _, err := os.Stat("/usr/bin/kubectl"); err != nil {
		t.Skip("kubectl not installed")
	}
	s := testserver.Start(t)
	dir := t.TempDir()
	manifest := filepath.Join(dir, "crontab.yaml")
	if err := os.WriteFile(manifest, []byte(kubectlManifest), 0o600); err != nil {
		t.Fatal(err)
	}
	// As against any cluster, the CR of the same file can only be mapped
	// once the CRD is established: the first apply may report it, a retry
	// applies it.
	var out string
	var err error
	deadline := time.Now().Add(15 * time.Second)
	for {
		out, err = kubectl(t, s, "apply", "-f", manifest)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("kubectl apply: %v\n%s", err, out)
	}
	if !strings.Contains(out, "crontab.stable.example.com/my-cron") {
		t.Errorf("apply output: %s", out)
	}

	out, err = kubectl(t, s, "get", "crontabs")
	if err != nil {
		t.Fatalf("kubectl get: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("kubectl get crontabs:\n%s", out)
	}
	header := strings.Fields(lines[0])
	if strings.Join(header, " ") != "NAME SPEC REPLICAS AGE" {
		t.Errorf("header = %q", lines[0])
	}
	row := lines[1]
	if !strings.HasPrefix(row, "my-cron") || !strings.Contains(row, "* * * * */5") || strings.Fields(row)[6] != "1" {
		t.Errorf("row = %q", row)
	}

	out, err = kubectl(t, s, "api-resources", "--api-group=stable.example.com")
	if err != nil || !strings.Contains(out, "crontabs") || !strings.Contains(out, "ct") || !strings.Contains(out, "CronTab") {
		t.Errorf("api-resources: %v\n%s", err, out)
	}

	out, err = kubectl(t, s, "scale", "crontab/my-cron", "--replicas=4")
	if err != nil {
		t.Fatalf("kubectl scale: %v\n%s", err, out)
	}
	got, err := s.Dynamic.Resource(crontabs).Namespace("default").Get(context.Background(), "my-cron", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if r, _, _ := unstructured.NestedInt64(got.Object, "spec", "replicas"); r != 4 {
		t.Errorf("spec.replicas after kubectl scale = %d", r)
	}

	// Re-applying the same file changes nothing: defaults do not count as
	// spec changes.
	if out, err := kubectl(t, s, "apply", "-f", manifest); err != nil {
		t.Fatalf("second apply: %v\n%s", err, out)
	}
	crd, err := extClient(t, s).ApiextensionsV1().CustomResourceDefinitions().Get(context.Background(), "crontabs.stable.example.com", metav1.GetOptions{})
	if err != nil || crd.Generation != 1 {
		t.Errorf("CRD generation after re-apply = %d (%v)", crd.Generation, err)
	}

	out, err = kubectl(t, s, "get", "ct", "my-cron", "-o", "jsonpath={.spec.image}")
	if err != nil || out != "my-cron-image" {
		t.Errorf("get by short name: %v %q", err, out)
	}
	out, err = kubectl(t, s, "delete", "-f", manifest, "--ignore-not-found")
	if err != nil {
		t.Fatalf("kubectl delete: %v\n%s", err, out)
	}
	out, err = kubectl(t, s, "get", "crontabs")
	if err == nil {
		t.Errorf("get after deleting the CRD succeeded:\n%s", out)
	}
}

var crontabs = schema.GroupVersionResource{Group: group, Version: "v1", Resource: "crontabs"}
