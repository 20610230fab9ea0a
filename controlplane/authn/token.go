package authn

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/skiffhq/skiff/controlplane/apiserver"
)

// TokenAuthenticator authenticates a bearer token for the requested
// audiences. It returns ok=false when the token is not one it issues, and
// an error when it is one but is invalid; errors never contain the token.
// matched is the subset of audiences the token is valid for; an
// audience-agnostic authenticator (static tokens) returns nil and the
// token counts as valid for the API audiences.
type TokenAuthenticator interface {
	AuthenticateToken(ctx context.Context, token string, audiences []string) (u *apiserver.UserInfo, matched []string, ok bool, err error)
}

// errInvalidToken answers a bearer token no authenticator recognised.
var errInvalidToken = errors.New("invalid bearer token")

// Bearer authenticates "Authorization: Bearer <token>" with each token
// authenticator in turn, as upstream's bearer token authenticator.
type Bearer struct {
	Tokens []TokenAuthenticator
	// APIAudiences are the audiences API requests accept (the issuer by
	// default, as upstream's --api-audiences).
	APIAudiences []string
}

var _ apiserver.Authenticator = (*Bearer)(nil)

// AuthenticateRequest implements apiserver.Authenticator. On success the
// Authorization header is removed so the token goes no further.
func (b *Bearer) AuthenticateRequest(r *http.Request) (*apiserver.UserInfo, bool, error) {
	token, ok := bearerToken(r)
	if !ok {
		return nil, false, nil
	}
	u, _, ok, err := b.AuthenticateToken(r.Context(), token, nil)
	if ok {
		r.Header.Del("Authorization")
	}
	return u, ok, err
}

// AuthenticateToken tries each token authenticator for audiences (nil =
// the API audiences); a token none of them recognises is an error
// (invalid bearer token). It returns the audiences the token is valid for.
func (b *Bearer) AuthenticateToken(ctx context.Context, token string, audiences []string) (*apiserver.UserInfo, []string, bool, error) {
	if len(audiences) == 0 {
		audiences = b.APIAudiences
	}
	var errs []error
	for _, a := range b.Tokens {
		u, matched, ok, err := a.AuthenticateToken(ctx, token, audiences)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !ok {
			continue
		}
		if matched == nil {
			// Audience-agnostic: valid for the API audiences only.
			if matched = intersect(audiences, b.APIAudiences); len(matched) == 0 {
				continue
			}
		}
		return u, matched, true, nil
	}
	if len(errs) == 0 {
		return nil, nil, false, errInvalidToken
	}
	return nil, nil, false, errors.Join(errs...)
}

// bearerToken extracts the token of an Authorization: Bearer header.
func bearerToken(r *http.Request) (string, bool) {
	auth := strings.TrimSpace(r.Header.Get("Authorization"))
	if auth == "" {
		return "", false
	}
	scheme, token, ok := strings.Cut(auth, " ")
	if !ok || !strings.EqualFold(scheme, "bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	if token == "" || strings.Contains(token, " ") {
		return "", false
	}
	return token, true
}

// withAuthenticated returns groups with system:authenticated added once.
func withAuthenticated(groups []string) []string {
	for _, g := range groups {
		if g == GroupAuthenticated {
			return groups
		}
	}
	return append(groups, GroupAuthenticated)
}
