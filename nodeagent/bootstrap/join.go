package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

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
	caPEM, err := servertoken.FetchCA(ctx, base, tok.CAHash)
	if err != nil {
		return "", err
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
