package framework

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/record"
)

// Extension point names, as in the configuration file.
const (
	PointQueueSort  = "queueSort"
	PointPreFilter  = "preFilter"
	PointFilter     = "filter"
	PointPostFilter = "postFilter"
	PointPreScore   = "preScore"
	PointScore      = "score"
	PointReserve    = "reserve"
	PointPermit     = "permit"
	PointPreBind    = "preBind"
	PointBind       = "bind"
	PointPostBind   = "postBind"
)

// Points lists the extension points in scheduling order.
var Points = []string{PointQueueSort, PointPreFilter, PointFilter, PointPostFilter, PointPreScore, PointScore, PointReserve, PointPermit, PointPreBind, PointBind, PointPostBind}

// PluginRef is an enabled plugin with its score weight.
type PluginRef struct {
	Name   string
	Weight int32
}

// ProfileSpec is a profile's plugin configuration after merging with the
// defaults: plugins enabled at every extension point they implement
// (MultiPoint), plugins enabled at one point (Points, placed before the
// multi-point ones), plugins disabled at one point ("*" disables every
// multi-point plugin there), and each plugin's args.
type ProfileSpec struct {
	SchedulerName string
	MultiPoint    []PluginRef
	Points        map[string][]PluginRef
	Disabled      map[string][]string
	Args          map[string]json.RawMessage
}

// Expand lists the plugins of each extension point, in order: first those
// enabled at that point, then the multi-point plugins that implement it
// and are not disabled there.
func (spec ProfileSpec) Expand(implements func(name, point string) bool) map[string][]PluginRef {
	out := map[string][]PluginRef{}
	for _, point := range Points {
		seen := sets.New[string]()
		var list []PluginRef
		for _, ref := range spec.Points[point] {
			if !seen.Has(ref.Name) {
				seen.Insert(ref.Name)
				list = append(list, ref)
			}
		}
		disabled := sets.New(spec.Disabled[point]...)
		for _, ref := range spec.MultiPoint {
			if seen.Has(ref.Name) || disabled.Has(ref.Name) || disabled.Has("*") || !implements(ref.Name, point) {
				continue
			}
			seen.Insert(ref.Name)
			list = append(list, ref)
		}
		out[point] = list
	}
	return out
}

// Nominator knows the pods nominated to nodes by preemption.
type Nominator interface {
	NominatedPodsForNode(nodeName string) []*PodInfo
}

// Deps are the scheduler services a Framework hands its plugins.
type Deps struct {
	Client          kubernetes.Interface
	InformerFactory informers.SharedInformerFactory
	Snapshot        SharedLister
	Recorder        record.EventRecorder
	Parallelizer    Parallelizer
	Logger          *slog.Logger
	PodPriority     func(*corev1.Pod) int32
	Nominator       Nominator
}

// Framework runs the plugins of one profile. It is also the Handle its
// plugins get.
type Framework struct {
	deps    Deps
	name    string
	plugins map[string]Plugin

	queueSort  QueueSortPlugin
	preFilter  []PreFilterPlugin
	filter     []FilterPlugin
	postFilter []PostFilterPlugin
	preScore   []PreScorePlugin
	score      []ScorePlugin
	weights    map[string]int64
	reserve    []ReservePlugin
	permit     []PermitPlugin
	preBind    []PreBindPlugin
	bind       []BindPlugin
	postBind   []PostBindPlugin

	waitingMu sync.Mutex
	waiting   map[types.UID]*waitingPod
}

var _ Handle = (*Framework)(nil)

