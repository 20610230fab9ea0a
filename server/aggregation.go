package server

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"path/filepath"
	"time"

	"github.com/skiffhq/skiff/controlplane/aggregator"
	"github.com/skiffhq/skiff/controlplane/pki"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
)

// FrontProxyDir holds the front-proxy CA (shared by every server of a
// cluster) and this server's front-proxy client certificate, relative to
// the data directory.
const FrontProxyDir = "tls/front-proxy"

// The front-proxy client certificate's CN, the one allowed name extension
// servers accept identity headers from.
const frontProxyCN = "front-proxy-client"

// AuthConfigMap is upstream's kube-system ConfigMap that tells extension
// API servers whom to trust: the client CA, and the front-proxy CA with
// its allowed names and header names.
const AuthConfigMap = "extension-apiserver-authentication"

// setupFrontProxy loads or creates the front-proxy CA and the client
// certificate the aggregator presents to extension API servers. It is a
// CA of its own, as upstream recommends, so that no certificate the
// cluster CA signs (nodes, CSRs) can assert identity headers.
func (s *Server) setupFrontProxy() error {
	dir := filepath.Join(s.cfg.DataDir, FrontProxyDir)
	ca, err := pki.LoadOrCreateCA(dir, "front-proxy-ca", "skiff-front-proxy-ca")
	if err != nil {
		return fmt.Errorf("front-proxy CA: %w", err)
	}
	s.frontProxyCerts = &pki.Rotator{CA: ca, Dir: dir, Lifetime: s.cfg.CertLifetime, RenewBefore: s.cfg.CertRenewBefore,
		Logger: s.cfg.Logger.With("component", "certificates", "ca", "front-proxy-ca")}
	leaf, err := s.frontProxyCerts.Leaf(pki.LeafSpec{Name: frontProxyCN, CN: frontProxyCN})
	if err != nil {
		return fmt.Errorf("front-proxy client certificate: %w", err)
	}
	s.frontProxy = leaf
	return nil
}

// startAggregator publishes the extension-apiserver-authentication
// ConfigMap and runs the aggregation layer (controlplane/aggregator).
func (s *Server) startAggregator(ctx context.Context) error {
	rc, err := s.ComponentConfig("system:kube-aggregator", []string{"system:masters"})
	if err != nil {
		return fmt.Errorf("aggregator identity: %w", err)
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return fmt.Errorf("aggregator client: %w", err)
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return fmt.Errorf("aggregator client: %w", err)
	}
	if err := s.publishAuthConfigMap(ctx, cs); err != nil {
		return err
	}
	a := aggregator.New(aggregator.Options{Client: cs, Dynamic: dyn, ProxyCert: s.frontProxy.GetClientCertificate,
		CheckInterval: s.cfg.AggregatorCheckInterval, Logger: s.cfg.Logger})
	s.api.SetAggregator(a)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := a.Run(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("aggregator stopped", "err", err)
		}
	}()
	return nil
}

// authConfigMapData is the ConfigMap's content, in upstream's keys.
func (s *Server) authConfigMapData() (map[string]string, error) {
	list := func(v ...string) string {
		b, _ := json.Marshal(v)
		return string(b)
	}
	if s.frontProxyCerts == nil {
		return nil, fmt.Errorf("no front-proxy CA")
	}
	return map[string]string{
		"client-ca-file":                     string(s.ca.CertPEM),
		"requestheader-client-ca-file":       string(s.frontProxyCerts.CA.CertPEM),
		"requestheader-allowed-names":        list(frontProxyCN),
		"requestheader-username-headers":     list("X-Remote-User"),
		"requestheader-uid-headers":          list("X-Remote-Uid"),
		"requestheader-group-headers":        list("X-Remote-Group"),
		"requestheader-extra-headers-prefix": list("X-Remote-Extra-"),
	}, nil
}

// publishAuthConfigMap creates or updates kube-system's
// extension-apiserver-authentication (every server writes the same
// content: the CAs are shared).
func (s *Server) publishAuthConfigMap(ctx context.Context, cs kubernetes.Interface) error {
	data, err := s.authConfigMapData()
	if err != nil {
		return err
	}
	cms := cs.CoreV1().ConfigMaps(metav1.NamespaceSystem)
	for attempt := 0; ; attempt++ {
		cur, err := cms.Get(ctx, AuthConfigMap, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			_, err = cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: AuthConfigMap, Namespace: metav1.NamespaceSystem}, Data: data}, metav1.CreateOptions{})
		case err == nil && !maps.Equal(cur.Data, data):
			cur.Data = data
			_, err = cms.Update(ctx, cur, metav1.UpdateOptions{})
		}
		if err == nil {
			return nil
		}
		if attempt == 5 || ctx.Err() != nil {
			return fmt.Errorf("publish %s/%s: %w", metav1.NamespaceSystem, AuthConfigMap, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
