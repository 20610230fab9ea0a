package scheduler

import (
	"github.com/skiffhq/skiff/controlplane/scheduler/framework"
	"k8s.io/client-go/kubernetes"
)

// NewFrameworkForSnapshot builds the default profile's framework reading
// snap, for plugin unit tests and benchmarks (client may be nil; the
// informer factory is then unavailable to plugins).
func NewFrameworkForSnapshot(snap *Snapshot, client kubernetes.Interface) (*framework.Framework, error) {
	p := Profile{SchedulerName: DefaultSchedulerName}
	return framework.New(framework.Registered(), p.ProfileSpec(), framework.Deps{Client: client, Snapshot: snap})
}
