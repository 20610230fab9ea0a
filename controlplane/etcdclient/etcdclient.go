// Package etcdclient tells the operator commands (`skiff etcd-snapshot`,
// `skiff migrate`) how to reach the etcd a server uses: the server records
// its endpoints and TLS files in <data-dir>/db/etcd-client.json at start,
// and Connect reads that record and dials.
package etcdclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// File is the record's path relative to the data directory.
const File = "db/etcd-client.json"

// ErrNoRecord means the data directory has no record: the server never
// started there (or is older than the record).
var ErrNoRecord = errors.New("no etcd client record (has `skiff server` run with this --data-dir?)")

// Info is how to reach the datastore. TLS files are absolute paths (for the
// embedded etcd: its CA and the API server's client certificate for it);
// all empty means plain HTTP.
type Info struct {
	Endpoints []string `json:"endpoints"`
	CAFile    string   `json:"caFile,omitempty"`
	CertFile  string   `json:"certFile,omitempty"`
	KeyFile   string   `json:"keyFile,omitempty"`
	// Embedded is true when the server runs the etcd member itself.
	Embedded bool `json:"embedded"`
}

// Write records info for dataDir (mode 0600, atomically).
func Write(dataDir string, info Info) error {
	for _, p := range []*string{&info.CAFile, &info.CertFile, &info.KeyFile} {
		if *p != "" {
			abs, err := filepath.Abs(*p)
			if err != nil {
				return err
			}
			*p = abs
		}
	}
	data, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return err
	}
	path := filepath.Join(dataDir, File)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Read returns the record of dataDir.
func Read(dataDir string) (Info, error) {
	var info Info
	data, err := os.ReadFile(filepath.Join(dataDir, File))
	if errors.Is(err, os.ErrNotExist) {
		return info, ErrNoRecord
	}
	if err != nil {
		return info, err
	}
	if err := json.Unmarshal(data, &info); err != nil {
		return info, fmt.Errorf("%s: %w", File, err)
	}
	return info, nil
}

// TLS builds the client TLS config of info (nil when it has no TLS files).
func (info Info) TLS() (*tls.Config, error) {
	if info.CAFile == "" && info.CertFile == "" {
		return nil, nil
	}
	t := &tls.Config{MinVersion: tls.VersionTLS12}
	if info.CAFile != "" {
		pem, err := os.ReadFile(info.CAFile)
		if err != nil {
			return nil, fmt.Errorf("datastore CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("datastore CA %s: no certificates", info.CAFile)
		}
		t.RootCAs = pool
	}
	if info.CertFile != "" {
		pair, err := tls.LoadX509KeyPair(info.CertFile, info.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("datastore client certificate: %w", err)
		}
		t.Certificates = []tls.Certificate{pair}
	}
	return t, nil
}

// Connect dials info's endpoints and checks that etcd answers.
func (info Info) Connect(ctx context.Context) (*clientv3.Client, error) {
	if len(info.Endpoints) == 0 {
		return nil, errors.New("no etcd endpoints")
	}
	t, err := info.TLS()
	if err != nil {
		return nil, err
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:          info.Endpoints,
		DialTimeout:        10 * time.Second,
		TLS:                t,
		MaxCallRecvMsgSize: 1 << 30,
		Context:            ctx,
	})
	if err != nil {
		return nil, fmt.Errorf("etcd client: %w", err)
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := cli.Get(cctx, "/registry/health"); err != nil {
		_ = cli.Close()
		return nil, fmt.Errorf("etcd at %v is not reachable (is the server running?): %w", info.Endpoints, err)
	}
	return cli, nil
}
