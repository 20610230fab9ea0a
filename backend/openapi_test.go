package backend_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestOpenAPIProxy: the YAML editor's schemas come through the backend as
// the user: the v3 discovery document, a built-in group version and a
// CRD's group version with its schema; bad paths are refused.
func TestOpenAPIProxy(t *testing.T) {
	e := start(t)
	admin := e.login(adminToken)
	crd := `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: crontabs.stable.example.com}
spec:
  group: stable.example.com
  scope: Namespaced
  names: {plural: crontabs, singular: crontab, kind: CronTab, listKind: CronTabList}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              cronSpec: {type: string, description: When to run.}
`
	if code, body := admin.call("POST", "/api/apply", crd); code != http.StatusOK && code != http.StatusCreated {
		t.Fatalf("create CRD: %d %s", code, body)
	}
	viewer := e.login(viewerToken)
	var root struct {
		Paths map[string]struct {
			ServerRelativeURL string `json:"serverRelativeURL"`
		} `json:"paths"`
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, body := viewer.call("GET", "/api/openapi/v3", "")
		if code != http.StatusOK {
			t.Fatalf("/api/openapi/v3: %d %s", code, body)
		}
		if err := json.Unmarshal([]byte(body), &root); err != nil {
			t.Fatal(err)
		}
		if _, ok := root.Paths["apis/stable.example.com/v1"]; ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the CRD's group version is not in /openapi/v3: %s", body)
		}
		time.Sleep(200 * time.Millisecond)
	}
	apps := root.Paths["apis/apps/v1"].ServerRelativeURL
	if !strings.HasPrefix(apps, "/openapi/v3/apis/apps/v1?hash=") {
		t.Fatalf("apps/v1 url %q", apps)
	}
	code, body := viewer.call("GET", "/api"+apps, "")
	if code != http.StatusOK || !strings.Contains(body, `"io.k8s.api.apps.v1.DeploymentSpec"`) || !strings.Contains(body, "Number of desired pods") {
		t.Fatalf("apps/v1 document: %d %.300s", code, body)
	}
	code, body = viewer.call("GET", "/api/openapi/v3/apis/stable.example.com/v1", "")
	if code != http.StatusOK || !strings.Contains(body, `"com.example.stable.v1.CronTab"`) || !strings.Contains(body, "When to run.") {
		t.Fatalf("CRD document: %d %.300s", code, body)
	}
	for _, p := range []string{"/api/openapi/v3/version", "/api/openapi/v3/apis/../../healthz", "/api/openapi/v3/apis/apps"} {
		if code, body := viewer.call("GET", p, ""); code != http.StatusBadRequest && code != http.StatusNotFound {
			t.Fatalf("%s: %d %s", p, code, body)
		}
	}
	resp := e.do("GET", "/api/openapi/v3", nil, nil)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("without a session: %d", resp.StatusCode)
	}
}
