package backend

import (
	"net/http"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func obj(ns, name string, created time.Time, labels map[string]string, phase string) *unstructured.Unstructured {
	o := &unstructured.Unstructured{Object: map[string]any{"status": map[string]any{"phase": phase}}}
	o.SetNamespace(ns)
	o.SetName(name)
	o.SetLabels(labels)
	o.SetCreationTimestamp(metav1.NewTime(created))
	return o
}

func keys(os []*unstructured.Unstructured) string {
	var k []string
	for _, o := range os {
		k = append(k, objectKey(o))
	}
	return strings.Join(k, ",")
}

func TestQuery(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	objs := []*unstructured.Unstructured{
		obj("b", "web-1", t0.Add(3*time.Hour), map[string]string{"app": "web"}, "Running"),
		obj("a", "web-2", t0.Add(1*time.Hour), map[string]string{"app": "web"}, "Pending"),
		obj("a", "db-1", t0.Add(2*time.Hour), map[string]string{"app": "db"}, "Running"),
		obj("c", "web-3", t0, map[string]string{"app": "web", "canary": "yes"}, "Running"),
	}
	objs[0].SetOwnerReferences([]metav1.OwnerReference{{Kind: "ReplicaSet", Name: "web-x", UID: "uid-web"}})
	objs[3].SetOwnerReferences([]metav1.OwnerReference{{Kind: "Node", Name: "n1", UID: "uid-n1"}, {Kind: "ReplicaSet", Name: "web-x", UID: "uid-web"}})
	for _, tc := range []struct {
		name  string
		f     Filter
		s     Sort
		p     Page
		want  string
		total int
	}{
		{"default: namespace, name", Filter{}, Sort{}, Page{}, "a/db-1,a/web-2,b/web-1,c/web-3", 4},
		{"by name", Filter{}, Sort{By: "name"}, Page{}, "a/db-1,b/web-1,a/web-2,c/web-3", 4},
		{"age newest first", Filter{}, Sort{By: "age"}, Page{}, "b/web-1,a/db-1,a/web-2,c/web-3", 4},
		{"age desc", Filter{}, Sort{By: "age", Desc: true}, Page{}, "c/web-3,a/web-2,a/db-1,b/web-1", 4},
		{"text", Filter{Text: "A/WEB"}, Sort{}, Page{}, "a/web-2", 1},
		{"labels", Filter{Labels: "app=web,!canary"}, Sort{}, Page{}, "a/web-2,b/web-1", 2},
		{"fields", Filter{Fields: map[string]string{"status.phase": "Running"}}, Sort{By: "name", Desc: true}, Page{}, "c/web-3,b/web-1,a/db-1", 3},
		{"owner", Filter{Owner: "uid-web"}, Sort{}, Page{}, "b/web-1,c/web-3", 2},
		{"owner none", Filter{Owner: "uid-other"}, Sort{}, Page{}, "", 0},
		{"path sort", Filter{}, Sort{By: "status.phase"}, Page{}, "a/web-2,a/db-1,b/web-1,c/web-3", 4},
		{"page", Filter{}, Sort{}, Page{Offset: 1, Limit: 2}, "a/web-2,b/web-1", 4},
		{"page past the end", Filter{}, Sort{}, Page{Offset: 10, Limit: 2}, "", 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q, err := compileQuery(tc.f, tc.s, tc.p)
			if err != nil {
				t.Fatal(err)
			}
			page, total := q.run(objs)
			if keys(page) != tc.want || total != tc.total {
				t.Fatalf("got %s (%d), want %s (%d)", keys(page), total, tc.want, tc.total)
			}
		})
	}
	if _, err := compileQuery(Filter{Labels: "a in (("}, Sort{}, Page{}); err == nil {
		t.Fatal("a broken label selector compiled")
	}
	q, _ := compileQuery(Filter{}, Sort{}, Page{Limit: 1 << 20})
	if q.page.Limit != MaxPageSize {
		t.Fatalf("page limit %d, want it capped at %d", q.page.Limit, MaxPageSize)
	}
}

func TestSessionExpiry(t *testing.T) {
	s := newSessionStore(time.Hour)
	live := &session{id: "live", expires: time.Now().Add(time.Hour)}
	old := &session{id: "old", expires: time.Now().Add(-time.Second)}
	s.add(old)
	s.add(live)
	req := func(id string) *http.Request { return sessionRequest(id) }
	if s.get(req("live")) != live {
		t.Fatal("live session not found")
	}
	if s.get(req("old")) != nil {
		t.Fatal("an expired session was accepted")
	}
	if s.get(req("forged")) != nil || s.get(&http.Request{Header: http.Header{}}) != nil {
		t.Fatal("an unknown or missing cookie was accepted")
	}
	if s.len() != 1 {
		t.Fatalf("%d sessions kept, want the expired one dropped", s.len())
	}
}
