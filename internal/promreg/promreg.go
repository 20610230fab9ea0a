// Package promreg registers Prometheus collectors so that a component
// restarted in the same process (an elected add-on that lost and won its
// lease again) keeps exporting its metrics: a collector the registry
// already holds under the same description is reused, not dropped.
package promreg

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Register registers c with reg and returns it, or returns the collector
// of the same description reg already holds, which the caller must then
// use in c's place (c itself would never be collected). A nil reg
// registers nothing and returns c.
func Register[T prometheus.Collector](reg prometheus.Registerer, c T) (T, error) {
	if reg == nil {
		return c, nil
	}
	err := reg.Register(c)
	if err == nil {
		return c, nil
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(T); ok {
			return existing, nil
		}
	}
	var zero T
	return zero, fmt.Errorf("register metrics: %w", err)
}
