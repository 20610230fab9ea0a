package server

import (
	"fmt"

	"github.com/skiffhq/skiff/controlplane/apiserver"
	"github.com/skiffhq/skiff/controlplane/apiserver/registry"
	"github.com/skiffhq/skiff/controlplane/authn"
)

// newAuthenticator builds the request authenticator (client certificates,
// static tokens, service account tokens), registers TokenReview and
// SelfSubjectReview, and returns what to install on the API server once it
// exists (the TokenRequest subresource and issuer discovery).
func (s *Server) newAuthenticator(tlsDir string, reg *registry.Registry) (apiserver.Authenticator, func(*apiserver.Server), error) {
	key, err := authn.LoadOrCreateSigningKey(tlsDir)
	if err != nil {
		return nil, nil, fmt.Errorf("service account signing key: %w", err)
	}
	issuer := s.cfg.ServiceAccountIssuer
	if issuer == "" {
		issuer = authn.DefaultIssuer
	}
	audiences := []string{issuer}
	sa := &authn.ServiceAccountTokens{
		Key:     key,
		Issuer:  issuer,
		Objects: &authn.StorageObjects{Registry: reg, Cache: s.cache, Store: s.store},
	}
	var tokens []authn.TokenAuthenticator
	if s.cfg.TokenAuthFile != "" {
		tf, err := authn.LoadTokenFile(s.cfg.TokenAuthFile)
		if err != nil {
			return nil, nil, err
		}
		s.log.Info("static token file loaded", "path", s.cfg.TokenAuthFile, "tokens", tf.Len())
		tokens = append(tokens, tf)
	}
	tokens = append(tokens, &authn.BootstrapTokens{Cache: s.cache, Store: s.store})
	tokens = append(tokens, sa)
	bearer := &authn.Bearer{Tokens: tokens, APIAudiences: audiences}
	authn.RegisterReviews(reg, bearer)
	install := func(api *apiserver.Server) {
		api.HandleSubresource("", "serviceaccounts", "token", sa.TokenRequestHandler(audiences))
		api.HandleExtra(sa.DiscoveryRoutes(s.url + authn.JWKSPath))
	}
	return authn.Union{&authn.X509{Roots: s.ca.Pool()}, bearer}, install, nil
}
