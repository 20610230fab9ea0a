package backend_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/authz/bootstrap"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
)

// logLine is one document as the shipper writes it.
type logLine struct {
	ns, pod, podID, container, stream, level, msg string
	at                                            time.Time
}

// indexLogs writes lines into the server's embedded log store through the
// API server's /logs/_bulk as the admin (as a node agent's shipper does).
func indexLogs(t *testing.T, e *env, lines []logLine) {
	t.Helper()
	var b bytes.Buffer
	for i, l := range lines {
		fmt.Fprintf(&b, `{"create":{"_index":"logs-kubernetes-%s","_id":"%s-%d"}}`+"\n", l.ns, l.pod, i)
		doc := map[string]any{
			"@timestamp": l.at.UTC().Format(time.RFC3339Nano), "message": l.msg, "stream": l.stream,
			"kubernetes": map[string]any{"namespace_name": l.ns, "pod_name": l.pod, "pod_id": l.podID,
				"container_name": l.container, "host": "node-1", "labels": map[string]string{"app": strings.Split(l.pod, "-")[0]}},
		}
		if l.level != "" {
			doc["level"] = l.level
		}
		j, _ := json.Marshal(doc)
		b.Write(j)
		b.WriteByte('\n')
	}
	hc, err := rest.HTTPClientFor(e.ts.Config)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Post(strings.TrimRight(e.ts.Config.Host, "/")+"/logs/_bulk?refresh=true", "application/x-ndjson", &b)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Errors bool `json:"errors"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 200 || out.Errors {
		t.Fatalf("bulk: %d errors=%v %v", resp.StatusCode, out.Errors, err)
	}
}

type searchAnswer struct {
	Total int64 `json:"total"`
	Hits  []struct {
		ID        string `json:"id"`
		Time      int64  `json:"ts"`
		Highlight string `json:"highlight"`
		Source    struct {
			Message    string `json:"message"`
			Level      string `json:"level"`
			Kubernetes struct {
				Namespace string `json:"namespace_name"`
				Pod       string `json:"pod_name"`
				Container string `json:"container_name"`
			} `json:"kubernetes"`
		} `json:"source"`
	} `json:"hits"`
	Interval  int64 `json:"interval"`
	Histogram []struct {
		Key   int64 `json:"key"`
		Count int64 `json:"count"`
	} `json:"histogram"`
	Facets map[string][]struct {
		Value string `json:"value"`
		Count int64  `json:"count"`
	} `json:"facets"`
	Namespaces []string `json:"namespaces"`
	Message    string   `json:"message"`
}

func (u *user) search(t *testing.T, params url.Values) (int, searchAnswer) {
	t.Helper()
	code, body := u.call("GET", "/api/logsearch?"+params.Encode(), "")
	var a searchAnswer
	if err := json.Unmarshal([]byte(body), &a); err != nil {
		t.Fatalf("search answer %d %q: %v", code, body, err)
	}
	return code, a
}

func TestLogSearch(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	// The viewer (view in team) may search the store; dev may not.
	if _, err := e.ts.Client.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "viewer-logs"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: bootstrap.LogsReaderRole},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "viewer"}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now().Add(-10 * time.Minute).Truncate(time.Second)
	var lines []logLine
	for i := range 30 {
		level := "info"
		if i%10 == 3 {
			level = "error"
		}
		at := t0.Add(time.Duration(i) * time.Second)
		lines = append(lines,
			logLine{"team", "web-1", "uid-web-1", "app", "stdout", level, fmt.Sprintf("web request %d served status=%s", i, level), at},
			// Another container of the same pod writes at the same times:
			// context must not mix it in.
			logLine{"team", "web-1", "uid-web-1", "sidecar", "stderr", "", fmt.Sprintf("sidecar tick %d", i), at},
			logLine{"other", "db-0", "uid-db-0", "db", "stdout", level, fmt.Sprintf("db query %d status=%s", i, level), at})
	}
	indexLogs(t, e, lines)
	from := fmt.Sprint(t0.Add(-time.Minute).UnixMilli())
	to := fmt.Sprint(t0.Add(time.Minute).UnixMilli())
	admin := e.login(adminToken)

	t.Run("query, histogram, facets and highlight as admin", func(t *testing.T) {
		code, a := admin.search(t, url.Values{"q": {"status=error OR sidecar"}, "from": {from}, "to": {to}, "histogram": {"1"}, "facets": {"1"}})
		if code != 200 {
			t.Fatalf("search: %d %s", code, a.Message)
		}
		// 3 error lines in each of two namespaces + 30 sidecar lines.
		if a.Total != 36 || len(a.Hits) != 36 {
			t.Fatalf("total %d, %d hits; want 36", a.Total, len(a.Hits))
		}
		for i := 1; i < len(a.Hits); i++ {
			if a.Hits[i].Time > a.Hits[i-1].Time {
				t.Fatalf("hits not newest first at %d", i)
			}
		}
		var sum int64
		for _, b := range a.Histogram {
			sum += b.Count
		}
		if sum != 36 || a.Interval != 1000 || len(a.Histogram) < 100 {
			t.Fatalf("histogram: %d buckets of %d ms summing to %d; want 1 s buckets over 2 min summing to 36", len(a.Histogram), a.Interval, sum)
		}
		counts := map[string]int64{}
		for _, f := range a.Facets["namespace"] {
			counts[f.Value] = f.Count
		}
		if counts["team"] != 33 || counts["other"] != 3 {
			t.Fatalf("namespace facet %v, want team 33, other 3", a.Facets["namespace"])
		}
		var marked bool
		for _, h := range a.Hits {
			if h.Source.Level == "error" {
				marked = strings.Contains(h.Highlight, "\ue000error\ue001")
				if strings.Contains(h.Highlight, "\ue000"+h.Source.Kubernetes.Namespace) {
					t.Fatalf("the namespace filter is highlighted: %q", h.Highlight)
				}
				break
			}
		}
		if !marked {
			t.Fatal("the matched word is not highlighted")
		}
	})

	t.Run("filters narrow", func(t *testing.T) {
		_, a := admin.search(t, url.Values{"from": {from}, "to": {to}, "f": {"level:error", "namespace:team"}})
		if a.Total != 3 {
			t.Fatalf("level:error in team: %d, want 3", a.Total)
		}
		_, a = admin.search(t, url.Values{"from": {from}, "to": {to}, "f": {"container:app", "container:db"}})
		if a.Total != 60 {
			t.Fatalf("container app or db: %d, want 60", a.Total)
		}
		_, a = admin.search(t, url.Values{"from": {from}, "to": {to}, "f": {"label.app:db"}})
		if a.Total != 30 {
			t.Fatalf("label app=db: %d, want 30", a.Total)
		}
	})

	t.Run("a user sees only namespaces where it may get pods/log", func(t *testing.T) {
		viewer := e.login(viewerToken)
		code, a := viewer.search(t, url.Values{"q": {"status=error"}, "from": {from}, "to": {to}, "facets": {"1"}})
		if code != 200 {
			t.Fatalf("viewer search: %d %s", code, a.Message)
		}
		if a.Total != 3 || len(a.Namespaces) != 1 || a.Namespaces[0] != "team" {
			t.Fatalf("viewer: total %d in %v; want 3 in [team]", a.Total, a.Namespaces)
		}
		for _, h := range a.Hits {
			if h.Source.Kubernetes.Namespace != "team" {
				t.Fatalf("viewer got a line of %s", h.Source.Kubernetes.Namespace)
			}
		}
		if code, a := viewer.search(t, url.Values{"from": {from}, "to": {to}, "f": {"namespace:other"}}); code != http.StatusForbidden || !strings.Contains(a.Message, "pods/log") {
			t.Fatalf("viewer asking for namespace other: %d %q, want 403", code, a.Message)
		}
		dev := e.login(devToken)
		if code, a := dev.search(t, url.Values{"from": {from}, "to": {to}}); code != http.StatusForbidden || !strings.Contains(a.Message, "/logs/") {
			t.Fatalf("dev without the logs reader role: %d %q, want the API server's 403", code, a.Message)
		}
	})

	t.Run("bad requests", func(t *testing.T) {
		for _, c := range []struct {
			params url.Values
			want   string
		}{
			{url.Values{"q": {"web AND (status"}, "from": {from}, "to": {to}}, "parse"},
			{url.Values{"from": {"0"}, "to": {to}}, "time range"},
			{url.Values{"from": {to}, "to": {from}}, "before"},
			{url.Values{"size": {"5000"}}, "size"},
			{url.Values{"f": {"message:x"}}, "cannot filter"},
			{url.Values{"from": {"yesterday"}}, "RFC 3339"},
		} {
			code, a := admin.search(t, c.params)
			if code != http.StatusBadRequest || !strings.Contains(a.Message, c.want) {
				t.Errorf("%v: %d %q, want 400 mentioning %q", c.params, code, a.Message, c.want)
			}
		}
	})

	t.Run("tail: lines after a time, oldest first", func(t *testing.T) {
		after := t0.Add(25 * time.Second).UnixMilli()
		_, a := admin.search(t, url.Values{"from": {fmt.Sprint(after)}, "to": {to}, "order": {"asc"}, "after": {fmt.Sprint(after)}, "f": {"container:app"}})
		if len(a.Hits) != 4 || a.Hits[0].Source.Message != "web request 26 served status=info" {
			t.Fatalf("tail after line 25: %d hits, first %+v", len(a.Hits), a.Hits)
		}
	})

	t.Run("context: lines around a hit in the same container", func(t *testing.T) {
		at := t0.Add(15 * time.Second).UnixMilli()
		q := url.Values{"namespace": {"team"}, "podId": {"uid-web-1"}, "container": {"app"}, "ts": {fmt.Sprint(at)}, "n": {"3"}}
		code, body := admin.call("GET", "/api/logsearch/context?"+q.Encode(), "")
		var a searchAnswer
		if err := json.Unmarshal([]byte(body), &a); err != nil || code != 200 {
			t.Fatalf("context: %d %s", code, body)
		}
		var got []string
		for _, h := range a.Hits {
			got = append(got, h.Source.Message)
		}
		want := []string{"12 ", "13 ", "14 ", "15 ", "16 ", "17 ", "18 "}
		if len(got) != len(want) {
			t.Fatalf("context: %q, want lines 12..18 of app", got)
		}
		for i, w := range want {
			if !strings.HasPrefix(got[i], "web request "+w) {
				t.Fatalf("context: %q, want lines 12..18 of app in order", got)
			}
		}
		viewer := e.login(viewerToken)
		q.Set("namespace", "other")
		if code, _ := viewer.call("GET", "/api/logsearch/context?"+q.Encode(), ""); code != http.StatusForbidden {
			t.Fatalf("viewer context in other: %d, want 403", code)
		}
	})
}
