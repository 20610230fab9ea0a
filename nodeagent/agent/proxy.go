package agent

import (
	"context"
	"fmt"

	"github.com/skiffhq/skiff/nodeagent/proxy"
)

// Proxy modes (Options.ProxyMode, `--proxy-mode`).
const (
	ProxyModeNFTables  = "nftables"
	ProxyModeUserspace = "userspace"
	ProxyModeNone      = "none"
)

// ValidateProxyMode says whether mode is one `--proxy-mode` accepts.
func ValidateProxyMode(mode string) error {
	switch mode {
	case "", ProxyModeNone, ProxyModeNFTables, ProxyModeUserspace:
		return nil
	}
	return fmt.Errorf("unknown proxy mode %q (nftables, userspace or none)", mode)
}

// startProxy runs the service proxy (package proxy) with the agent's node
// identity until ctx ends. In nftables mode the table stays when the agent
// stops, so services keep working across an agent restart; in userspace
// mode the listeners end with the agent. proxy.Cleanup removes what either
// mode leaves (table, holder link).
func (a *Agent) startProxy(ctx context.Context) error {
	if err := ValidateProxyMode(a.opts.ProxyMode); err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	if a.opts.ProxyMode == "" || a.opts.ProxyMode == ProxyModeNone {
		return nil
	}
	o := a.opts.Proxy
	o.NodeName = a.opts.NodeName
	if o.ClusterCIDR == "" {
		o.ClusterCIDR = a.opts.ClusterCIDR
	}
	if o.Logger == nil {
		o.Logger = a.opts.Logger
	}
	var run func(context.Context) error
	if a.opts.ProxyMode == ProxyModeUserspace {
		p, err := proxy.NewUserspace(a.client, o)
		if err != nil {
			return fmt.Errorf("agent: %w", err)
		}
		run = p.Run
	} else {
		p, err := proxy.New(a.client, o)
		if err != nil {
			return fmt.Errorf("agent: %w", err)
		}
		run = p.Run
	}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		if err := run(ctx); err != nil && ctx.Err() == nil {
			a.log.Error("service proxy stopped", "err", err)
		}
	}()
	return nil
}
