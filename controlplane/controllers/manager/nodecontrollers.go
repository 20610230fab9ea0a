package manager

import (
	"context"

	"github.com/skiffhq/skiff/controlplane/controllers"
	"github.com/skiffhq/skiff/controlplane/controllers/nodeipam"
	"github.com/skiffhq/skiff/controlplane/controllers/nodelifecycle"
)

// NodeLifecycleConfig tunes node failure detection and eviction.
type NodeLifecycleConfig = nodelifecycle.Timing

func newNodeLifecycle(c *Context) (controllers.Controller, error) {
	return nodelifecycle.New(nodelifecycle.Config{Client: c.Client, Informers: c.Informers,
		Recorder: c.Recorder("node-controller"), Logger: c.Logger, Timing: c.Config.NodeLifecycle})
}

func newTaintEviction(c *Context) (controllers.Controller, error) {
	return nodelifecycle.NewTaintEviction(nodelifecycle.TaintEvictionConfig{Client: c.Client, Informers: c.Informers,
		Recorder: c.Recorder("taint-eviction-controller"), Logger: c.Logger})
}

func newNodeIPAM(c *Context) (controllers.Controller, error) {
	if c.Config.ClusterCIDR == "" {
		c.Logger.Info("node IPAM is off: no cluster CIDR")
		return idle(nodeipam.Name), nil
	}
	return nodeipam.New(nodeipam.Config{Client: c.Client, Informers: c.Informers,
		Recorder: c.Recorder("cidrAllocator"), Logger: c.Logger, ClusterCIDR: c.Config.ClusterCIDR})
}

// idle is a controller that is enabled but has nothing to do.
type idle string

func (i idle) Name() string { return string(i) }

func (i idle) Run(ctx context.Context, _ int) error {
	<-ctx.Done()
	return nil
}