// New builds the framework of one profile from reg.
func New(reg Registry, spec ProfileSpec, deps Deps) (*Framework, error) {
	f := &Framework{
		deps:    deps,
		name:    spec.SchedulerName,
		plugins: map[string]Plugin{},
		weights: map[string]int64{},
		waiting: map[types.UID]*waitingPod{},
	}
	if f.deps.Parallelizer == nil {
		f.deps.Parallelizer = NewParallelizer(DefaultParallelism)
	}
	if f.deps.Logger == nil {
		f.deps.Logger = slog.Default()
	}
	if f.deps.PodPriority == nil {
		f.deps.PodPriority = func(p *corev1.Pod) int32 {
			if p.Spec.Priority != nil {
				return *p.Spec.Priority
			}
			return 0
		}
	}
	get := func(name string) (Plugin, error) {
		if p, ok := f.plugins[name]; ok {
			return p, nil
		}
		factory, ok := reg[name]
		if !ok {
			return nil, fmt.Errorf("profile %q: plugin %q is not registered", spec.SchedulerName, name)
		}
		p, err := factory(spec.Args[name], f)
		if err != nil {
			return nil, fmt.Errorf("profile %q: plugin %q: %w", spec.SchedulerName, name, err)
		}
		f.plugins[name] = p
		return p, nil
	}
	for name := range spec.Args {
		if _, ok := reg[name]; !ok {
			return nil, fmt.Errorf("profile %q: pluginConfig names unknown plugin %q", spec.SchedulerName, name)
		}
	}
	var names []string
	for _, ref := range spec.MultiPoint {
		names = append(names, ref.Name)
	}
	for _, point := range Points {
		for _, ref := range spec.Points[point] {
			names = append(names, ref.Name)
		}
	}
	for _, name := range names {
		if _, err := get(name); err != nil {
			return nil, err
		}
	}
	expanded := spec.Expand(func(name, point string) bool { return Implements(f.plugins[name], point) })
	for _, point := range Points {
		for _, ref := range expanded[point] {
			p := f.plugins[ref.Name]
			ok := true
			switch point {
			case PointQueueSort:
				var qs QueueSortPlugin
				if qs, ok = p.(QueueSortPlugin); ok {
					if f.queueSort != nil {
						return nil, fmt.Errorf("profile %q: only one queueSort plugin may be enabled", spec.SchedulerName)
					}
					f.queueSort = qs
				}
			case PointPreFilter:
				ok = appendAs(&f.preFilter, p)
			case PointFilter:
				ok = appendAs(&f.filter, p)
			case PointPostFilter:
				ok = appendAs(&f.postFilter, p)
			case PointPreScore:
				ok = appendAs(&f.preScore, p)
			case PointScore:
				if ok = appendAs(&f.score, p); ok {
					w := int64(ref.Weight)
					if w <= 0 {
						w = 1
					}
					f.weights[ref.Name] = w
				}
			case PointReserve:
				ok = appendAs(&f.reserve, p)
			case PointPermit:
				ok = appendAs(&f.permit, p)
			case PointPreBind:
				ok = appendAs(&f.preBind, p)
			case PointBind:
				ok = appendAs(&f.bind, p)
			case PointPostBind:
				ok = appendAs(&f.postBind, p)
			}
			if !ok {
				return nil, fmt.Errorf("profile %q: plugin %q does not implement the %s extension point", spec.SchedulerName, ref.Name, point)
			}
		}
	}
	if f.queueSort == nil {
		return nil, fmt.Errorf("profile %q: no queueSort plugin is enabled", spec.SchedulerName)
	}
	if len(f.bind) == 0 {
		return nil, fmt.Errorf("profile %q: no bind plugin is enabled", spec.SchedulerName)
	}
	return f, nil
}

func appendAs[T any](list *[]T, p Plugin) bool {
	t, ok := p.(T)
	if ok {
		*list = append(*list, t)
	}
	return ok
}

// Implements reports whether p implements the extension point.
func Implements(p Plugin, point string) bool {
	switch point {
	case PointQueueSort:
		_, ok := p.(QueueSortPlugin)
		return ok
	case PointPreFilter:
		_, ok := p.(PreFilterPlugin)
		return ok
	case PointFilter:
		_, ok := p.(FilterPlugin)
		return ok
	case PointPostFilter:
		_, ok := p.(PostFilterPlugin)
		return ok
	case PointPreScore:
		_, ok := p.(PreScorePlugin)
		return ok
	case PointScore:
		_, ok := p.(ScorePlugin)
		return ok
	case PointReserve:
		_, ok := p.(ReservePlugin)
		return ok
	case PointPermit:
		_, ok := p.(PermitPlugin)
		return ok
	case PointPreBind:
		_, ok := p.(PreBindPlugin)
		return ok
	case PointBind:
		_, ok := p.(BindPlugin)
		return ok
	case PointPostBind:
		_, ok := p.(PostBindPlugin)
		return ok
	}
	return false
}

// Handle implementation.

