// Package framework defines the scheduling framework of Skiff's scheduler:
// the extension points a plugin implements (PreFilter, Filter, PostFilter,
// PreScore, Score with NormalizeScore, Reserve/Unreserve, Permit, PreBind,
// Bind, PostBind and QueueSort), the status codes they answer with, the
// per-cycle state they share, the NodeInfo view of the cluster they read,
// and the registry through which a plugin package makes itself available:
//
//	func init() { framework.Register(Name, New) }
//
// The extension points and their semantics follow kube-scheduler's.
package framework

import (
	"context"
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/record"
)

// MaxNodeScore is the highest score a Score plugin gives after
// normalization; MinNodeScore the lowest.
const (
	MaxNodeScore int64 = 100
	MinNodeScore int64 = 0
)

// Plugin is what every plugin implements.
type Plugin interface {
	Name() string
}

// QueuedPodInfo is a pod waiting in the scheduling queue.
type QueuedPodInfo struct {
	*PodInfo
	// Timestamp is when the pod was last added to the queue.
	Timestamp time.Time
	// InitialAttemptTimestamp is when the pod was first popped.
	InitialAttemptTimestamp *time.Time
	// Attempts counts scheduling attempts.
	Attempts int
	// UnschedulablePlugins are the plugins that rejected the pod in its
	// last attempt; cluster events they care about requeue it.
	UnschedulablePlugins sets.Set[string]
	// Gated is unused for now (scheduling gates are honoured by the queue).
	Gated bool
}

// QueueSortPlugin orders the active queue.
type QueueSortPlugin interface {
	Plugin
	Less(a, b *QueuedPodInfo) bool
}

// PreFilterResult narrows the nodes to evaluate; nil NodeNames means all.
type PreFilterResult struct {
	NodeNames sets.Set[string]
}

// AllNodes reports whether r does not restrict the nodes.
func (r *PreFilterResult) AllNodes() bool { return r == nil || r.NodeNames == nil }

// Merge intersects two results.
func (r *PreFilterResult) Merge(o *PreFilterResult) *PreFilterResult {
	if r.AllNodes() && o.AllNodes() {
		return nil
	}
	if r.AllNodes() {
		return &PreFilterResult{NodeNames: o.NodeNames.Clone()}
	}
	if o.AllNodes() {
		return &PreFilterResult{NodeNames: r.NodeNames.Clone()}
	}
	return &PreFilterResult{NodeNames: r.NodeNames.Intersection(o.NodeNames)}
}

// PreFilterPlugin computes state for Filter once per cycle. Returning Skip
// skips the plugin's Filter for this pod.
type PreFilterPlugin interface {
	Plugin
	PreFilter(ctx context.Context, state *CycleState, pod *corev1.Pod) (*PreFilterResult, *Status)
	// PreFilterExtensions may be nil.
	PreFilterExtensions() PreFilterExtensions
}

// PreFilterExtensions updates PreFilter state when the scheduler evaluates
// "what if" cases (nominated pods, preemption victims).
type PreFilterExtensions interface {
	AddPod(ctx context.Context, state *CycleState, podToSchedule *corev1.Pod, podInfoToAdd *PodInfo, nodeInfo *NodeInfo) *Status
	RemovePod(ctx context.Context, state *CycleState, podToSchedule *corev1.Pod, podInfoToRemove *PodInfo, nodeInfo *NodeInfo) *Status
}

// FilterPlugin decides whether pod can run on a node.
type FilterPlugin interface {
	Plugin
	Filter(ctx context.Context, state *CycleState, pod *corev1.Pod, nodeInfo *NodeInfo) *Status
}

// PostFilterResult carries the node a PostFilter nominated.
type PostFilterResult struct {
	NominatedNodeName string
}

// PostFilterPlugin runs when no node fits (e.g. preemption).
type PostFilterPlugin interface {
	Plugin
	PostFilter(ctx context.Context, state *CycleState, pod *corev1.Pod, statuses *NodeToStatus) (*PostFilterResult, *Status)
}

// PreScorePlugin computes state for Score once per cycle. Skip skips the
// plugin's Score.
type PreScorePlugin interface {
	Plugin
	PreScore(ctx context.Context, state *CycleState, pod *corev1.Pod, nodes []*NodeInfo) *Status
}

// NodeScore is one node's score.
type NodeScore struct {
	Name  string
	Score int64
}

// NodeScoreList is the scores of all feasible nodes for one plugin.
type NodeScoreList []NodeScore

// ScorePlugin ranks feasible nodes.
type ScorePlugin interface {
	Plugin
	Score(ctx context.Context, state *CycleState, pod *corev1.Pod, nodeInfo *NodeInfo) (int64, *Status)
	// ScoreExtensions may be nil.
	ScoreExtensions() ScoreExtensions
}

