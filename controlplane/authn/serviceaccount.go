package authn

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/skiffhq/skiff/controlplane/apiserver"
)

// DefaultIssuer is the service account issuer kube-apiserver deployments
// conventionally use.
const DefaultIssuer = "https://kubernetes.default.svc.cluster.local"

// Extra keys of service account users, as upstream.
const (
	ExtraPodName      = "authentication.kubernetes.io/pod-name"
	ExtraPodUID       = "authentication.kubernetes.io/pod-uid"
	ExtraNodeName     = "authentication.kubernetes.io/node-name"
	ExtraNodeUID      = "authentication.kubernetes.io/node-uid"
	ExtraCredentialID = "authentication.kubernetes.io/credential-id"
)

// leeway is the clock skew tolerated on exp, nbf and iat, and how long a
// bound object may have been deleting before its tokens stop working.
const leeway = 60 * time.Second

// ObjectRef names a live object a token is bound to.
type ObjectRef struct {
	Name string `json:"name,omitempty"`
	UID  string `json:"uid,omitempty"`
}

type kubernetesClaims struct {
	Namespace      string     `json:"namespace,omitempty"`
	ServiceAccount ObjectRef  `json:"serviceaccount"`
	Pod            *ObjectRef `json:"pod,omitempty"`
	Secret         *ObjectRef `json:"secret,omitempty"`
	Node           *ObjectRef `json:"node,omitempty"`
	WarnAfter      int64      `json:"warnafter,omitempty"`
}

// claims are the public and private claims of a bound token, as upstream.
type claims struct {
	Issuer     string            `json:"iss"`
	Subject    string            `json:"sub"`
	Audience   []string          `json:"aud"`
	Expiry     int64             `json:"exp"`
	IssuedAt   int64             `json:"iat"`
	NotBefore  int64             `json:"nbf"`
	ID         string            `json:"jti,omitempty"`
	Kubernetes *kubernetesClaims `json:"kubernetes.io,omitempty"`
}

// LiveObject is what token issue and validation need of an object.
type LiveObject struct {
	UID               string
	DeletionTimestamp *time.Time
	// ServiceAccountName and NodeName are set for pods.
	ServiceAccountName string
	NodeName           string
}

// ErrNotFound is returned by Objects for a missing object.
var ErrNotFound = errors.New("not found")

// Objects reads live objects: resource is "serviceaccounts", "pods",
// "secrets" or "nodes"; ns is "" for nodes.
type Objects interface {
	Get(ctx context.Context, resource, ns, name string) (*LiveObject, error)
}

// ServiceAccountTokens issues and validates bound service account tokens.
type ServiceAccountTokens struct {
	Key     *SigningKey
	Issuer  string
	Objects Objects
	// Now is the clock (tests); nil = time.Now.
	Now func() time.Time

	verified sync.Map // [32]byte → *claims whose signature verified
	size     atomic.Int64
}

var _ TokenAuthenticator = (*ServiceAccountTokens)(nil)

func (t *ServiceAccountTokens) now() time.Time {
	if t.Now != nil {
		return t.Now()
	}
	return time.Now()
}

// TokenSpec describes a token to issue.
type TokenSpec struct {
	Namespace      string
	ServiceAccount ObjectRef
	Audiences      []string
	Expiration     time.Duration
	Pod            *ObjectRef
	Secret         *ObjectRef
	Node           *ObjectRef
}

// Issue signs a token for spec and returns it with its expiry.
func (t *ServiceAccountTokens) Issue(spec TokenSpec) (string, time.Time, error) {
	now := t.now()
	exp := now.Add(spec.Expiration)
	c := claims{
		Issuer:    t.Issuer,
		Subject:   saUser(spec.Namespace, spec.ServiceAccount.Name),
		Audience:  spec.Audiences,
		Expiry:    exp.Unix(),
		IssuedAt:  now.Unix(),
		NotBefore: now.Unix(),
		ID:        uuid.NewString(),
		Kubernetes: &kubernetesClaims{
			Namespace:      spec.Namespace,
			ServiceAccount: spec.ServiceAccount,
			Pod:            spec.Pod,
			Secret:         spec.Secret,
			Node:           spec.Node,
		},
	}
	tok, err := t.Key.Sign(c)
	if err != nil {
		return "", time.Time{}, err
	}
	return tok, exp, nil
}

func saUser(ns, name string) string { return "system:serviceaccount:" + ns + ":" + name }

// AuthenticateToken implements TokenAuthenticator. Tokens that are not
// JWTs from this issuer are not recognised (ok=false, no error).
func (t *ServiceAccountTokens) AuthenticateToken(ctx context.Context, token string, audiences []string) (*apiserver.UserInfo, []string, bool, error) {
	c, err := t.verify(token)
	if err != nil || c == nil {
		return nil, nil, false, err
	}
	matched := intersect(c.Audience, audiences)
	if len(matched) == 0 {
		return nil, nil, false, fmt.Errorf("token audiences %q is invalid for the target audiences %q", c.Audience, audiences)
	}
	u, err := t.validate(ctx, c)
	if err != nil {
		return nil, nil, false, err
	}
	return u, matched, true, nil
}

