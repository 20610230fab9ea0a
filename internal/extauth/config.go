// Package extauth is delegated authentication and authorization for
// extension API servers (servers the API server reaches through API
// aggregation), following upstream's contract (k8s.io/apiserver's
// DelegatingAuthenticationOptions and DelegatingAuthorizationOptions):
//
//   - The client CA and the front proxy's (request header) CA, allowed
//     names and headers come from the ConfigMap
//     kube-system/extension-apiserver-authentication, watched so that a
//     rotated CA applies without a restart.
//   - Authentication, in upstream's order: a client certificate that
//     verifies against the request header CA with an allowed common name
//     names the user in the request's headers (X-Remote-User,
//     X-Remote-Group, X-Remote-Extra-*, as the ConfigMap says); else a
//     client certificate that verifies against the client CA names the
//     user (CN) and groups (O); else a bearer token is checked with a
//     TokenReview. Anything else is 401. Authenticated users get the
//     group system:authenticated.
//   - Authorization: a SubjectAccessReview with the request's attributes
//     (upstream's RequestInfoFactory: resource attributes for /api and
//     /apis resource paths, non-resource attributes otherwise); a denial
//     is 403 with upstream's message.
//
// TokenReview answers are cached 2 minutes (10 seconds when the token was
// rejected) and SubjectAccessReview answers 5 minutes (30 seconds when
// denied). The serving TLS config must request, not require, client
// certificates (tls.RequestClientCert, see ServerTLSConfig): chains are
// verified here, against CAs that may change at runtime.
package extauth

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// The ConfigMap the API server publishes for extension API servers.
const (
	ConfigMapNamespace = "kube-system"
	ConfigMapName      = "extension-apiserver-authentication"
)

// The ConfigMap's keys (upstream's).
const (
	KeyClientCA            = "client-ca-file"
	KeyRequestHeaderCA     = "requestheader-client-ca-file"
	KeyAllowedNames        = "requestheader-allowed-names"
	KeyUsernameHeaders     = "requestheader-username-headers"
	KeyUIDHeaders          = "requestheader-uid-headers"
	KeyGroupHeaders        = "requestheader-group-headers"
	KeyExtraHeaderPrefixes = "requestheader-extra-headers-prefix"
)

// Config is what the ConfigMap says; the zero value trusts no
// certificate (only bearer tokens authenticate).
type Config struct {
	// ClientCA verifies client certificates that name their user (CN)
	// and groups (O); nil = none.
	ClientCA *x509.CertPool
	// RequestHeaderCA verifies the front proxy's client certificate;
	// nil = request headers are never trusted.
	RequestHeaderCA *x509.CertPool
	// AllowedNames are the common names a front proxy certificate may
	// have; empty = any.
	AllowedNames []string
	// The headers carrying the user's name, UID and groups, and the
	// prefixes of headers carrying extra attributes.
	UsernameHeaders, UIDHeaders, GroupHeaders, ExtraHeaderPrefixes []string
}

// ParseConfigMap reads the ConfigMap's data. Missing keys are empty; a
// CA key that is set must hold at least one PEM certificate, and list
// keys must be JSON arrays of non-empty strings.
func ParseConfigMap(data map[string]string) (*Config, error) {
	c := &Config{}
	var err error
	if c.ClientCA, err = parsePool(data[KeyClientCA]); err != nil {
		return nil, fmt.Errorf("%s: %w", KeyClientCA, err)
	}
	if c.RequestHeaderCA, err = parsePool(data[KeyRequestHeaderCA]); err != nil {
		return nil, fmt.Errorf("%s: %w", KeyRequestHeaderCA, err)
	}
	for _, l := range []struct {
		key     string
		out     *[]string
		headers bool
	}{
		{KeyAllowedNames, &c.AllowedNames, false},
		{KeyUsernameHeaders, &c.UsernameHeaders, true},
		{KeyUIDHeaders, &c.UIDHeaders, true},
		{KeyGroupHeaders, &c.GroupHeaders, true},
		{KeyExtraHeaderPrefixes, &c.ExtraHeaderPrefixes, true},
	} {
		v, err := ParseStringList(data[l.key])
		if err == nil && l.headers {
			v, err = trimHeaders(v)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", l.key, err)
		}
		*l.out = v
	}
	return c, nil
}

// ParseStringList parses a ConfigMap list value: a JSON array of strings
// ("" = empty), as upstream stores them.
func ParseStringList(s string) ([]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []string
	if err := json.Unmarshal([]byte(s), &out); err != nil {
		return nil, fmt.Errorf("not a JSON array of strings: %w", err)
	}
	return out, nil
}

// trimHeaders trims header names and rejects empty ones, as upstream.
func trimHeaders(names []string) ([]string, error) {
	if len(names) == 0 {
		return nil, nil
	}
	out := make([]string, 0, len(names))
	for _, n := range names {
		t := strings.TrimSpace(n)
		if t == "" {
			return nil, fmt.Errorf("empty header %q", n)
		}
		out = append(out, t)
	}
	return out, nil
}

func parsePool(pemData string) (*x509.CertPool, error) {
	if strings.TrimSpace(pemData) == "" {
		return nil, nil
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM([]byte(pemData)) {
		return nil, errors.New("no PEM certificate")
	}
	return p, nil
}