func (f *Framework) ClientSet() kubernetes.Interface { return f.deps.Client }
func (f *Framework) SharedInformerFactory() informers.SharedInformerFactory {
	return f.deps.InformerFactory
}
func (f *Framework) SnapshotSharedLister() SharedLister  { return f.deps.Snapshot }
func (f *Framework) EventRecorder() record.EventRecorder { return f.deps.Recorder }
func (f *Framework) Parallelizer() Parallelizer          { return f.deps.Parallelizer }
func (f *Framework) Logger() *slog.Logger                { return f.deps.Logger }
func (f *Framework) ProfileName() string                 { return f.name }
func (f *Framework) PodPriority(pod *corev1.Pod) int32   { return f.deps.PodPriority(pod) }
func (f *Framework) QueueSort() QueueSortPlugin          { return f.queueSort }
func (f *Framework) HasPostFilter() bool                 { return len(f.postFilter) > 0 }
func (f *Framework) Plugin(name string) (Plugin, bool)   { p, ok := f.plugins[name]; return p, ok }

// NominatedPodsForNode lists the pods nominated to nodeName.
func (f *Framework) NominatedPodsForNode(nodeName string) []*PodInfo {
	if f.deps.Nominator == nil {
		return nil
	}
	return f.deps.Nominator.NominatedPodsForNode(nodeName)
}

// PluginEvents maps each filtering plugin to the events that can make a
// pod it rejected schedulable (nil: every event).
func (f *Framework) PluginEvents() map[string]sets.Set[ClusterEvent] {
	out := map[string]sets.Set[ClusterEvent]{}
	for name, p := range f.plugins {
		if ee, ok := p.(EnqueueExtensions); ok {
			out[name] = sets.New(ee.EventsToRegister()...)
		} else {
			out[name] = nil
		}
	}
	return out
}

// RunPreFilterPlugins runs PreFilter; the result narrows the nodes. The
// returned set names the plugins that rejected the pod.
func (f *Framework) RunPreFilterPlugins(ctx context.Context, state *CycleState, pod *corev1.Pod) (*PreFilterResult, *Status, sets.Set[string]) {
	var result *PreFilterResult
	skip := sets.New[string]()
	var narrowedBy []string
	for _, p := range f.preFilter {
		r, s := p.PreFilter(ctx, state, pod)
		if s.IsSkip() {
			skip.Insert(p.Name())
			continue
		}
		if !s.IsSuccess() {
			s.WithPlugin(p.Name())
			if s.IsRejected() {
				return nil, s, sets.New(p.Name())
			}
			return nil, AsStatus(fmt.Errorf("running PreFilter plugin %q: %w", p.Name(), s.AsError())).WithPlugin(p.Name()), nil
		}
		if !r.AllNodes() {
			narrowedBy = append(narrowedBy, p.Name())
		}
		result = result.Merge(r)
		if !result.AllNodes() && result.NodeNames.Len() == 0 {
			msg := fmt.Sprintf("node(s) didn't satisfy plugin(s) %v simultaneously", narrowedBy)
			if len(narrowedBy) == 1 {
				msg = "node(s) didn't satisfy plugin " + narrowedBy[0]
			}
			return nil, NewStatus(UnschedulableAndUnresolvable, msg).WithPlugin(narrowedBy[len(narrowedBy)-1]), sets.New(narrowedBy...)
		}
	}
	state.SkipFilterPlugins = skip
	return result, nil, nil
}

// RunPreFilterExtensionAddPod tells PreFilter plugins that podInfoToAdd
// is (hypothetically) on nodeInfo.
func (f *Framework) RunPreFilterExtensionAddPod(ctx context.Context, state *CycleState, podToSchedule *corev1.Pod, podInfoToAdd *PodInfo, nodeInfo *NodeInfo) *Status {
	for _, p := range f.preFilter {
		if state.SkipFilterPlugins.Has(p.Name()) {
			continue
		}
		if ext := p.PreFilterExtensions(); ext != nil {
			if s := ext.AddPod(ctx, state, podToSchedule, podInfoToAdd, nodeInfo); !s.IsSuccess() {
				return AsStatus(fmt.Errorf("running AddPod on PreFilter plugin %q: %w", p.Name(), s.AsError()))
			}
		}
	}
	return nil
}

