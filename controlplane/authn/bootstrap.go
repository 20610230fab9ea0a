package authn

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/skiffhq/skiff/controlplane/apiserver"
	"github.com/skiffhq/skiff/controlplane/storage"
)

// Bootstrap tokens, as upstream (k8s.io/cluster-bootstrap): a Secret
// kube-system/bootstrap-token-<id> of type bootstrap.kubernetes.io/token
// holding token-id, token-secret, expiration and usage flags; the bearer
// token is "<id>.<secret>".
const (
	BootstrapTokenSecretType   = "bootstrap.kubernetes.io/token"
	BootstrapTokenSecretPrefix = "bootstrap-token-"
	BootstrapUserPrefix        = "system:bootstrap:"
	BootstrapGroup             = "system:bootstrappers"
	// BootstrapDefaultGroup is the extra group of tokens made by
	// `skiff token create`.
	BootstrapDefaultGroup = "system:bootstrappers:skiff:default-node-token"

	BootstrapTokenIDKey          = "token-id"
	BootstrapTokenSecretKey      = "token-secret"
	BootstrapTokenExpirationKey  = "expiration"
	BootstrapTokenDescriptionKey = "description"
	BootstrapTokenExtraGroupsKey = "auth-extra-groups"
	BootstrapTokenUsageAuthKey   = "usage-bootstrap-authentication"
	BootstrapTokenUsageSignKey   = "usage-bootstrap-signing"
)

var (
	bootstrapTokenRE = regexp.MustCompile(`^([a-z0-9]{6})\.([a-z0-9]{16})$`)
	// Compiled on first use: the {0,255} repetition makes a ~190 KB
	// program that every process of the binary would otherwise keep.
	bootstrapGroupRE = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`^system:bootstrappers:[a-z0-9:-]{0,255}[a-z0-9]$`)
	})
)

// ParseBootstrapToken splits "<id>.<secret>"; ok is false when token does
// not have the bootstrap token format.
func ParseBootstrapToken(token string) (id, secret string, ok bool) {
	m := bootstrapTokenRE.FindStringSubmatch(token)
	if m == nil {
		return "", "", false
	}
	return m[1], m[2], true
}

// NewBootstrapToken returns a random "<id>.<secret>" token.
func NewBootstrapToken() (string, error) {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 22)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate bootstrap token: %w", err)
	}
	out := make([]byte, 0, 23)
	for i, c := range b {
		if i == 6 {
			out = append(out, '.')
		}
		// 256 % 36 = 4: the bias toward the first letters is negligible
		// next to 16 characters of entropy, and upstream does the same.
		out = append(out, alphabet[int(c)%len(alphabet)])
	}
	return string(out), nil
}

// BootstrapTokenSecretData is the data of the Secret of token ("<id>.<secret>")
// for node joins: usable for authentication and signing, in the default
// bootstrappers group, expiring at expires (zero: never).
func BootstrapTokenSecretData(token string, expires time.Time, description string) (map[string][]byte, error) {
	id, secret, ok := ParseBootstrapToken(token)
	if !ok {
		return nil, errors.New("not a bootstrap token")
	}
	data := map[string][]byte{
		BootstrapTokenIDKey:          []byte(id),
		BootstrapTokenSecretKey:      []byte(secret),
		BootstrapTokenUsageAuthKey:   []byte("true"),
		BootstrapTokenUsageSignKey:   []byte("true"),
		BootstrapTokenExtraGroupsKey: []byte(BootstrapDefaultGroup),
	}
	if !expires.IsZero() {
		data[BootstrapTokenExpirationKey] = []byte(expires.UTC().Format(time.RFC3339))
	}
	if description != "" {
		data[BootstrapTokenDescriptionKey] = []byte(description)
	}
	return data, nil
}

// BootstrapTokens authenticates bootstrap tokens against their Secrets in
// kube-system, read from the watch cache (then etcd).
type BootstrapTokens struct {
	Cache *storage.Cache
	Store *storage.Store
	// Now is the clock (tests); nil = time.Now.
	Now func() time.Time
}

var _ TokenAuthenticator = (*BootstrapTokens)(nil)

var errBootstrapInvalid = errors.New("bootstrap token: invalid, expired or not usable for authentication")

type bootstrapSecret struct {
	Metadata struct {
		DeletionTimestamp *time.Time `json:"deletionTimestamp"`
	} `json:"metadata"`
	Type string            `json:"type"`
	Data map[string][]byte `json:"data"`
}

// AuthenticateToken implements TokenAuthenticator.
func (b *BootstrapTokens) AuthenticateToken(ctx context.Context, token string, _ []string) (*apiserver.UserInfo, []string, bool, error) {
	id, secret, ok := ParseBootstrapToken(token)
	if !ok {
		return nil, nil, false, nil
	}
	key := "/registry/secrets/kube-system/" + BootstrapTokenSecretPrefix + id
	var value []byte
	if obj, _, ok := b.Cache.Get(key); ok {
		value = obj.Value
	} else {
		kv, err := b.Store.Get(ctx, key)
		if errors.Is(err, storage.ErrNotFound) {
			return nil, nil, false, errBootstrapInvalid
		}
		if err != nil {
			return nil, nil, false, fmt.Errorf("bootstrap token %s: %w", id, err)
		}
		value = kv.Value
	}
	var s bootstrapSecret
	if err := json.Unmarshal(value, &s); err != nil {
		return nil, nil, false, fmt.Errorf("bootstrap token %s: decode secret: %w", id, err)
	}
	if s.Type != BootstrapTokenSecretType || s.Metadata.DeletionTimestamp != nil ||
		string(s.Data[BootstrapTokenIDKey]) != id ||
		subtle.ConstantTimeCompare(s.Data[BootstrapTokenSecretKey], []byte(secret)) != 1 ||
		string(s.Data[BootstrapTokenUsageAuthKey]) != "true" {
		return nil, nil, false, errBootstrapInvalid
	}
	now := time.Now
	if b.Now != nil {
		now = b.Now
	}
	if exp := string(s.Data[BootstrapTokenExpirationKey]); exp != "" {
		t, err := time.Parse(time.RFC3339, exp)
		if err != nil || !now().Before(t) {
			return nil, nil, false, errBootstrapInvalid
		}
	}
	groups := []string{BootstrapGroup}
	if extra := strings.TrimSpace(string(s.Data[BootstrapTokenExtraGroupsKey])); extra != "" {
		for _, g := range strings.Split(extra, ",") {
			g = strings.TrimSpace(g)
			if !bootstrapGroupRE().MatchString(g) {
				return nil, nil, false, errBootstrapInvalid
			}
			groups = append(groups, g)
		}
	}
	return &apiserver.UserInfo{Name: BootstrapUserPrefix + id, Groups: withAuthenticated(groups)}, nil, true, nil
}
