package scheduler

// The in-tree plugins register themselves with the framework.
import (
	_ "github.com/skiffhq/skiff/controlplane/scheduler/plugins/defaultbinder"
	_ "github.com/skiffhq/skiff/controlplane/scheduler/plugins/defaultpreemption"
	_ "github.com/skiffhq/skiff/controlplane/scheduler/plugins/imagelocality"
	_ "github.com/skiffhq/skiff/controlplane/scheduler/plugins/interpodaffinity"
	_ "github.com/skiffhq/skiff/controlplane/scheduler/plugins/nodeaffinity"
	_ "github.com/skiffhq/skiff/controlplane/scheduler/plugins/nodename"
	_ "github.com/skiffhq/skiff/controlplane/scheduler/plugins/nodeports"
	_ "github.com/skiffhq/skiff/controlplane/scheduler/plugins/noderesources"
	_ "github.com/skiffhq/skiff/controlplane/scheduler/plugins/nodeunschedulable"
	_ "github.com/skiffhq/skiff/controlplane/scheduler/plugins/podtopologyspread"
	_ "github.com/skiffhq/skiff/controlplane/scheduler/plugins/queuesort"
	_ "github.com/skiffhq/skiff/controlplane/scheduler/plugins/tainttoleration"
	_ "github.com/skiffhq/skiff/controlplane/scheduler/plugins/volumebinding"
)
