package authn_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	rbacv1 "k8s.io/api/rbac/v1"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/authn"
	"github.com/skiffhq/skiff/controlplane/pki"
	"github.com/skiffhq/skiff/internal/testserver"
	"github.com/skiffhq/skiff/server"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// syncBuffer collects the server's log lines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

const (
	aliceToken = "alice-static-token-0123456789"
	bobToken   = "bob-static-token-9876543210"
)

type env struct {
	*testserver.Server
	logs *syncBuffer
}

// start runs a server with a token file (alice in devs and ops, bob in no
// group) and debug logs captured.
func start(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "tokens.csv")
	data := aliceToken + `,alice,uid-alice,"devs,ops"` + "\n" + bobToken + ",bob,uid-bob\n"
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	s := testserver.Start(t, func(c *server.Config) {
		c.TokenAuthFile = path
		c.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	return &env{Server: s, logs: logs}
}

// anonConfig is the server's address and CA, without credentials.
func (e *env) anonConfig() *rest.Config {
	return &rest.Config{Host: e.Config.Host, TLSClientConfig: rest.TLSClientConfig{CAData: e.Config.CAData}, QPS: -1}
}

func (e *env) tokenClient(t *testing.T, token string) kubernetes.Interface {
	t.Helper()
	c := e.anonConfig()
	c.BearerToken = token
	return kubernetes.NewForConfigOrDie(c)
}

func (e *env) certClient(t *testing.T, certPEM, keyPEM []byte) kubernetes.Interface {
	t.Helper()
	c := e.anonConfig()
	c.CertData, c.KeyData = certPEM, keyPEM
	return kubernetes.NewForConfigOrDie(c)
}

func whoami(c kubernetes.Interface) (*authenticationv1.UserInfo, error) {
	r, err := c.AuthenticationV1().SelfSubjectReviews().Create(context.Background(), &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		return nil, err
	}
	return &r.Status.UserInfo, nil
}

func wantUnauthorized(t *testing.T, what string, c kubernetes.Interface) {
	t.Helper()
	_, err := c.CoreV1().Namespaces().List(context.Background(), metav1.ListOptions{})
	if !apierrors.IsUnauthorized(err) {
		t.Fatalf("%s: want 401 Unauthorized, got %v", what, err)
	}
}

func loadCA(t *testing.T, e *env) *pki.CA {
	t.Helper()
	ca, err := pki.LoadOrCreateCA(filepath.Join(e.DataDir, "tls"), "server-ca", "unused")
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func TestX509(t *testing.T) {
	e := start(t)
	ca := loadCA(t, e)

	t.Run("valid", func(t *testing.T) {
		cert, key, err := ca.Issue("carol", []string{"team-a", "team-b"}, nil, nil, false, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		u, err := whoami(e.certClient(t, cert, key))
		if err != nil {
			t.Fatal(err)
		}
		if u.Username != "carol" || strings.Join(u.Groups, ",") != "team-a,team-b,system:authenticated" {
			t.Fatalf("user = %+v", u)
		}
	})
	t.Run("expired", func(t *testing.T) {
		cert, key, err := ca.Issue("carol", nil, nil, nil, false, -30*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		wantUnauthorized(t, "expired certificate", e.certClient(t, cert, key))
	})
	t.Run("wrong CA", func(t *testing.T) {
		other, err := pki.LoadOrCreateCA(t.TempDir(), "other-ca", "other-ca")
		if err != nil {
			t.Fatal(err)
		}
		cert, key, err := other.Issue("system:admin", []string{"system:masters"}, nil, nil, false, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		wantUnauthorized(t, "certificate of another CA", e.certClient(t, cert, key))
	})
	t.Run("tampered", func(t *testing.T) {
		cert, key, err := ca.Issue("tamper-aa", nil, nil, nil, false, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		block, _ := pem.Decode(cert)
		der := bytes.Replace(block.Bytes, []byte("tamper-aa"), []byte("tamper-bb"), 1)
		if bytes.Equal(der, block.Bytes) {
			t.Fatal("subject not found in certificate")
		}
		if _, err := x509.ParseCertificate(der); err != nil {
			t.Fatalf("tampered certificate no longer parses: %v", err)
		}
		tampered := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
		wantUnauthorized(t, "tampered certificate", e.certClient(t, tampered, key))
	})
}

func TestTokenFile(t *testing.T) {
	e := start(t)
	u, err := whoami(e.tokenClient(t, aliceToken))
	if err != nil {
		t.Fatal(err)
	}
	if u.Username != "alice" || u.UID != "uid-alice" || strings.Join(u.Groups, ",") != "devs,ops,system:authenticated" {
		t.Fatalf("alice = %+v", u)
	}
	u, err = whoami(e.tokenClient(t, bobToken))
	if err != nil {
		t.Fatal(err)
	}
	if u.Username != "bob" || strings.Join(u.Groups, ",") != "system:authenticated" {
		t.Fatalf("bob = %+v", u)
	}
	wantUnauthorized(t, "unknown token", e.tokenClient(t, "not-a-token"))
	wantUnauthorized(t, "altered token", e.tokenClient(t, aliceToken[:len(aliceToken)-1]+"X"))
}

func TestLoadTokenFileErrors(t *testing.T) {
	dir := t.TempDir()
	for name, data := range map[string]string{
		"two columns": "tok,user\n",
		"bad quoting": "tok,user,uid,\"a\n",
	} {
		p := filepath.Join(dir, strings.ReplaceAll(name, " ", "-"))
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := authn.LoadTokenFile(p)
		if err == nil {
			t.Fatalf("%s: want an error", name)
		}
		if strings.Contains(err.Error(), "tok,") {
			t.Fatalf("%s: error quotes the file: %v", name, err)
		}
	}
	p := filepath.Join(dir, "ok")
	if err := os.WriteFile(p, []byte(",empty,1\nt1,a,1\nt1,b,2,\"g\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tf, err := authn.LoadTokenFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if tf.Len() != 1 {
		t.Fatalf("tokens = %d, want 1 (empty skipped, duplicate replaced)", tf.Len())
	}
	u, _, ok, _ := tf.AuthenticateToken(context.Background(), "t1", nil)
	if !ok || u.Name != "b" {
		t.Fatalf("duplicate token: got %+v, want the later record (b)", u)
	}
}

// tokenFor asks the TokenRequest API for a token.
func tokenFor(t *testing.T, c kubernetes.Interface, ns, sa string, spec authenticationv1.TokenRequestSpec) string {
	t.Helper()
	tr, err := c.CoreV1().ServiceAccounts(ns).CreateToken(context.Background(), sa, &authenticationv1.TokenRequest{Spec: spec}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token request: %v", err)
	}
	if tr.Status.Token == "" || tr.Status.ExpirationTimestamp.IsZero() {
		t.Fatalf("token request status = %+v", tr.Status)
	}
	return tr.Status.Token
}

func createSA(t *testing.T, c kubernetes.Interface, ns, name string) *corev1.ServiceAccount {
	t.Helper()
	sa, err := c.CoreV1().ServiceAccounts(ns).Create(context.Background(), &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return sa
}

// eventuallyUnauthorized waits (bounded) until the watch cache has seen a
// deletion and the token stops working.
func eventuallyUnauthorized(t *testing.T, what string, c kubernetes.Interface) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := whoami(c)
		if apierrors.IsUnauthorized(err) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: token still accepted (last error %v)", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// claimsOf decodes a JWT's payload (no verification).
func claimsOf(t *testing.T, tok string) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts", len(parts))
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestServiceAccountTokens(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	sa := createSA(t, e.Client, "default", "robot")
	tok := tokenFor(t, e.Client, "default", "robot", authenticationv1.TokenRequestSpec{})

	t.Run("claims", func(t *testing.T) {
		c := claimsOf(t, tok)
		if c["iss"] != authn.DefaultIssuer || c["sub"] != "system:serviceaccount:default:robot" {
			t.Fatalf("iss/sub = %v %v", c["iss"], c["sub"])
		}
		if aud, _ := c["aud"].([]any); len(aud) != 1 || aud[0] != authn.DefaultIssuer {
			t.Fatalf("aud = %v, want [issuer]", c["aud"])
		}
		exp, iat := c["exp"].(float64), c["iat"].(float64)
		if exp-iat != 3600 || c["nbf"] != c["iat"] || c["jti"] == "" {
			t.Fatalf("exp/iat/nbf/jti = %v %v %v %v", exp, iat, c["nbf"], c["jti"])
		}
		k := c["kubernetes.io"].(map[string]any)
		if k["namespace"] != "default" || k["serviceaccount"].(map[string]any)["uid"] != string(sa.UID) {
			t.Fatalf("kubernetes.io = %v", k)
		}
		h, _ := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[0])
		if !strings.Contains(string(h), `"alg":"RS256"`) || !strings.Contains(string(h), `"kid":"`) {
			t.Fatalf("header = %s", h)
		}
	})
	t.Run("valid", func(t *testing.T) {
		u, err := whoami(e.tokenClient(t, tok))
		if err != nil {
			t.Fatal(err)
		}
		want := "system:serviceaccounts,system:serviceaccounts:default,system:authenticated"
		if u.Username != "system:serviceaccount:default:robot" || u.UID != string(sa.UID) || strings.Join(u.Groups, ",") != want {
			t.Fatalf("user = %+v", u)
		}
		if id := u.Extra[authn.ExtraCredentialID]; len(id) != 1 || id[0] != "JTI="+claimsOf(t, tok)["jti"].(string) {
			t.Fatalf("credential-id = %v", id)
		}
	})
	key, err := authn.LoadOrCreateSigningKey(filepath.Join(e.DataDir, "tls"))
	if err != nil {
		t.Fatal(err)
	}
	spec := authn.TokenSpec{Namespace: "default", ServiceAccount: authn.ObjectRef{Name: "robot", UID: string(sa.UID)},
		Audiences: []string{authn.DefaultIssuer}, Expiration: time.Hour}
	t.Run("expired", func(t *testing.T) {
		old := &authn.ServiceAccountTokens{Key: key, Issuer: authn.DefaultIssuer, Now: func() time.Time { return time.Now().Add(-2 * time.Hour) }}
		expired, _, err := old.Issue(spec)
		if err != nil {
			t.Fatal(err)
		}
		wantUnauthorized(t, "expired token", e.tokenClient(t, expired))
		// Within the 60s leeway a token still works, as upstream.
		recent := &authn.ServiceAccountTokens{Key: key, Issuer: authn.DefaultIssuer, Now: func() time.Time { return time.Now().Add(-time.Hour - 30*time.Second) }}
		justExpired, _, err := recent.Issue(spec)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := whoami(e.tokenClient(t, justExpired)); err != nil {
			t.Fatalf("token expired 30s ago (inside leeway): %v", err)
		}
	})
	t.Run("wrong key", func(t *testing.T) {
		priv, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		otherKey, _ := authn.NewSigningKey(priv)
		other := &authn.ServiceAccountTokens{Key: otherKey, Issuer: authn.DefaultIssuer}
		forged, _, err := other.Issue(spec)
		if err != nil {
			t.Fatal(err)
		}
		wantUnauthorized(t, "token signed by another key", e.tokenClient(t, forged))
	})
	t.Run("tampered", func(t *testing.T) {
		parts := strings.Split(tok, ".")
		c := claimsOf(t, tok)
		c["sub"] = "system:serviceaccount:kube-system:robot"
		c["kubernetes.io"].(map[string]any)["namespace"] = "kube-system"
		b, _ := json.Marshal(c)
		tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString(b) + "." + parts[2]
		wantUnauthorized(t, "tampered payload", e.tokenClient(t, tampered))
		// alg "none" with the signature dropped.
		none := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none"}`)) + "." + parts[1] + "."
		wantUnauthorized(t, "alg none", e.tokenClient(t, none))
	})
	t.Run("wrong audience", func(t *testing.T) {
		other := tokenFor(t, e.Client, "default", "robot", authenticationv1.TokenRequestSpec{Audiences: []string{"vault"}})
		wantUnauthorized(t, "token for another audience", e.tokenClient(t, other))
	})
	t.Run("service account recreated", func(t *testing.T) {
		createSA(t, e.Client, "default", "temp")
		tmpTok := tokenFor(t, e.Client, "default", "temp", authenticationv1.TokenRequestSpec{})
		c := e.tokenClient(t, tmpTok)
		if _, err := whoami(c); err != nil {
			t.Fatal(err)
		}
		if err := e.Client.CoreV1().ServiceAccounts("default").Delete(ctx, "temp", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		eventuallyUnauthorized(t, "deleted service account", c)
		createSA(t, e.Client, "default", "temp")
		// Same name, new UID: the old token stays invalid.
		time.Sleep(200 * time.Millisecond)
		wantUnauthorized(t, "recreated service account", c)
	})
	t.Run("bound pod", func(t *testing.T) {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "worker"},
			Spec:       corev1.PodSpec{ServiceAccountName: "robot", Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
		}
		pod, err := e.Client.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		podTok := tokenFor(t, e.Client, "default", "robot", authenticationv1.TokenRequestSpec{
			BoundObjectRef: &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: "worker", UID: pod.UID}})
		c := e.tokenClient(t, podTok)
		u, err := whoami(c)
		if err != nil {
			t.Fatal(err)
		}
		if n, uid := u.Extra[authn.ExtraPodName], u.Extra[authn.ExtraPodUID]; len(n) != 1 || n[0] != "worker" || len(uid) != 1 || uid[0] != string(pod.UID) {
			t.Fatalf("pod extras = %v", u.Extra)
		}
		zero := int64(0)
		if err := e.Client.CoreV1().Pods("default").Delete(ctx, "worker", metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
			t.Fatal(err)
		}
		eventuallyUnauthorized(t, "deleted pod", c)
	})
	t.Run("bound secret", func(t *testing.T) {
		sec, err := e.Client.CoreV1().Secrets("default").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "binder"}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		secTok := tokenFor(t, e.Client, "default", "robot", authenticationv1.TokenRequestSpec{
			BoundObjectRef: &authenticationv1.BoundObjectReference{Kind: "Secret", APIVersion: "v1", Name: "binder", UID: sec.UID}})
		c := e.tokenClient(t, secTok)
		if _, err := whoami(c); err != nil {
			t.Fatal(err)
		}
		if err := e.Client.CoreV1().Secrets("default").Delete(ctx, "binder", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		eventuallyUnauthorized(t, "deleted secret", c)
	})
}

func TestTokenRequestErrors(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	createSA(t, e.Client, "default", "robot")
	other := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "other-sa"},
		Spec: corev1.PodSpec{ServiceAccountName: "default", Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}
	if _, err := e.Client.CoreV1().Pods("default").Create(ctx, other, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	mine := other.DeepCopy()
	mine.Name, mine.Spec.ServiceAccountName = "mine", "robot"
	if _, err := e.Client.CoreV1().Pods("default").Create(ctx, mine, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	short, long := int64(599), int64(72*3600)
	cases := []struct {
		name string
		sa   string
		spec authenticationv1.TokenRequestSpec
		want func(error) bool
		msg  string
	}{
		{"missing service account", "ghost", authenticationv1.TokenRequestSpec{}, apierrors.IsNotFound, `serviceaccounts "ghost" not found`},
		{"too short", "robot", authenticationv1.TokenRequestSpec{ExpirationSeconds: &short}, apierrors.IsInvalid, "spec.expirationSeconds: Invalid value: 599: may not specify a duration less than 10 minutes"},
		{"missing pod", "robot", authenticationv1.TokenRequestSpec{BoundObjectRef: &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: "nope"}}, apierrors.IsNotFound, `pods "nope" not found`},
		{"pod of another service account", "robot", authenticationv1.TokenRequestSpec{BoundObjectRef: &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: "other-sa"}}, apierrors.IsBadRequest, `cannot bind token for serviceaccount "robot" to pod running with different serviceaccount name.`},
		{"unsupported kind", "robot", authenticationv1.TokenRequestSpec{BoundObjectRef: &authenticationv1.BoundObjectReference{Kind: "ConfigMap", APIVersion: "v1", Name: "x"}}, apierrors.IsBadRequest, "cannot bind token to object of type /v1, Kind=ConfigMap"},
		{"stale uid", "robot", authenticationv1.TokenRequestSpec{BoundObjectRef: &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: "mine", UID: "stale"}}, apierrors.IsConflict, "the UID in the bound object reference (stale) does not match the UID in record"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.Client.CoreV1().ServiceAccounts("default").CreateToken(ctx, tc.sa, &authenticationv1.TokenRequest{Spec: tc.spec}, metav1.CreateOptions{})
			if !tc.want(err) || !strings.Contains(fmt.Sprint(err), tc.msg) {
				t.Fatalf("got %v, want %s", err, tc.msg)
			}
		})
	}
	t.Run("long expiry is shortened", func(t *testing.T) {
		tr, err := e.Client.CoreV1().ServiceAccounts("default").CreateToken(ctx, "robot", &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &long}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got := *tr.Spec.ExpirationSeconds; got != 48*3600 {
			t.Fatalf("expirationSeconds = %d, want 172800", got)
		}
		if d := time.Until(tr.Status.ExpirationTimestamp.Time); d < 47*time.Hour || d > 49*time.Hour {
			t.Fatalf("expires in %v", d)
		}
	})
}

func TestTokenReview(t *testing.T) {
	e := start(t)
	createSA(t, e.Client, "default", "robot")
	tok := tokenFor(t, e.Client, "default", "robot", authenticationv1.TokenRequestSpec{})
	vaultTok := tokenFor(t, e.Client, "default", "robot", authenticationv1.TokenRequestSpec{Audiences: []string{"vault"}})
	review := func(token string, auds ...string) *authenticationv1.TokenReviewStatus {
		t.Helper()
		r, err := e.Client.AuthenticationV1().TokenReviews().Create(context.Background(), &authenticationv1.TokenReview{
			Spec: authenticationv1.TokenReviewSpec{Token: token, Audiences: auds}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return &r.Status
	}
	if st := review(tok); !st.Authenticated || st.User.Username != "system:serviceaccount:default:robot" || strings.Join(st.Audiences, ",") != authn.DefaultIssuer {
		t.Fatalf("service account token: %+v", st)
	}
	if st := review(aliceToken); !st.Authenticated || st.User.Username != "alice" {
		t.Fatalf("static token: %+v", st)
	}
	if st := review(vaultTok, "vault"); !st.Authenticated || strings.Join(st.Audiences, ",") != "vault" {
		t.Fatalf("vault token for vault: %+v", st)
	}
	if st := review(vaultTok); st.Authenticated {
		t.Fatalf("vault token for the API audience: %+v", st)
	}
	if st := review(aliceToken, "vault"); st.Authenticated {
		t.Fatalf("static token for another audience: %+v", st)
	}
	st := review("garbage-token")
	if st.Authenticated || st.Error == "" || strings.Contains(st.Error, "garbage-token") {
		t.Fatalf("bad token: %+v", st)
	}
	_, err := e.Client.AuthenticationV1().TokenReviews().Create(context.Background(), &authenticationv1.TokenReview{}, metav1.CreateOptions{})
	if !apierrors.IsBadRequest(err) {
		t.Fatalf("empty token: %v", err)
	}
	// Virtual resources serve create only.
	if _, err := e.Client.AuthenticationV1().RESTClient().Get().AbsPath("/apis/authentication.k8s.io/v1/tokenreviews").DoRaw(context.Background()); !apierrors.IsMethodNotSupported(err) {
		t.Fatalf("list tokenreviews: %v", err)
	}
}

// TestAnonymousAndDiscovery: only the health and version endpoints answer
// without credentials; issuer discovery needs an authenticated caller and
// its key set verifies the tokens the server issues.
func TestAnonymousAndDiscovery(t *testing.T) {
	e := start(t)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(e.Config.CAData)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 10 * time.Second}
	get := func(path, token string) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, e.Config.Host+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	for _, p := range []string{"/healthz", "/livez", "/readyz", "/version"} {
		if code, _ := get(p, ""); code != http.StatusOK {
			t.Errorf("anonymous %s: %d, want 200", p, code)
		}
	}
	for _, p := range []string{"/api", "/apis", "/api/v1/namespaces", "/openid/v1/jwks", "/.well-known/openid-configuration", "/metrics", "/debug/pprof/heap"} {
		if code, _ := get(p, ""); code != http.StatusUnauthorized {
			t.Errorf("anonymous %s: %d, want 401", p, code)
		}
	}
	// Profiling is for cluster admins only.
	if code, _ := get("/debug/pprof/heap", aliceToken); code != http.StatusForbidden {
		t.Errorf("alice /debug/pprof/heap: %d, want 403", code)
	}
	if b, err := e.Client.CoreV1().RESTClient().Get().AbsPath("/debug/pprof/heap").Param("debug", "1").DoRaw(context.Background()); err != nil || !strings.Contains(string(b), "heap profile") {
		t.Errorf("admin /debug/pprof/heap: %v %.80s", err, b)
	}
	grant(t, e.Client, "issuer-discovery", rbacv1.Subject{Kind: "User", APIGroup: "rbac.authorization.k8s.io", Name: "alice"},
		rbacv1.PolicyRule{Verbs: []string{"get"}, NonResourceURLs: []string{"/.well-known/openid-configuration", "/openid/v1/jwks"}})
	code, body := get("/.well-known/openid-configuration", aliceToken)
	var cfg struct {
		Issuer  string   `json:"issuer"`
		JWKSURI string   `json:"jwks_uri"`
		Algs    []string `json:"id_token_signing_alg_values_supported"`
	}
	if code != http.StatusOK || json.Unmarshal(body, &cfg) != nil || cfg.Issuer != authn.DefaultIssuer ||
		cfg.JWKSURI != e.Config.Host+"/openid/v1/jwks" || strings.Join(cfg.Algs, ",") != "RS256" {
		t.Fatalf("openid-configuration: %d %s", code, body)
	}
	code, body = get("/openid/v1/jwks", aliceToken)
	var set struct {
		Keys []authn.JWK `json:"keys"`
	}
	if code != http.StatusOK || json.Unmarshal(body, &set) != nil || len(set.Keys) != 1 {
		t.Fatalf("jwks: %d %s", code, body)
	}
	createSA(t, e.Client, "default", "robot")
	tok := tokenFor(t, e.Client, "default", "robot", authenticationv1.TokenRequestSpec{})
	if err := verifyWithJWK(tok, set.Keys[0]); err != nil {
		t.Fatalf("token does not verify with the published key: %v", err)
	}
}

func verifyWithJWK(tok string, k authn.JWK) error {
	parts := strings.Split(tok, ".")
	var h struct{ Kid string }
	hb, _ := base64.RawURLEncoding.DecodeString(parts[0])
	_ = json.Unmarshal(hb, &h)
	if h.Kid != k.Kid || k.Alg != "RS256" || k.Kty != "RSA" || k.Use != "sig" {
		return fmt.Errorf("kid %q vs key %+v", h.Kid, k)
	}
	n, _ := base64.RawURLEncoding.DecodeString(k.N)
	eb, _ := base64.RawURLEncoding.DecodeString(k.E)
	pub := &rsa.PublicKey{E: 0}
	pub.N = new(bigInt).SetBytes(n)
	for _, b := range eb {
		pub.E = pub.E<<8 | int(b)
	}
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	return rsaVerify(pub, parts[0]+"."+parts[1], sig)
}
