package bootstrap

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/skiffhq/skiff/controlplane/pki"
	"github.com/skiffhq/skiff/controlplane/servertoken"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// The agent's own kubeconfig and client credentials, written by Join and
// renewed by Renewer, relative to the agent's state directory.
const (
	KubeconfigFile = "kubeconfig"
	CertFile       = "client.crt"
	KeyFile        = "client.key"
)

// Join returns the path of the agent's kubeconfig in dir. One kept from
// an earlier join is used as it is (a restart does not need the token any
// more). Otherwise token (a node join token, `skiff token create`) makes
// one: the server's CA is fetched and checked against the token's hash,
// then the bootstrap token has the node's client certificate signed. A
// failed join writes nothing.
func Join(ctx context.Context, dir, serverURL, token, nodeName string) (string, error) {
	path := filepath.Join(dir, KubeconfigFile)
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	if token == "" {
		return "", errors.New("no kubeconfig: give --kubeconfig, or --server and --token to join")
	}
	if serverURL == "" {
		return "", errors.New("--token needs --server, the URL of a server to join through")
	}
	tok, err := servertoken.ParseNode(token)
	if err != nil {
		return "", fmt.Errorf("--token: %w", err)
	}
	base := strings.TrimSuffix(serverURL, "/")
	caPEM, err := fetchCA(ctx, base)
	if err != nil {
		return "", err
	}
	if !tok.MatchesCA(caPEM) {
		return "", fmt.Errorf("the cluster CA of %s (sha256 %s) is not the one the token names (%s): wrong token or wrong server", base, servertoken.CAHash(caPEM), tok.CAHash)
	}
	if !x509.NewCertPool().AppendCertsFromPEM(caPEM) {
		return "", fmt.Errorf("the cluster CA of %s is not PEM", base)
	}
	certPEM, keyPEM, err := RequestClientCertificate(ctx, base, caPEM, tok.Bootstrap, nodeName)
	if err != nil {
		return "", fmt.Errorf("join %s as node %s: %w", base, nodeName, err)
	}
	if err := writeCredentials(dir, certPEM, keyPEM); err != nil {
		return "", err
	}
	if err := writeKubeconfig(path, base, nodeName, caPEM, dir); err != nil {
		_ = os.Remove(filepath.Join(dir, CertFile))
		_ = os.Remove(filepath.Join(dir, KeyFile))
		return "", err
	}
	return path, nil
}

// writeKubeconfig writes a kubeconfig naming the certificate and key
// files in dir (client-go reloads them when the renewal replaces them).
func writeKubeconfig(path, server, nodeName string, caPEM []byte, dir string) error {
	cfg := clientcmdapi.NewConfig()
	user := "system:node:" + nodeName
	cfg.Clusters["skiff"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: caPEM}
	cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{ClientCertificate: filepath.Join(dir, CertFile), ClientKey: filepath.Join(dir, KeyFile)}
	cfg.Contexts["skiff"] = &clientcmdapi.Context{Cluster: "skiff", AuthInfo: user}
	cfg.CurrentContext = "skiff"
	data, err := clientcmd.Write(*cfg)
	if err != nil {
		return fmt.Errorf("write the agent's kubeconfig: %w", err)
	}
	if err := pki.WriteFile(path, data, 0o600); err != nil {
		return fmt.Errorf("write the agent's kubeconfig: %w", err)
	}
	return nil
}

// writeCredentials replaces the key, then the certificate, each
// atomically.
func writeCredentials(dir string, certPEM, keyPEM []byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("agent credentials: %w", err)
	}
	if err := pki.WriteFile(filepath.Join(dir, KeyFile), keyPEM, 0o600); err != nil {
		return fmt.Errorf("agent credentials: %w", err)
	}
	if err := pki.WriteFile(filepath.Join(dir, CertFile), certPEM, 0o600); err != nil {
		return fmt.Errorf("agent credentials: %w", err)
	}
	return nil
}

// fetchCA reads the cluster CA a server serves. It is public and trusted
// only once it matches the token's hash, so TLS is not verified here.
func fetchCA(ctx context.Context, base string) ([]byte, error) {
	c := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}}} //nolint:gosec // verified by hash
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+servertoken.CACertsPath, nil)
	if err != nil {
		return nil, fmt.Errorf("--server %q: %w", base, err)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch the cluster CA from %s: %w", base, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("fetch the cluster CA from %s: %w", base, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch the cluster CA from %s: %s", base, resp.Status)
	}
	return body, nil
}
