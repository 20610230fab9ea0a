package authz

import (
	"context"
	"strings"

	"github.com/skiffhq/skiff/controlplane/apiserver"
	"github.com/skiffhq/skiff/controlplane/authz/rbac"
)

// Decision is one authorizer's answer, as upstream's.
type Decision int

// Decisions: NoOpinion lets the next authorizer decide.
const (
	NoOpinion Decision = iota
	Allow
	Deny
)

// SystemMasters is upstream's superuser group: always allowed.
const SystemMasters = "system:masters"

// Authorizer is one step of the chain.
type Authorizer interface {
	Decide(ctx context.Context, u *apiserver.UserInfo, info *apiserver.RequestInfo) (Decision, string, error)
}

// Chain is the server's authorizer: system:masters first, then each
// authorizer in order until one allows or denies. It implements
// apiserver.Authorizer.
type Chain []Authorizer

var _ apiserver.Authorizer = Chain(nil)

// Authorize implements apiserver.Authorizer. The reasons of the
// authorizers that had no opinion are joined as upstream's union does.
func (c Chain) Authorize(ctx context.Context, u *apiserver.UserInfo, info *apiserver.RequestInfo) (bool, string, error) {
	if u == nil {
		u = &apiserver.UserInfo{Name: "system:anonymous", Groups: []string{"system:unauthenticated"}}
	}
	for _, g := range u.Groups {
		if g == SystemMasters {
			return true, "", nil
		}
	}
	var reasons []string
	var firstErr error
	for _, a := range c {
		d, reason, err := a.Decide(ctx, u, info)
		if err != nil && firstErr == nil {
			firstErr = err
		}
		switch d {
		case Allow:
			return true, reason, nil
		case Deny:
			return false, reason, err
		}
		if reason != "" {
			reasons = append(reasons, reason)
		}
	}
	return false, strings.Join(reasons, "\n"), firstErr
}

// RBAC adapts an rbac.Index to the chain: it allows or has no opinion.
type RBAC struct{ Index *rbac.Index }

// Decide implements Authorizer.
func (a RBAC) Decide(_ context.Context, u *apiserver.UserInfo, info *apiserver.RequestInfo) (Decision, string, error) {
	ok, reason := a.Index.Authorize(Request(u, info))
	if ok {
		return Allow, reason, nil
	}
	return NoOpinion, reason, nil
}

// Request converts the API server's view of a request to RBAC's.
func Request(u *apiserver.UserInfo, info *apiserver.RequestInfo) *rbac.Request {
	return &rbac.Request{
		User:            u.Name,
		Groups:          u.Groups,
		ResourceRequest: info.IsResourceRequest,
		Verb:            info.Verb,
		APIGroup:        info.APIGroup,
		Namespace:       info.Namespace,
		Resource:        info.Resource,
		Subresource:     info.Subresource,
		Name:            info.Name,
		Path:            info.Path,
	}
}
