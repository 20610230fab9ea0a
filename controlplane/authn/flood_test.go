package authn_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	rbacv1 "k8s.io/api/rbac/v1"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
)

// TestBadTokenFlood sends 10,000 requests with bad tokens in parallel:
// every one is answered 401 (never 500), no answer or log line carries a
// token, and valid credentials still work afterwards.
func TestBadTokenFlood(t *testing.T) {
	e := start(t)
	createSA(t, e.Client, "default", "robot")
	grant(t, e.Client, "robot-pods", rbacv1.Subject{Kind: "ServiceAccount", Name: "robot", Namespace: "default"},
		rbacv1.PolicyRule{Verbs: []string{"list"}, APIGroups: []string{""}, Resources: []string{"pods"}})
	good := tokenFor(t, e.Client, "default", "robot", authenticationv1.TokenRequestSpec{})
	parts := strings.Split(good, ".")
	header, payload := parts[0], parts[1]

	// Kinds of bad token: random text, our issuer with a broken signature,
	// a payload swapped under a good signature, truncation, non-base64.
	bad := func(i int) string {
		switch i % 5 {
		case 0:
			return fmt.Sprintf("random-token-%d", i)
		case 1:
			return header + "." + payload + "." + base64.RawURLEncoding.EncodeToString([]byte(fmt.Sprintf("sig-%d", i)))
		case 2:
			b, _ := base64.RawURLEncoding.DecodeString(payload)
			b = []byte(strings.Replace(string(b), `"default"`, fmt.Sprintf(`"ns-%d"`, i%7), 1))
			return header + "." + base64.RawURLEncoding.EncodeToString(b) + "." + parts[2]
		case 3:
			return good[:len(good)-1-i%20]
		default:
			return fmt.Sprintf("%s.!!%d!!.%s", header, i, parts[2])
		}
	}

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(e.Config.CAData)
	hc := &http.Client{
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true, MaxIdleConnsPerHost: 64},
		Timeout:   30 * time.Second,
	}
	do := func(token string) (int, string, error) {
		req, _ := http.NewRequest(http.MethodGet, e.Config.Host+"/api/v1/namespaces/default/pods", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := hc.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), nil
	}

	const total, workers = 10000, 32
	codes := map[int]int{}
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	next := make(chan int)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				tok := bad(i)
				code, body, err := do(tok)
				mu.Lock()
				codes[code]++
				if err != nil && firstErr == nil {
					firstErr = err
				}
				if strings.Contains(body, tok) && firstErr == nil {
					firstErr = fmt.Errorf("401 body quotes the token: %s", body)
				}
				mu.Unlock()
			}
		}()
	}
	for i := 0; i < total; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	if firstErr != nil {
		t.Fatal(firstErr)
	}
	if codes[http.StatusUnauthorized] != total {
		t.Fatalf("status codes = %v, want %d × 401", codes, total)
	}
	if code, body, err := do(good); err != nil || code != http.StatusOK {
		t.Fatalf("valid token after the flood: %d %v %s", code, err, body)
	}
	// alice has no RBAC grant here: 403 proves she is still authenticated.
	if code, _, err := do(aliceToken); err != nil || code != http.StatusForbidden {
		t.Fatalf("static token after the flood: %d %v (want 403: authenticated, not authorized)", code, err)
	}
	logs := e.logs.String()
	if !strings.Contains(logs, "authentication failed") {
		t.Fatalf("debug logs do not show the failures; the check below would prove nothing")
	}
	for _, secret := range []string{good, parts[2], aliceToken, bad(0), bad(1), bad(2)} {
		if strings.Contains(logs, secret) {
			t.Fatalf("a token appears in the server log")
		}
	}
	_ = context.Background
}
