package agent

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/skiffhq/skiff/addons/logging/shipper"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/record"
)

// LogsOptions configures the agent's log shipper (addons/logging/shipper).
// The zero value ships to the API server's embedded log store
// (<server>/logs) with the agent's own credentials.
type LogsOptions struct {
	// Disabled runs no shipper.
	Disabled bool
	// ElasticsearchURL is the sink (default: the API server's URL + /logs).
	ElasticsearchURL string
	// APIKey or Username/Password authenticate to an external sink; CACert
	// (PEM) verifies it. Unset for the default sink, which uses the node's
	// client certificate.
	APIKey, Username, Password string
	CACert                     []byte
	// Header is added to every request to the sink.
	Header http.Header
	// Setup, if set, puts the index template and ILM policy on an external
	// sink before shipping (ignored for the default sink).
	Setup *shipper.Setup
	// Tune overrides shipper settings in tests (nil: defaults).
	Tune func(*shipper.Config)
}

// newLogShipper prepares the shipper before the runtime opens log files
// (it decides when rotation may remove a file); startLogShipper runs it.
func (a *Agent) newLogShipper(rc *rest.Config) error {
	lo := a.opts.Logs
	if lo.Disabled {
		return nil
	}
	cfg := shipper.Config{
		PodLogDir: a.opts.PodLogDir, StateDir: filepath.Join(a.opts.StateDir, "logshipper"), NodeName: a.opts.NodeName,
		URL: lo.ElasticsearchURL, APIKey: lo.APIKey, Username: lo.Username, Password: lo.Password, CACert: lo.CACert,
		Header: lo.Header, Pod: a.shipperPod, Events: &a.shipEvents, Registerer: a.metricsRegistry(), Logger: a.opts.Logger,
		Setup: lo.Setup,
	}
	if cfg.URL == "" {
		cfg.Setup = nil // the embedded store keeps its own mapping and retention
		// The embedded store, reached as the node (its client certificate).
		cfg.URL = strings.TrimSuffix(rc.Host, "/") + "/logs"
		rt, err := rest.TransportFor(rc)
		if err != nil {
			return fmt.Errorf("agent: log shipper transport: %w", err)
		}
		cfg.Transport = rt
	}
	if lo.Tune != nil {
		lo.Tune(&cfg)
	}
	s, err := shipper.New(cfg)
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	a.shipper = s
	return nil
}

func (a *Agent) startLogShipper(ctx context.Context) {
	if a.shipper == nil {
		return
	}
	a.shipEvents.rec.Store(&a.rec)
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		if err := a.shipper.Run(ctx); err != nil {
			a.log.Error("log shipper stopped", "err", err)
		}
	}()
}

// LogShipper is the agent's log shipper (nil when disabled).
func (a *Agent) LogShipper() *shipper.Shipper { return a.shipper }

// shipperPod is the pod cache lookup of the shipper, which may ask
// before the informer exists (rotation during adoption).
func (a *Agent) shipperPod(uid types.UID) *corev1.Pod {
	if a.pods == nil {
		return nil
	}
	return a.podByUID(uid)
}

// lazyEvents sends events through the agent's recorder once it exists
// (rotation may report dropped lines while the agent still starts).
type lazyEvents struct {
	rec atomic.Pointer[record.EventRecorder]
}

func (l *lazyEvents) Eventf(obj runtime.Object, typ, reason, msg string, args ...any) {
	if r := l.rec.Load(); r != nil {
		(*r).Eventf(obj, typ, reason, msg, args...)
	}
}

// metricsRegistry holds the agent's own series (the log shipper's),
// served at /metrics of the agent API (nodes/metrics).
func (a *Agent) metricsRegistry() *prometheus.Registry {
	a.regOnce.Do(func() { a.reg = prometheus.NewRegistry() })
	return a.reg
}