// verify returns the claims of a token whose signature is good, nil
// claims for a token that is not ours, or an error for one that claims to
// be ours but is not.
func (t *ServiceAccountTokens) verify(token string) (*claims, error) {
	key := sha256.Sum256([]byte(token))
	if v, ok := t.verified.Load(key); ok {
		return v.(*claims), nil
	}
	h, payload, err := splitJWT(token)
	if err != nil {
		return nil, nil
	}
	var c claims
	if err := json.Unmarshal(payload, &c); err != nil || c.Issuer != t.Issuer {
		return nil, nil
	}
	if err := t.Key.verify(token, h); err != nil {
		return nil, err
	}
	if t.size.Add(1) > maxCachedCerts {
		t.verified.Clear()
		t.size.Store(1)
	}
	t.verified.Store(key, &c)
	return &c, nil
}

// validate checks time, audience, subject and the live objects the token
// is bound to, and maps the claims to a user.
func (t *ServiceAccountTokens) validate(ctx context.Context, c *claims) (*apiserver.UserInfo, error) {
	now := t.now()
	if c.Expiry != 0 && now.After(time.Unix(c.Expiry, 0).Add(leeway)) {
		return nil, errors.New("service account token has expired")
	}
	if c.NotBefore != 0 && now.Add(leeway).Before(time.Unix(c.NotBefore, 0)) {
		return nil, errors.New("service account token is not valid yet")
	}
	if c.IssuedAt != 0 && now.Add(leeway).Before(time.Unix(c.IssuedAt, 0)) {
		return nil, errors.New("service account token was issued in the future")
	}
	k := c.Kubernetes
	if k == nil || k.Namespace == "" || k.ServiceAccount.Name == "" || k.ServiceAccount.UID == "" {
		return nil, errors.New("service account token claims are incomplete")
	}
	if c.Subject != saUser(k.Namespace, k.ServiceAccount.Name) {
		return nil, errors.New("service account token subject does not match its claims")
	}
	sa, err := t.Objects.Get(ctx, "serviceaccounts", k.Namespace, k.ServiceAccount.Name)
	if err != nil {
		return nil, liveErr(err, fmt.Sprintf("service account %s/%s has been deleted", k.Namespace, k.ServiceAccount.Name))
	}
	if sa.UID != k.ServiceAccount.UID {
		return nil, fmt.Errorf("service account UID (%s) does not match claim (%s)", sa.UID, k.ServiceAccount.UID)
	}
	invalidIfDeletedBefore := now.Add(-leeway)
	extra := map[string][]string{}
	if k.Pod != nil {
		pod, err := t.Objects.Get(ctx, "pods", k.Namespace, k.Pod.Name)
		if err != nil {
			return nil, liveErr(err, fmt.Sprintf("pod %s/%s has been deleted", k.Namespace, k.Pod.Name))
		}
		if pod.UID != k.Pod.UID {
			return nil, fmt.Errorf("pod UID (%s) does not match claim (%s)", pod.UID, k.Pod.UID)
		}
		if pod.DeletionTimestamp != nil && pod.DeletionTimestamp.Before(invalidIfDeletedBefore) {
			return nil, errors.New("token has been invalidated")
		}
		extra[ExtraPodName] = []string{k.Pod.Name}
		extra[ExtraPodUID] = []string{k.Pod.UID}
	}
	if k.Secret != nil {
		sec, err := t.Objects.Get(ctx, "secrets", k.Namespace, k.Secret.Name)
		if err != nil {
			return nil, liveErr(err, fmt.Sprintf("secret %s/%s has been deleted", k.Namespace, k.Secret.Name))
		}
		if sec.UID != k.Secret.UID {
			return nil, fmt.Errorf("secret UID (%s) does not match claim (%s)", sec.UID, k.Secret.UID)
		}
		if sec.DeletionTimestamp != nil && sec.DeletionTimestamp.Before(invalidIfDeletedBefore) {
			return nil, errors.New("token has been invalidated")
		}
	}
	if k.Node != nil {
		node, err := t.Objects.Get(ctx, "nodes", "", k.Node.Name)
		if err != nil {
			return nil, liveErr(err, fmt.Sprintf("node %s has been deleted", k.Node.Name))
		}
		if k.Node.UID != "" && node.UID != k.Node.UID {
			return nil, fmt.Errorf("node UID (%s) does not match claim (%s)", node.UID, k.Node.UID)
		}
		extra[ExtraNodeName] = []string{k.Node.Name}
		if k.Node.UID != "" {
			extra[ExtraNodeUID] = []string{k.Node.UID}
		}
	}
	if c.ID != "" {
		extra[ExtraCredentialID] = []string{"JTI=" + c.ID}
	}
	u := &apiserver.UserInfo{
		Name:   saUser(k.Namespace, k.ServiceAccount.Name),
		UID:    k.ServiceAccount.UID,
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + k.Namespace, GroupAuthenticated},
	}
	if len(extra) > 0 {
		u.Extra = extra
	}
	return u, nil
}

// liveErr turns a lookup failure into the validation error: a missing
// object gets msg, anything else (etcd down) stays an internal error.
func liveErr(err error, msg string) error {
	if errors.Is(err, ErrNotFound) {
		return errors.New(msg)
	}
	return fmt.Errorf("look up bound object: %w", err)
}

func intersect(a, b []string) []string {
	var out []string
	for _, x := range a {
		for _, y := range b {
			if x == y {
				out = append(out, x)
				break
			}
		}
	}
	return out
}
