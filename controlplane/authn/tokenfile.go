package authn

import (
	"context"
	"crypto/sha256"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/skiffhq/skiff/controlplane/apiserver"
)

// TokenFile authenticates the static tokens of --token-auth-file, in
// upstream's CSV format: token,user,uid,"group1,group2".
type TokenFile struct {
	// tokens are keyed by the token's SHA-256 so the map holds no secrets
	// in a form a heap dump would show directly.
	tokens map[[32]byte]*apiserver.UserInfo
}

var _ TokenAuthenticator = (*TokenFile)(nil)

// LoadTokenFile reads a token file. Records need at least three columns;
// empty tokens are skipped and a later duplicate replaces an earlier one,
// as upstream.
func LoadTokenFile(path string) (*TokenFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("token file: %w", err)
	}
	defer f.Close()
	tf, err := parseTokenFile(f)
	if err != nil {
		return nil, fmt.Errorf("token file %s: %w", path, err)
	}
	return tf, nil
}

func parseTokenFile(r io.Reader) (*TokenFile, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	tf := &TokenFile{tokens: map[[32]byte]*apiserver.UserInfo{}}
	for n := 1; ; n++ {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			// csv errors quote the offending line; report only its number.
			return nil, fmt.Errorf("record %d: malformed CSV", n)
		}
		if len(rec) < 3 {
			return nil, fmt.Errorf("record %d: must have at least 3 columns (token, user name, user uid), found %d", n, len(rec))
		}
		if rec[0] == "" {
			continue
		}
		u := &apiserver.UserInfo{Name: rec[1], UID: rec[2]}
		if len(rec) > 3 {
			for _, g := range strings.Split(rec[3], ",") {
				if g = strings.TrimSpace(g); g != "" {
					u.Groups = append(u.Groups, g)
				}
			}
		}
		u.Groups = withAuthenticated(u.Groups)
		tf.tokens[sha256.Sum256([]byte(rec[0]))] = u
	}
	return tf, nil
}

// Len returns the number of tokens.
func (t *TokenFile) Len() int { return len(t.tokens) }

// AuthenticateToken implements TokenAuthenticator.
// Static tokens are audience-agnostic (matched is nil).
func (t *TokenFile) AuthenticateToken(_ context.Context, token string, _ []string) (*apiserver.UserInfo, []string, bool, error) {
	u, ok := t.tokens[sha256.Sum256([]byte(token))]
	if !ok {
		return nil, nil, false, nil
	}
	cp := *u
	cp.Groups = append([]string(nil), u.Groups...)
	return &cp, nil, true, nil
}
