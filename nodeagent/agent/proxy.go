package agent

import (
	"context"
	"errors"
	"fmt"

	"github.com/skiffhq/skiff/nodeagent/proxy"
)

// Proxy modes (Options.ProxyMode, `--proxy-mode`).
const (
	ProxyModeNFTables  = "nftables"
	ProxyModeUserspace = "userspace"
	ProxyModeNone      = "none"
)

// startProxy runs the service proxy (package proxy) with the agent's node
// identity until ctx ends. The nftables table stays when the agent stops,
// so services keep working across an agent restart; proxy.Cleanup removes
// it.
func (a *Agent) startProxy(ctx context.Context) error {
	switch a.opts.ProxyMode {
	case "", ProxyModeNone:
		return nil
	case ProxyModeNFTables:
	case ProxyModeUserspace:
		return errors.New("agent: proxy mode userspace is not implemented yet (use nftables or none)")
	default:
		return fmt.Errorf("agent: unknown proxy mode %q (nftables, userspace or none)", a.opts.ProxyMode)
	}
	o := a.opts.Proxy
	o.NodeName = a.opts.NodeName
	if o.ClusterCIDR == "" {
		o.ClusterCIDR = a.opts.ClusterCIDR
	}
	if o.Logger == nil {
		o.Logger = a.opts.Logger
	}
	p, err := proxy.New(a.client, o)
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		if err := p.Run(ctx); err != nil && ctx.Err() == nil {
			a.log.Error("service proxy stopped", "err", err)
		}
	}()
	return nil
}