// RunPreFilterExtensionRemovePod tells PreFilter plugins that
// podInfoToRemove is (hypothetically) gone from nodeInfo.
func (f *Framework) RunPreFilterExtensionRemovePod(ctx context.Context, state *CycleState, podToSchedule *corev1.Pod, podInfoToRemove *PodInfo, nodeInfo *NodeInfo) *Status {
	for _, p := range f.preFilter {
		if state.SkipFilterPlugins.Has(p.Name()) {
			continue
		}
		if ext := p.PreFilterExtensions(); ext != nil {
			if s := ext.RemovePod(ctx, state, podToSchedule, podInfoToRemove, nodeInfo); !s.IsSuccess() {
				return AsStatus(fmt.Errorf("running RemovePod on PreFilter plugin %q: %w", p.Name(), s.AsError()))
			}
		}
	}
	return nil
}

// RunFilterPlugins runs the filters until one rejects the node.
func (f *Framework) RunFilterPlugins(ctx context.Context, state *CycleState, pod *corev1.Pod, nodeInfo *NodeInfo) *Status {
	for _, p := range f.filter {
		if state.SkipFilterPlugins.Has(p.Name()) {
			continue
		}
		if s := p.Filter(ctx, state, pod, nodeInfo); !s.IsSuccess() {
			if !s.IsRejected() {
				s = AsStatus(fmt.Errorf("running %q filter plugin: %w", p.Name(), s.AsError()))
			}
			return s.WithPlugin(p.Name())
		}
	}
	return nil
}

// RunFilterPluginsWithNominatedPods runs the filters twice when pods of
// equal or higher priority are nominated to the node: once as if they
// were there, once without them; the pod must pass both (as upstream).
func (f *Framework) RunFilterPluginsWithNominatedPods(ctx context.Context, state *CycleState, pod *corev1.Pod, info *NodeInfo) *Status {
	var s *Status
	podsAdded := false
	for i := 0; i < 2; i++ {
		stateToUse, infoToUse := state, info
		if i == 0 {
			var err error
			podsAdded, stateToUse, infoToUse, err = f.addNominatedPods(ctx, pod, state, info)
			if err != nil {
				return AsStatus(err)
			}
		} else if !podsAdded || !s.IsSuccess() {
			break
		}
		s = f.RunFilterPlugins(ctx, stateToUse, pod, infoToUse)
		if !s.IsSuccess() && !s.IsRejected() {
			return s
		}
	}
	return s
}

func (f *Framework) addNominatedPods(ctx context.Context, pod *corev1.Pod, state *CycleState, info *NodeInfo) (bool, *CycleState, *NodeInfo, error) {
	if info.Node() == nil {
		return false, state, info, nil
	}
	nominated := f.NominatedPodsForNode(info.Node().Name)
	if len(nominated) == 0 {
		return false, state, info, nil
	}
	prio := f.PodPriority(pod)
	var out *NodeInfo
	var outState *CycleState
	for _, pi := range nominated {
		if f.PodPriority(pi.Pod) < prio || pi.Pod.UID == pod.UID {
			continue
		}
		if out == nil {
			out, outState = info.Clone(), state.Clone()
		}
		out.AddPodInfo(pi)
		if s := f.RunPreFilterExtensionAddPod(ctx, outState, pod, pi, out); !s.IsSuccess() {
			return false, state, info, s.AsError()
		}
	}
	if out == nil {
		return false, state, info, nil
	}
	return true, outState, out, nil
}

// RunPostFilterPlugins runs PostFilter plugins until one succeeds.
func (f *Framework) RunPostFilterPlugins(ctx context.Context, state *CycleState, pod *corev1.Pod, statuses *NodeToStatus) (*PostFilterResult, *Status) {
	var reasons []string
	var rejector string
	for _, p := range f.postFilter {
		r, s := p.PostFilter(ctx, state, pod, statuses)
		if s.IsSuccess() {
			return r, s
		}
		if !s.IsRejected() {
			return nil, s.WithPlugin(p.Name())
		}
		reasons = append(reasons, s.Reasons()...)
		rejector = p.Name()
	}
	return nil, NewStatus(Unschedulable, reasons...).WithPlugin(rejector)
}

// RunPreScorePlugins runs PreScore.
func (f *Framework) RunPreScorePlugins(ctx context.Context, state *CycleState, pod *corev1.Pod, nodes []*NodeInfo) *Status {
	skip := sets.New[string]()
	for _, p := range f.preScore {
		s := p.PreScore(ctx, state, pod, nodes)
		if s.IsSkip() {
			skip.Insert(p.Name())
			continue
		}
		if !s.IsSuccess() {
			return AsStatus(fmt.Errorf("running PreScore plugin %q: %w", p.Name(), s.AsError())).WithPlugin(p.Name())
		}
	}
	state.SkipScorePlugins = skip
	return nil
}

