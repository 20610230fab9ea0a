package server

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
)

func datastoreTLS(cfg Config) (*tls.Config, error) {
	t := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.DatastoreCAFile != "" {
		pem, err := os.ReadFile(cfg.DatastoreCAFile)
		if err != nil {
			return nil, fmt.Errorf("datastore CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("datastore CA %s: no certificates", cfg.DatastoreCAFile)
		}
		t.RootCAs = pool
	}
	if cfg.DatastoreCertFile != "" {
		pair, err := tls.LoadX509KeyPair(cfg.DatastoreCertFile, cfg.DatastoreKeyFile)
		if err != nil {
			return nil, fmt.Errorf("datastore client certificate: %w", err)
		}
		t.Certificates = []tls.Certificate{pair}
	}
	return t, nil
}
