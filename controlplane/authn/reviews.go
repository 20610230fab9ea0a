package authn

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/go-chi/chi/v5"
	"github.com/skiffhq/skiff/controlplane/apiserver"
	"github.com/skiffhq/skiff/controlplane/apiserver/registry"
	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
)

// RegisterReviews adds the virtual authentication.k8s.io/v1 resources:
// TokenReview (is this token valid, and whose is it) and SelfSubjectReview
// (who am I, for `kubectl auth whoami`).
func RegisterReviews(reg *registry.Registry, tokens *Bearer) {
	reg.Add(&registry.Resource{
		Group: "authentication.k8s.io", Version: "v1", Kind: "TokenReview", Plural: "tokenreviews",
		Verbs: []string{"create"},
		New:   func() runtime.Object { return &authenticationv1.TokenReview{} },
		Create: func(ctx context.Context, _ string, obj runtime.Object) (runtime.Object, error) {
			return tokenReview(ctx, tokens, obj.(*authenticationv1.TokenReview))
		},
	})
	reg.Add(&registry.Resource{
		Group: "authentication.k8s.io", Version: "v1", Kind: "SelfSubjectReview", Plural: "selfsubjectreviews",
		Verbs: []string{"create"},
		New:   func() runtime.Object { return &authenticationv1.SelfSubjectReview{} },
		Create: func(ctx context.Context, _ string, obj runtime.Object) (runtime.Object, error) {
			u, ok := apiserver.UserFrom(ctx)
			if !ok || u == nil {
				return nil, apierrors.NewBadRequest("no user info present in request")
			}
			out := obj.(*authenticationv1.SelfSubjectReview)
			out.Status.UserInfo = userInfoV1(u)
			return out, nil
		},
	})
}

func tokenReview(ctx context.Context, tokens *Bearer, tr *authenticationv1.TokenReview) (*authenticationv1.TokenReview, error) {
	if tr.Spec.Token == "" {
		return nil, apierrors.NewBadRequest("token is required for TokenReview in authentication")
	}
	u, auds, ok, err := tokens.AuthenticateToken(ctx, tr.Spec.Token, tr.Spec.Audiences)
	tr.Status = authenticationv1.TokenReviewStatus{}
	switch {
	case ok:
		tr.Status.Authenticated = true
		tr.Status.User = userInfoV1(u)
		tr.Status.Audiences = auds
	case err != nil:
		tr.Status.Error = err.Error()
	}
	return tr, nil
}

func userInfoV1(u *apiserver.UserInfo) authenticationv1.UserInfo {
	out := authenticationv1.UserInfo{Username: u.Name, UID: u.UID, Groups: u.Groups}
	if len(u.Extra) > 0 {
		out.Extra = make(map[string]authenticationv1.ExtraValue, len(u.Extra))
		for k, v := range u.Extra {
			out.Extra[k] = v
		}
	}
	return out
}

// Paths of service account issuer discovery, as upstream.
const (
	OpenIDConfigPath = "/.well-known/openid-configuration"
	JWKSPath         = "/openid/v1/jwks"
)

// DiscoveryRoutes serves OpenID Connect discovery for the service account
// issuer (the configuration document and the key set), for authenticated
// callers, as upstream's default.
func (t *ServiceAccountTokens) DiscoveryRoutes(jwksURI string) func(chi.Router) {
	config, _ := json.Marshal(map[string]any{
		"issuer":                                t.Issuer,
		"jwks_uri":                              jwksURI,
		"response_types_supported":              []string{"id_token"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
	})
	jwks, _ := json.Marshal(map[string]any{"keys": []JWK{t.Key.JWK()}})
	serve := func(body []byte, contentType string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", contentType)
			w.Header().Set("Cache-Control", "public, max-age=3600")
			_, _ = w.Write(body)
		}
	}
	return func(r chi.Router) {
		r.Get(OpenIDConfigPath, serve(config, "application/json"))
		r.Get(JWKSPath, serve(jwks, "application/jwk-set+json"))
	}
}
