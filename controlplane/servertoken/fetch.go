package servertoken

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// FetchCA reads the cluster CA the server at base serves (CACertsPath)
// and returns it only if its hash is caHash, the one a token names. The
// CA is public, so TLS is not verified and nothing is sent but the GET:
// no secret goes to a server before it is known to be the right one.
func FetchCA(ctx context.Context, base, caHash string) ([]byte, error) {
	base = strings.TrimSuffix(base, "/")
	c := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}}} //nolint:gosec // verified by hash below
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+CACertsPath, nil)
	if err != nil {
		return nil, fmt.Errorf("server %q: %w", base, err)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch the cluster CA from %s: %w", base, err)
	}
	defer resp.Body.Close()
	caPEM, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("fetch the cluster CA from %s: %w", base, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch the cluster CA from %s: %s", base, resp.Status)
	}
	if got := CAHash(caPEM); subtle.ConstantTimeCompare([]byte(got), []byte(caHash)) != 1 {
		return nil, fmt.Errorf("the cluster CA of %s (sha256 %s) is not the one the token names (%s): wrong token or wrong server", base, got, caHash)
	}
	if !x509.NewCertPool().AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("the cluster CA of %s is not PEM", base)
	}
	return caPEM, nil
}
