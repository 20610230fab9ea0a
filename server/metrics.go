package server

import (
	"context"
	"fmt"

	"github.com/skiffhq/skiff/addons/metrics"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// MetricsName is the --disable name of the metrics add-on.
const MetricsName = "metrics"

// startMetrics runs the metrics add-on (addons/metrics) and serves its
// metrics.k8s.io/v1beta1 resources from this API server (built in, no
// aggregation). It reads nodes and pods and scrapes the agents'
// /stats/summary with the API server's kubelet-client identity, which the
// agents authorize as nodes/stats (system:kubelet-api-admin).
func (s *Server) startMetrics(ctx context.Context) {
	if s.disabled(MetricsName) {
		return
	}
	m, err := s.newMetrics()
	if err != nil {
		s.log.Error("metrics", "err", err)
		return
	}
	for _, r := range m.Resources() {
		s.api.Registry().Add(r)
	}
	s.metrics = m
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := m.Run(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("metrics stopped", "err", err)
		}
	}()
}

func (s *Server) newMetrics() (*metrics.Collector, error) {
	rc, err := s.ComponentConfig(kubeletClientUser, []string{"system:masters"})
	if err != nil {
		return nil, fmt.Errorf("metrics identity: %w", err)
	}
	rc = rest.CopyConfig(rc)
	rc.QPS, rc.Burst = -1, 0
	rc.UserAgent = "skiff-metrics"
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("metrics client: %w", err)
	}
	scraper, err := metrics.NewHTTPScraper(rc)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	if s.cfg.MetricsScrapeURL != nil {
		scraper.URL = s.cfg.MetricsScrapeURL
	}
	return metrics.New(metrics.Options{
		Client: cs, Scraper: scraper, Interval: s.cfg.MetricsResolution, RemoteWrite: s.cfg.MetricsRemoteWrite,
		Registerer: s.api.MetricsRegistry(), Logger: s.cfg.Logger,
	})
}

// Metrics returns the metrics add-on (nil when disabled or not started).
func (s *Server) Metrics() *metrics.Collector { return s.metrics }