// ScoreExtensions normalizes a plugin's scores into [MinNodeScore, MaxNodeScore].
type ScoreExtensions interface {
	NormalizeScore(ctx context.Context, state *CycleState, pod *corev1.Pod, scores NodeScoreList) *Status
}

// ReservePlugin is told when a node is reserved for a pod and when the
// reservation is undone.
type ReservePlugin interface {
	Plugin
	Reserve(ctx context.Context, state *CycleState, pod *corev1.Pod, nodeName string) *Status
	Unreserve(ctx context.Context, state *CycleState, pod *corev1.Pod, nodeName string)
}

// PermitPlugin may approve, deny or delay (Wait, with a timeout) binding.
type PermitPlugin interface {
	Plugin
	Permit(ctx context.Context, state *CycleState, pod *corev1.Pod, nodeName string) (*Status, time.Duration)
}

// PreBindPlugin runs before binding (e.g. provisioning volumes).
type PreBindPlugin interface {
	Plugin
	PreBind(ctx context.Context, state *CycleState, pod *corev1.Pod, nodeName string) *Status
}

// BindPlugin binds the pod; Skip passes to the next binder.
type BindPlugin interface {
	Plugin
	Bind(ctx context.Context, state *CycleState, pod *corev1.Pod, nodeName string) *Status
}

// PostBindPlugin is informed after a successful bind.
type PostBindPlugin interface {
	Plugin
	PostBind(ctx context.Context, state *CycleState, pod *corev1.Pod, nodeName string)
}

// ClusterEvent names a change that may make rejected pods schedulable.
type ClusterEvent string

// Events the queue reacts to.
const (
	EventNodeAdd              ClusterEvent = "NodeAdd"
	EventNodeUpdate           ClusterEvent = "NodeUpdate"
	EventAssignedPodAdd       ClusterEvent = "AssignedPodAdd"
	EventAssignedPodUpdate    ClusterEvent = "AssignedPodUpdate"
	EventAssignedPodDelete    ClusterEvent = "AssignedPodDelete"
	EventUnscheduledPodDelete ClusterEvent = "UnscheduledPodDelete"
	EventForceActivate        ClusterEvent = "ForceActivate"
	// Storage objects changed (the VolumeBinding plugin's events).
	EventPersistentVolumeChange      ClusterEvent = "PersistentVolumeChange"
	EventPersistentVolumeClaimChange ClusterEvent = "PersistentVolumeClaimChange"
	EventStorageClassChange          ClusterEvent = "StorageClassChange"
	EventCSIStorageCapacityChange    ClusterEvent = "CSIStorageCapacityChange"
)

// EnqueueExtensions is implemented by filtering plugins that know which
// events can make a pod they rejected schedulable. Plugins without it are
// assumed to care about every event.
type EnqueueExtensions interface {
	EventsToRegister() []ClusterEvent
}

// WaitingPod is a pod held at Permit.
type WaitingPod interface {
	Pod() *corev1.Pod
	Allow(pluginName string)
	Reject(pluginName, msg string)
}

// Parallelizer runs work across nodes with a bounded number of goroutines.
type Parallelizer interface {
	Until(ctx context.Context, pieces int, work func(i int))
}

// SharedLister is the cycle's snapshot of nodes.
type SharedLister interface {
	List() []*NodeInfo
	Get(nodeName string) (*NodeInfo, error)
	HavePodsWithAffinityList() []*NodeInfo
	HavePodsWithRequiredAntiAffinityList() []*NodeInfo
}

// Handle is what the scheduler gives plugins.
type Handle interface {
	ClientSet() kubernetes.Interface
	SharedInformerFactory() informers.SharedInformerFactory
	SnapshotSharedLister() SharedLister
	EventRecorder() record.EventRecorder
	Parallelizer() Parallelizer
	Logger() *slog.Logger
	// ProfileName is the schedulerName of the profile.
	ProfileName() string
	// PodPriority resolves a pod's priority (spec.priority, else its
	// PriorityClass, else the global default).
	PodPriority(pod *corev1.Pod) int32
	// NominatedPodsForNode lists pods nominated to run on nodeName.
	NominatedPodsForNode(nodeName string) []*PodInfo
	// RunFilterPluginsWithNominatedPods runs the profile's filters as the
	// scheduling cycle does, taking nominated pods into account.
	RunFilterPluginsWithNominatedPods(ctx context.Context, state *CycleState, pod *corev1.Pod, info *NodeInfo) *Status
	RunPreFilterExtensionAddPod(ctx context.Context, state *CycleState, podToSchedule *corev1.Pod, podInfoToAdd *PodInfo, nodeInfo *NodeInfo) *Status
	RunPreFilterExtensionRemovePod(ctx context.Context, state *CycleState, podToSchedule *corev1.Pod, podInfoToRemove *PodInfo, nodeInfo *NodeInfo) *Status
	GetWaitingPod(uid types.UID) WaitingPod
	IterateOverWaitingPods(fn func(WaitingPod))
}
