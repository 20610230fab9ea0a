package apiserver

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// allowOnly allows impersonation of the listed "resource/name" pairs.
type allowOnly map[string]bool

func (a allowOnly) Authorize(_ context.Context, _ *UserInfo, info *RequestInfo) (bool, string, error) {
	res := info.Resource
	if info.Subresource != "" {
		res += "/" + info.Subresource
	}
	return info.Verb == "impersonate" && a[res+"/"+info.Name], "", nil
}

func TestImpersonation(t *testing.T) {
	caller := &UserInfo{Name: "bob", Groups: []string{"system:authenticated"}}
	srv := &Server{cfg: Config{Authorizer: allowOnly{
		"users/jane": true, "groups/devs": true, "uids/u-1": true, "userextras/scopes/view": true,
		"serviceaccounts/robot": true,
	}}, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	var got *UserInfo
	var leaked bool
	h := srv.impersonate(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, _ = UserFrom(r.Context())
		leaked = r.Header.Get("Impersonate-User") != ""
	}))
	run := func(hdr map[string][]string) (int, string) {
		got = nil
		req := httptest.NewRequest(http.MethodGet, "/api/v1/pods", nil)
		for k, vs := range hdr {
			for _, v := range vs {
				req.Header.Add(k, v)
			}
		}
		req = req.WithContext(WithUser(req.Context(), caller))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		var st struct{ Message string }
		_ = json.Unmarshal(rec.Body.Bytes(), &st)
		return rec.Code, st.Message
	}

	if code, _ := run(nil); code != http.StatusOK || got != caller {
		t.Fatalf("no headers: %d %+v", code, got)
	}
	code, _ := run(map[string][]string{"Impersonate-User": {"jane"}, "Impersonate-Group": {"devs"}, "Impersonate-Uid": {"u-1"}, "Impersonate-Extra-Scopes": {"view"}})
	if code != http.StatusOK || got.Name != "jane" || got.UID != "u-1" || strings.Join(got.Groups, ",") != "devs,system:authenticated" ||
		strings.Join(got.Extra["scopes"], ",") != "view" || leaked {
		t.Fatalf("allowed impersonation: %d %+v (headers leaked: %v)", code, got, leaked)
	}
	code, _ = run(map[string][]string{"Impersonate-User": {"system:serviceaccount:ns1:robot"}})
	if code != http.StatusOK || strings.Join(got.Groups, ",") != "system:serviceaccounts,system:serviceaccounts:ns1,system:authenticated" {
		t.Fatalf("service account: %d %+v", code, got)
	}

	denied := []struct {
		hdr  map[string][]string
		code int
		msg  string
	}{
		{map[string][]string{"Impersonate-User": {"root"}}, 403,
			`users "root" is forbidden: User "bob" cannot impersonate resource "users" in API group "" at the cluster scope`},
		{map[string][]string{"Impersonate-User": {"jane"}, "Impersonate-Group": {"system:masters"}}, 403,
			`groups "system:masters" is forbidden: User "bob" cannot impersonate resource "groups" in API group "" at the cluster scope`},
		{map[string][]string{"Impersonate-User": {"jane"}, "Impersonate-Extra-Scopes": {"admin"}}, 403,
			`User "bob" cannot impersonate resource "userextras/scopes" in API group "authentication.k8s.io" at the cluster scope`},
		{map[string][]string{"Impersonate-User": {"jane"}, "Impersonate-Uid": {"u-2"}}, 403,
			`User "bob" cannot impersonate resource "uids" in API group "authentication.k8s.io"`},
		{map[string][]string{"Impersonate-User": {"system:serviceaccount:ns1:other"}}, 403,
			`serviceaccounts "other" is forbidden: User "bob" cannot impersonate resource "serviceaccounts" in API group "" in the namespace "ns1"`},
		{map[string][]string{"Impersonate-Group": {"devs"}}, 400, "requested groups without impersonating a user"},
		{map[string][]string{"Impersonate-User": {"system:serviceaccount:bad"}}, 400, "invalid service account username"},
	}
	for _, tc := range denied {
		code, msg := run(tc.hdr)
		if code != tc.code || !strings.Contains(msg, tc.msg) || got != nil {
			t.Errorf("%v: %d %q (user %+v), want %d %q", tc.hdr, code, msg, got, tc.code, tc.msg)
		}
	}
}
