package apiserver

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// Impersonation headers, as upstream.
const (
	headerImpersonateUser   = "Impersonate-User"
	headerImpersonateGroup  = "Impersonate-Group"
	headerImpersonateUID    = "Impersonate-Uid"
	headerImpersonateExtra  = "Impersonate-Extra-"
	saUserPrefix            = "system:serviceaccount:"
	groupAuthenticated      = "system:authenticated"
	groupUnauthenticated    = "system:unauthenticated"
	userAnonymous           = "system:anonymous"
	authenticationGroupName = "authentication.k8s.io"
)

// impersonate applies Impersonate-* headers after authentication: each
// requested identity part is authorized as verb "impersonate" on users,
// groups, serviceaccounts, uids or userextras/<key>, and the request then
// runs as the impersonated user.
func (s *Server) impersonate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		checks, target, err := impersonationRequests(r.Header)
		if err != nil {
			writeStatus(w, statusFor(err))
			return
		}
		if target == nil {
			next.ServeHTTP(w, r)
			return
		}
		ctx := r.Context()
		caller, _ := UserFrom(ctx)
		if s.cfg.Authorizer != nil {
			for _, info := range checks {
				allowed, reason, err := s.cfg.Authorizer.Authorize(ctx, caller, info)
				if err != nil {
					s.log.Warn("impersonation authorization error", "resource", info.Resource, "err", err)
				}
				if !allowed {
					writeStatus(w, statusFor(forbidden(caller, info, reason)))
					return
				}
			}
		}
		for h := range r.Header {
			if h == headerImpersonateUser || h == headerImpersonateGroup || h == headerImpersonateUID || strings.HasPrefix(h, headerImpersonateExtra) {
				r.Header.Del(h)
			}
		}
		next.ServeHTTP(w, r.WithContext(WithUser(ctx, target)))
	})
}

// impersonationRequests parses the headers into the authorization checks
// they need and the user they ask for (nil when there is none).
func impersonationRequests(h http.Header) ([]*RequestInfo, *UserInfo, error) {
	name := h.Get(headerImpersonateUser)
	groups := h.Values(headerImpersonateGroup)
	uids := h.Values(headerImpersonateUID)
	extra := map[string][]string{}
	for k, vs := range h {
		if !strings.HasPrefix(k, headerImpersonateExtra) {
			continue
		}
		key := strings.ToLower(k[len(headerImpersonateExtra):])
		if unescaped, err := url.PathUnescape(key); err == nil {
			key = unescaped
		}
		extra[key] = append(extra[key], vs...)
	}
	if name == "" {
		if len(groups) > 0 || len(uids) > 0 || len(extra) > 0 {
			var asked []string
			if len(groups) > 0 {
				asked = append(asked, "groups")
			}
			if len(uids) > 0 {
				asked = append(asked, "uid")
			}
			if len(extra) > 0 {
				asked = append(asked, "user-extra")
			}
			return nil, nil, apierrors.NewBadRequest(fmt.Sprintf("requested %s without impersonating a user", strings.Join(asked, ", ")))
		}
		return nil, nil, nil
	}
	if len(uids) > 1 {
		return nil, nil, apierrors.NewBadRequest("only one Impersonate-Uid may be requested")
	}
	u := &UserInfo{Name: name}
	var checks []*RequestInfo
	check := func(group, resource, sub, ns, name string) {
		checks = append(checks, &RequestInfo{IsResourceRequest: true, Verb: "impersonate", APIGroup: group, APIVersion: "v1",
			Resource: resource, Subresource: sub, Namespace: ns, Name: name})
	}
	if rest, ok := strings.CutPrefix(name, saUserPrefix); ok {
		ns, sa, found := strings.Cut(rest, ":")
		if !found || ns == "" || sa == "" || strings.Contains(sa, ":") {
			return nil, nil, apierrors.NewBadRequest(fmt.Sprintf("invalid service account username %q", name))
		}
		check("", "serviceaccounts", "", ns, sa)
		if len(groups) == 0 {
			u.Groups = []string{"system:serviceaccounts", "system:serviceaccounts:" + ns}
		}
	} else {
		// Users and groups are core-group resources here, as upstream.
		check("", "users", "", "", name)
	}
	for _, g := range groups {
		check("", "groups", "", "", g)
		u.Groups = append(u.Groups, g)
	}
	for key, vs := range extra {
		for _, v := range vs {
			check(authenticationGroupName, "userextras", key, "", v)
		}
	}
	if len(extra) > 0 {
		u.Extra = extra
	}
	if len(uids) == 1 {
		check(authenticationGroupName, "uids", "", "", uids[0])
		u.UID = uids[0]
	}
	want := groupAuthenticated
	if name == userAnonymous {
		want = groupUnauthenticated
	}
	has := false
	for _, g := range u.Groups {
		has = has || g == want
	}
	if !has {
		u.Groups = append(u.Groups, want)
	}
	return checks, u, nil
}
