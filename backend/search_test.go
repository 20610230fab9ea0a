package backend_test

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/skiffhq/skiff/backend"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestSearchAcrossKinds: /api/search finds objects of several kinds by a
// fuzzy query over the shared caches, only of kinds the user may list
// (the viewer may list configmaps in team, not secrets, nor anything in
// other, nor nodes), and refuses bad input.
func TestSearchAcrossKinds(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	for _, ns := range []string{"team", "other"} {
		if _, err := e.ts.Client.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "payments-api-config"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.ts.Client.CoreV1().Secrets("team").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "payments-api-token"},
		StringData: map[string]string{"k": "v"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ts.Client.CoreV1().Services("team").Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "payments"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	search := func(u interface {
		call(string, string, string) (int, string)
	}, q string) (int, backend.SearchResponse, string) {
		t.Helper()
		code, body := u.call("GET", "/api/search?"+q, "")
		var r backend.SearchResponse
		if code == 200 {
			if err := json.Unmarshal([]byte(body), &r); err != nil {
				t.Fatalf("search %s: %v: %s", q, err, body)
			}
		}
		return code, r, body
	}
	ids := func(r backend.SearchResponse) []string {
		var out []string
		for _, x := range r.Results {
			out = append(out, x.Kind+" "+x.Namespace+"/"+x.Name)
		}
		return out
	}

	admin := e.login(adminToken)
	code, r, body := search(admin, "q=pmtapi&ns=team")
	if code != 200 {
		t.Fatalf("admin: %d %s", code, body)
	}
	got := ids(r)
	if !slices.Contains(got, "ConfigMap team/payments-api-config") || !slices.Contains(got, "Secret team/payments-api-token") || slices.Contains(got, "ConfigMap other/payments-api-config") {
		t.Fatalf("admin in team: %v", got)
	}
	if len(r.Forbidden) != 0 || len(r.Searched) != len(backend.SearchKinds) {
		t.Fatalf("admin: searched %v, forbidden %v, pending %v", r.Searched, r.Forbidden, r.Pending)
	}
	// The exact name is first, whatever its kind.
	if _, r, _ = search(admin, "q=payments&ns=team"); len(r.Results) == 0 || r.Results[0].Name != "payments" || r.Results[0].Resource != "services" {
		t.Fatalf("exact name first: %v", ids(r))
	}
	if _, r, _ = search(admin, "q=pmtapi"); !slices.Contains(ids(r), "ConfigMap other/payments-api-config") {
		t.Fatalf("admin, all namespaces: %v", ids(r))
	}
	if _, r, _ = search(admin, "q=pmtapi&ns=team&limit=1"); len(r.Results) != 1 || r.Matched != 2 {
		t.Fatalf("limit 1: %d results, matched %d", len(r.Results), r.Matched)
	}

	viewer := e.login(viewerToken)
	_, r, _ = search(viewer, "q=pmtapi&ns=team")
	if got := ids(r); len(got) != 1 || got[0] != "ConfigMap team/payments-api-config" {
		t.Fatalf("viewer in team: %v (secrets must not be searched)", got)
	}
	if !slices.Contains(r.Forbidden, "secrets") || !slices.Contains(r.Forbidden, "nodes") || slices.Contains(r.Forbidden, "configmaps") {
		t.Fatalf("viewer forbidden: %v", r.Forbidden)
	}
	for _, q := range []string{"q=pmtapi&ns=other", "q=pmtapi"} {
		if _, r, _ = search(viewer, q); len(r.Results) != 0 || r.Matched != 0 || len(r.Searched) != 0 {
			t.Fatalf("viewer %s: %v searched %v", q, ids(r), r.Searched)
		}
	}

	for _, q := range []string{"q=" + strings.Repeat("a", 65), "q=a&limit=x", "q=a&kinds=bad"} {
		if code, _, body := search(admin, q); code != http.StatusBadRequest {
			t.Fatalf("%s: %d %s", q, code, body)
		}
	}
	// An extra kind (as for a CRD the user opened) is searched when served.
	if _, r, _ = search(admin, "q=viewer&ns=team&kinds=rbac.authorization.k8s.io/v1/rolebindings"); !slices.Contains(ids(r), "RoleBinding team/viewer-view") {
		t.Fatalf("extra kind: %v", ids(r))
	}
	if _, r, _ = search(admin, "q=x&kinds=example.com/v1/nothings"); len(r.Forbidden) != 0 {
		t.Fatalf("a kind not served is skipped: %v", r.Forbidden)
	}
}

// TestCreateOnly: /api/apply?create=1 creates and refuses an existing
// object with the API server's AlreadyExists (plain apply updates it).
func TestCreateOnly(t *testing.T) {
	e := start(t)
	admin := e.login(adminToken)
	doc := "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: made}\ndata: {a: b}\n"
	if code, body := admin.call("POST", "/api/apply?namespace=team&create=1", doc); code != 200 || !strings.Contains(body, `"action":"create"`) {
		t.Fatalf("create: %d %s", code, body)
	}
	if code, body := admin.call("POST", "/api/apply?namespace=team&create=1", doc); code != http.StatusConflict || !strings.Contains(body, "already exists") {
		t.Fatalf("create again: %d %s", code, body)
	}
	if code, body := admin.call("POST", "/api/apply?namespace=team", doc); code != 200 || !strings.Contains(body, `"action":"apply"`) {
		t.Fatalf("apply over it: %d %s", code, body)
	}
	viewer := e.login(viewerToken)
	if code, body := viewer.call("POST", "/api/apply?namespace=team&create=1", strings.Replace(doc, "made", "made2", 1)); code != http.StatusForbidden {
		t.Fatalf("viewer create: %d %s", code, body)
	}
}
