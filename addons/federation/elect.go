package federation

import (
	"context"

	"github.com/skiffhq/skiff/controlplane/leaderelect"
)

// LeaseName is the Lease, in kube-system, that the one running federation
// controller of a host cluster holds: servers started with
// `--enable federation` and standalone `skiff federation` processes
// campaign for the same Lease, so they never reconcile side by side.
const LeaseName = "skiff-" + Name

// RunElected runs c only while holding the Lease le names, the way
// upstream's standalone controllers run: it returns nil when ctx ends
// (releasing the Lease), leaderelect.ErrLost when the Lease is lost
// (without le.Again; the process exits and its supervisor starts it
// again), and Run's error when the controller fails while leading, after
// releasing the Lease so that another instance takes over at once.
func RunElected(ctx context.Context, c *Controller, le leaderelect.Config) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var runErr error
	err := leaderelect.Run(ctx, le, func(lctx context.Context) {
		if err := c.Run(lctx); err != nil && lctx.Err() == nil {
			runErr = err
			cancel()
		}
	})
	if runErr != nil {
		return runErr // err is nil: the cancel above ended the election
	}
	return err
}