// RunScorePlugins scores nodes with every plugin, normalizes and weighs
// the scores, and returns each node's total.
func (f *Framework) RunScorePlugins(ctx context.Context, state *CycleState, pod *corev1.Pod, nodes []*NodeInfo) ([]NodeScore, *Status) {
	var active []ScorePlugin
	for _, p := range f.score {
		if !state.SkipScorePlugins.Has(p.Name()) {
			active = append(active, p)
		}
	}
	totals := make([]NodeScore, len(nodes))
	for i, n := range nodes {
		totals[i].Name = n.Node().Name
	}
	if len(active) == 0 {
		return totals, nil
	}
	perPlugin := make([]NodeScoreList, len(active))
	for j := range active {
		perPlugin[j] = make(NodeScoreList, len(nodes))
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var errMu sync.Mutex
	var firstErr *Status
	f.deps.Parallelizer.Until(ctx, len(nodes), func(i int) {
		for j, p := range active {
			s, st := p.Score(ctx, state, pod, nodes[i])
			if !st.IsSuccess() {
				errMu.Lock()
				if firstErr == nil {
					firstErr = AsStatus(fmt.Errorf("plugin %q failed with: %w", p.Name(), st.AsError())).WithPlugin(p.Name())
				}
				errMu.Unlock()
				cancel()
				return
			}
			perPlugin[j][i] = NodeScore{Name: totals[i].Name, Score: s}
		}
	})
	if firstErr != nil {
		return nil, firstErr
	}
	for j, p := range active {
		if ext := p.ScoreExtensions(); ext != nil {
			if s := ext.NormalizeScore(ctx, state, pod, perPlugin[j]); !s.IsSuccess() {
				return nil, AsStatus(fmt.Errorf("running NormalizeScore of %q: %w", p.Name(), s.AsError())).WithPlugin(p.Name())
			}
		}
		w := f.weights[p.Name()]
		for i := range perPlugin[j] {
			sc := perPlugin[j][i].Score
			if sc > MaxNodeScore || sc < MinNodeScore {
				return nil, AsStatus(fmt.Errorf("plugin %q returns an invalid score %v, it should in the range of [%v, %v] after normalizing", p.Name(), sc, MinNodeScore, MaxNodeScore))
			}
			totals[i].Score += sc * w
		}
	}
	return totals, nil
}

// RunReservePluginsReserve reserves the node with every Reserve plugin.
func (f *Framework) RunReservePluginsReserve(ctx context.Context, state *CycleState, pod *corev1.Pod, node string) *Status {
	for _, p := range f.reserve {
		if s := p.Reserve(ctx, state, pod, node); !s.IsSuccess() {
			if s.IsRejected() {
				return s.WithPlugin(p.Name())
			}
			return AsStatus(fmt.Errorf("running Reserve plugin %q: %w", p.Name(), s.AsError())).WithPlugin(p.Name())
		}
	}
	return nil
}

// RunReservePluginsUnreserve undoes reservations in reverse order.
func (f *Framework) RunReservePluginsUnreserve(ctx context.Context, state *CycleState, pod *corev1.Pod, node string) {
	for i := len(f.reserve) - 1; i >= 0; i-- {
		f.reserve[i].Unreserve(ctx, state, pod, node)
	}
}

// RunPermitPlugins asks every Permit plugin; Wait parks the pod until all
// waiting plugins allow it (WaitOnPermit) or the shortest timeout passes.
func (f *Framework) RunPermitPlugins(ctx context.Context, state *CycleState, pod *corev1.Pod, node string) *Status {
	waits := map[string]time.Duration{}
	for _, p := range f.permit {
		s, timeout := p.Permit(ctx, state, pod, node)
		switch {
		case s.IsSuccess():
		case s.IsWait():
			if timeout > 15*time.Minute {
				timeout = 15 * time.Minute
			}
			waits[p.Name()] = timeout
		case s.IsRejected():
			return s.WithPlugin(p.Name())
		default:
			return AsStatus(fmt.Errorf("running Permit plugin %q: %w", p.Name(), s.AsError())).WithPlugin(p.Name())
		}
	}
	if len(waits) > 0 {
		wp := newWaitingPod(pod, waits)
		f.waitingMu.Lock()
		f.waiting[pod.UID] = wp
		f.waitingMu.Unlock()
		return NewStatus(Wait, "one or more plugins asked to wait and no plugin rejected pod")
	}
	return nil
}

// WaitOnPermit blocks until a waiting pod is allowed or rejected.
func (f *Framework) WaitOnPermit(ctx context.Context, pod *corev1.Pod) *Status {
	f.waitingMu.Lock()
	wp := f.waiting[pod.UID]
	f.waitingMu.Unlock()
	if wp == nil {
		return nil
	}
	defer func() {
		f.waitingMu.Lock()
		delete(f.waiting, pod.UID)
		f.waitingMu.Unlock()
	}()
	select {
	case s := <-wp.done:
		return s
	case <-ctx.Done():
		return AsStatus(ctx.Err())
	}
}

// GetWaitingPod returns the pod waiting at Permit with uid, or nil.
func (f *Framework) GetWaitingPod(uid types.UID) WaitingPod {
	f.waitingMu.Lock()
	defer f.waitingMu.Unlock()
	if wp, ok := f.waiting[uid]; ok {
		return wp
	}
	return nil
}

// IterateOverWaitingPods calls fn for each waiting pod.
func (f *Framework) IterateOverWaitingPods(fn func(WaitingPod)) {
	f.waitingMu.Lock()
	list := make([]*waitingPod, 0, len(f.waiting))
	for _, wp := range f.waiting {
		list = append(list, wp)
	}
	f.waitingMu.Unlock()
	for _, wp := range list {
		fn(wp)
	}
}

// RunPreBindPlugins runs PreBind.
func (f *Framework) RunPreBindPlugins(ctx context.Context, state *CycleState, pod *corev1.Pod, node string) *Status {
	for _, p := range f.preBind {
		if s := p.PreBind(ctx, state, pod, node); !s.IsSuccess() && !s.IsSkip() {
			if s.IsRejected() {
				return s.WithPlugin(p.Name())
			}
			return AsStatus(fmt.Errorf("running PreBind plugin %q: %w", p.Name(), s.AsError())).WithPlugin(p.Name())
		}
	}
	return nil
}

// RunBindPlugins runs binders until one does not Skip.
func (f *Framework) RunBindPlugins(ctx context.Context, state *CycleState, pod *corev1.Pod, node string) *Status {
	for _, p := range f.bind {
		s := p.Bind(ctx, state, pod, node)
		if s.IsSkip() {
			continue
		}
		if !s.IsSuccess() {
			if s.IsRejected() {
				return s.WithPlugin(p.Name())
			}
			return AsStatus(fmt.Errorf("running Bind plugin %q: %w", p.Name(), s.AsError())).WithPlugin(p.Name())
		}
		return nil
	}
	return NewStatus(Skip, "all bind plugins skipped")
}

// RunPostBindPlugins runs PostBind.
func (f *Framework) RunPostBindPlugins(ctx context.Context, state *CycleState, pod *corev1.Pod, node string) {
	for _, p := range f.postBind {
		p.PostBind(ctx, state, pod, node)
	}
}

type waitingPod struct {
	pod     *corev1.Pod
	mu      sync.Mutex
	pending map[string]*time.Timer
	done    chan *Status
}

func newWaitingPod(pod *corev1.Pod, waits map[string]time.Duration) *waitingPod {
	wp := &waitingPod{pod: pod, pending: map[string]*time.Timer{}, done: make(chan *Status, 1)}
	wp.mu.Lock()
	defer wp.mu.Unlock()
	for name, d := range waits {
		name := name
		wp.pending[name] = time.AfterFunc(d, func() {
			wp.Reject(name, fmt.Sprintf("rejected due to timeout after waiting %v at plugin %v", d, name))
		})
	}
	return wp
}

func (w *waitingPod) Pod() *corev1.Pod { return w.pod }

func (w *waitingPod) Allow(plugin string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if t, ok := w.pending[plugin]; ok {
		t.Stop()
		delete(w.pending, plugin)
	}
	if len(w.pending) == 0 {
		select {
		case w.done <- nil:
		default:
		}
	}
}

func (w *waitingPod) Reject(plugin, msg string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, t := range w.pending {
		t.Stop()
	}
	select {
	case w.done <- NewStatus(Unschedulable, msg).WithPlugin(plugin):
	default:
	}
}
