package backend

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/skiffhq/skiff/controlplane/authn"
	authnv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Client-certificate login. With Options.ClientCAs set, the HTTPS
// listener asks for (but does not require) a client certificate, as the
// API server does: the handshake does not verify it (tls.RequestClientCert,
// so a stale certificate the browser offers does not lock the user out of
// token login, and a refused one gets a message instead of a TLS alert);
// the API server's own x509 authenticator (controlplane/authn) verifies
// it against the cluster CA and maps it to a user (CN) and groups (O).
// The session then acts as that user through impersonation by the
// dashboard's own identity (Options.CacheConfig), so every request is
// authorized as the certificate's user and groups. The session ends at
// the certificate's NotAfter at the latest.

// certInfo answers GET /api/login/certificate: whether certificate login
// is on and which user the connection's certificate names.
type certInfo struct {
	// Enabled: the dashboard accepts client certificates.
	Enabled bool `json:"enabled"`
	// User and Groups are the verified certificate's user (empty when the
	// connection presented no usable certificate).
	User     string     `json:"user,omitempty"`
	Groups   []string   `json:"groups,omitempty"`
	NotAfter *time.Time `json:"notAfter,omitempty"`
	// Error is why a presented certificate cannot log in.
	Error string `json:"error,omitempty"`
}

// certUser is the user of r's verified client certificate.
type certUser struct {
	name     string
	groups   []string
	notAfter time.Time
}

// errNoCertificate: the connection presented no client certificate.
var errNoCertificate = errors.New("this connection presented no client certificate: choose one in the browser (reload the page if it was not offered) or log in with a token")

// certificateUser verifies r's client certificate with the API server's
// x509 authenticator; the error explains a refusal to the user.
func (s *Server) certificateUser(r *http.Request) (*certUser, error) {
	if s.certAuth == nil {
		return nil, errors.New("this dashboard does not accept client certificates")
	}
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return nil, errNoCertificate
	}
	cert := r.TLS.PeerCertificates[0]
	info, ok, err := s.certAuth.AuthenticateRequest(r)
	if err != nil {
		return nil, certProblem(cert, err)
	}
	if !ok || info.Name == "" || info.Name == "system:anonymous" {
		return nil, errors.New("the client certificate names no user")
	}
	return &certUser{name: info.Name, groups: info.Groups, notAfter: cert.NotAfter}, nil
}

// certProblem says why cert was refused.
func certProblem(cert *x509.Certificate, err error) error {
	var inv x509.CertificateInvalidError
	var unknown x509.UnknownAuthorityError
	now := time.Now()
	switch {
	case errors.As(err, &inv) && inv.Reason == x509.Expired && now.Before(cert.NotBefore):
		return fmt.Errorf("the client certificate %q is not valid before %s: %w", cert.Subject.CommonName, cert.NotBefore.UTC().Format(time.RFC3339), err)
	case errors.As(err, &inv) && inv.Reason == x509.Expired:
		return fmt.Errorf("the client certificate %q expired at %s: %w", cert.Subject.CommonName, cert.NotAfter.UTC().Format(time.RFC3339), err)
	case errors.As(err, &unknown):
		return fmt.Errorf("the client certificate %q is not signed by this cluster's client CA (issuer %q): %w", cert.Subject.CommonName, cert.Issuer.CommonName, err)
	case errors.As(err, &inv) && inv.Reason == x509.IncompatibleUsage:
		return fmt.Errorf("the client certificate %q is not for client authentication: %w", cert.Subject.CommonName, err)
	default:
		return fmt.Errorf("the client certificate %q was refused: %w", cert.Subject.CommonName, err)
	}
}

// certificateInfo serves GET /api/login/certificate.
func (s *Server) certificateInfo(w http.ResponseWriter, r *http.Request) {
	info := certInfo{Enabled: s.certAuth != nil}
	if info.Enabled {
		u, err := s.certificateUser(r)
		switch {
		case errors.Is(err, errNoCertificate):
		case err != nil:
			info.Error = err.Error()
		default:
			na := u.notAfter.UTC()
			info.User, info.Groups, info.NotAfter = u.name, u.groups, &na
		}
	}
	writeJSON(w, http.StatusOK, info)
}

// impersonatedGroups are the groups to impersonate: the API server adds
// system:authenticated itself.
func impersonatedGroups(groups []string) []string {
	return slices.DeleteFunc(slices.Clone(groups), func(g string) bool { return g == authn.GroupAuthenticated })
}

// certificateLogin logs in the user of the connection's verified client
// certificate; login has checked the Origin and the rate limit.
func (s *Server) certificateLogin(w http.ResponseWriter, r *http.Request) {
	u, err := s.certificateUser(r)
	if err != nil {
		s.log.Info("dashboard certificate login refused", "ip", clientIP(r), "err", err)
		code := http.StatusUnauthorized
		if s.certAuth == nil {
			code = http.StatusBadRequest
		}
		writeError(w, code, "certificate login refused: "+err.Error())
		return
	}
	uc := userConfig(s.opts.CacheConfig)
	uc.Impersonate = rest.ImpersonationConfig{UserName: u.name, Groups: impersonatedGroups(u.groups)}
	cs, err := kubernetes.NewForConfig(uc)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "client: "+err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 15*time.Second)
	defer cancel()
	// The API server confirms the impersonated identity (and that the
	// dashboard may impersonate it).
	rev, err := cs.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authnv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		s.log.Warn("dashboard certificate login failed", "user", u.name, "err", err)
		if apierrors.IsForbidden(err) {
			writeError(w, http.StatusForbidden, fmt.Sprintf("certificate login refused: the dashboard may not act as %q: %s", u.name, apiMessage(err)))
			return
		}
		writeAPIError(w, fmt.Errorf("certificate login: %w", err))
		return
	}
	if got := rev.Status.UserInfo.Username; got != u.name {
		s.log.Warn("dashboard certificate login: the API server names another user", "want", u.name, "got", got)
		writeError(w, http.StatusBadGateway, fmt.Sprintf("certificate login: the API server named %q, not %q", got, u.name))
		return
	}
	expires := time.Now().Add(s.opts.SessionTTL)
	if u.notAfter.Before(expires) {
		expires = u.notAfter
	}
	sess, err := s.newSession(uc, cs, u.name, u.groups, expires)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "client: "+err.Error())
		return
	}
	sess.cert = true
	s.startSession(w, sess)
	s.log.Info("dashboard login", "user", sess.user, "method", "certificate", "expires", sess.expires)
	writeJSON(w, http.StatusOK, sessionInfo{User: sess.user, Groups: sess.groups, CSRF: sess.csrf})
}

// apiMessage is an API error's message.
func apiMessage(err error) string {
	var st apierrors.APIStatus
	if errors.As(err, &st) {
		return st.Status().Message
	}
	return err.Error()
}
