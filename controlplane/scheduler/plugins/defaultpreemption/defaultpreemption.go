// Package defaultpreemption is the DefaultPreemption plugin (PostFilter):
// when no node fits a pod, it looks for the node where evicting the fewest,
// least important lower-priority pods makes the pod fit, nominates the pod
// to that node (status.nominatedNodeName) and deletes the victims
// gracefully. PodDisruptionBudgets are not consulted yet.
package defaultpreemption

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/skiffhq/skiff/controlplane/scheduler/framework"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Name of the plugin and the reasons it reports.
const (
	Name              = "DefaultPreemption"
	ReasonNotHelpful  = "Preemption is not helpful for scheduling"
	ReasonNoVictims   = "No preemption victims found for incoming pod"
	reasonPolicyNever = "not eligible due to preemptionPolicy=Never."
	reasonTerminating = "not eligible due to a terminating pod on the nominated node."
)

func init() { framework.Register(Name, New) }

// Args are DefaultPreemptionArgs (accepted; every node is evaluated).
type Args struct {
	MinCandidateNodesPercentage *int32 `json:"minCandidateNodesPercentage,omitempty"`
	MinCandidateNodesAbsolute   *int32 `json:"minCandidateNodesAbsolute,omitempty"`
}

// DefaultPreemption is the plugin.
type DefaultPreemption struct{ h framework.Handle }

var _ framework.PostFilterPlugin = (*DefaultPreemption)(nil)

// New builds the plugin.
func New(raw json.RawMessage, h framework.Handle) (framework.Plugin, error) {
	var a Args
	if err := framework.DecodeArgs(raw, &a); err != nil {
		return nil, err
	}
	return &DefaultPreemption{h: h}, nil
}

// Name implements framework.Plugin.
func (*DefaultPreemption) Name() string { return Name }

// Candidate is a node and the pods to evict there.
type Candidate struct {
	Node    string
	Victims []*corev1.Pod
}

// PostFilter implements framework.PostFilterPlugin.
func (p *DefaultPreemption) PostFilter(ctx context.Context, state *framework.CycleState, pod *corev1.Pod, statuses *framework.NodeToStatus) (*framework.PostFilterResult, *framework.Status) {
	if msg, ok := p.eligible(pod); !ok {
		return nil, framework.NewStatus(framework.Unschedulable, msg)
	}
	c, nodeStatuses, total, st := p.FindCandidate(ctx, state, pod, statuses)
	if !st.IsSuccess() {
		return nil, st
	}
	if c == nil {
		return nil, framework.NewStatus(framework.Unschedulable, "preemption: "+fitMessage(total, nodeStatuses))
	}
	if err := p.prepare(ctx, pod, c); err != nil {
		return nil, framework.AsStatus(err)
	}
	return &framework.PostFilterResult{NominatedNodeName: c.Node}, nil
}

func fitMessage(total int, statuses map[string]*framework.Status) string {
	counts := map[string]int{}
	for _, s := range statuses {
		for _, r := range s.Reasons() {
			counts[r]++
		}
	}
	var parts []string
	for r, n := range counts {
		parts = append(parts, fmt.Sprintf("%d %s", n, r))
	}
	sort.Strings(parts)
	msg := fmt.Sprintf("0/%d nodes are available:", total)
	if len(parts) > 0 {
		msg += " " + strings.Join(parts, ", ") + "."
	}
	return msg
}

func (p *DefaultPreemption) eligible(pod *corev1.Pod) (string, bool) {
	if pod.Spec.PreemptionPolicy != nil && *pod.Spec.PreemptionPolicy == corev1.PreemptNever {
		return reasonPolicyNever, false
	}
	if nn := pod.Status.NominatedNodeName; nn != "" {
		ni, err := p.h.SnapshotSharedLister().Get(nn)
		if err == nil {
			prio := p.h.PodPriority(pod)
			for _, pi := range ni.Pods {
				if pi.Pod.DeletionTimestamp != nil && p.h.PodPriority(pi.Pod) < prio {
					return reasonTerminating, false
				}
			}
		}
	}
	return "", true
}

// FindCandidate dry-runs preemption on every node the filters rejected
// with a resolvable status and returns the best candidate (nil if none),
// with the per-node reasons for the message.
func (p *DefaultPreemption) FindCandidate(ctx context.Context, state *framework.CycleState, pod *corev1.Pod, statuses *framework.NodeToStatus) (*Candidate, map[string]*framework.Status, int, *framework.Status) {
	all := p.h.SnapshotSharedLister().List()
	reasons := map[string]*framework.Status{}
	var potential []*framework.NodeInfo
	for _, ni := range all {
		s := statuses.Get(ni.Node().Name)
		if s.Code() == framework.UnschedulableAndUnresolvable {
			reasons[ni.Node().Name] = framework.NewStatus(framework.UnschedulableAndUnresolvable, ReasonNotHelpful)
			continue
		}
		potential = append(potential, ni)
	}
	var mu sync.Mutex
	var cands []*Candidate
	prio := p.h.PodPriority(pod)
	p.h.Parallelizer().Until(ctx, len(potential), func(i int) {
		// A node without lower-priority pods has no victims: answer before
		// copying the node and the cycle state (the copies dominated failed
		// cycles with inter-pod affinity state on large clusters).
		if !hasLowerPriority(p.h, potential[i], prio) {
			mu.Lock()
			reasons[potential[i].Node().Name] = framework.NewStatus(framework.UnschedulableAndUnresolvable, ReasonNoVictims)
			mu.Unlock()
			return
		}
		ni := potential[i].Clone()
		victims, st := p.selectVictims(ctx, state.Clone(), pod, ni)
		mu.Lock()
		defer mu.Unlock()
		if st.IsSuccess() {
			cands = append(cands, &Candidate{Node: ni.Node().Name, Victims: victims})
			return
		}
		reasons[ni.Node().Name] = st
	})
	if len(cands) == 0 {
		return nil, reasons, len(all), nil
	}
	return p.pick(cands), reasons, len(all), nil
}

func hasLowerPriority(h framework.Handle, ni *framework.NodeInfo, prio int32) bool {
	for _, pi := range ni.Pods {
		if h.PodPriority(pi.Pod) < prio {
			return true
		}
	}
	return false
}

// selectVictims removes every lower-priority pod from ni, checks that pod
// fits, then adds back as many as possible, highest priority first.
func (p *DefaultPreemption) selectVictims(ctx context.Context, state *framework.CycleState, pod *corev1.Pod, ni *framework.NodeInfo) ([]*corev1.Pod, *framework.Status) {
	prio := p.h.PodPriority(pod)
	var lower []*framework.PodInfo
	for _, pi := range append([]*framework.PodInfo(nil), ni.Pods...) {
		if p.h.PodPriority(pi.Pod) < prio {
			lower = append(lower, pi)
			ni.RemovePod(pi.Pod)
			if s := p.h.RunPreFilterExtensionRemovePod(ctx, state, pod, pi, ni); !s.IsSuccess() {
				return nil, s
			}
		}
	}
	if len(lower) == 0 {
		return nil, framework.NewStatus(framework.UnschedulableAndUnresolvable, ReasonNoVictims)
	}
	if s := p.h.RunFilterPluginsWithNominatedPods(ctx, state, pod, ni); !s.IsSuccess() {
		return nil, s
	}
	sort.SliceStable(lower, func(i, j int) bool {
		pi, pj := p.h.PodPriority(lower[i].Pod), p.h.PodPriority(lower[j].Pod)
		if pi != pj {
			return pi > pj
		}
		return startTime(lower[i].Pod).Time.Before(startTime(lower[j].Pod).Time)
	})
	var victims []*corev1.Pod
	for _, pi := range lower {
		ni.AddPodInfo(pi)
		if s := p.h.RunPreFilterExtensionAddPod(ctx, state, pod, pi, ni); !s.IsSuccess() {
			return nil, s
		}
		if s := p.h.RunFilterPluginsWithNominatedPods(ctx, state, pod, ni); !s.IsSuccess() {
			ni.RemovePod(pi.Pod)
			if s := p.h.RunPreFilterExtensionRemovePod(ctx, state, pod, pi, ni); !s.IsSuccess() {
				return nil, s
			}
			victims = append(victims, pi.Pod)
		}
	}
	return victims, nil
}

func startTime(p *corev1.Pod) metav1.Time {
	if p.Status.StartTime != nil {
		return *p.Status.StartTime
	}
	return p.CreationTimestamp
}

// pick chooses the candidate whose most important victim is least
// important, then the smallest sum of victim priorities, then the fewest
// victims, as upstream.
func (p *DefaultPreemption) pick(cands []*Candidate) *Candidate {
	type key struct {
		highest int32
		sum     int64
		n       int
	}
	score := func(c *Candidate) key {
		k := key{highest: -1 << 31, n: len(c.Victims)}
		for _, v := range c.Victims {
			pr := p.h.PodPriority(v)
			k.highest = max(k.highest, pr)
			k.sum += int64(pr) + (1 << 31) // shift so negative priorities sum sensibly
		}
		return k
	}
	sort.SliceStable(cands, func(i, j int) bool {
		a, b := score(cands[i]), score(cands[j])
		if a.highest != b.highest {
			return a.highest < b.highest
		}
		if a.sum != b.sum {
			return a.sum < b.sum
		}
		if a.n != b.n {
			return a.n < b.n
		}
		return cands[i].Node < cands[j].Node
	})
	return cands[0]
}

// prepare marks and deletes the victims and clears the nominations of
// lower-priority pods on the node.
func (p *DefaultPreemption) prepare(ctx context.Context, pod *corev1.Pod, c *Candidate) error {
	cs := p.h.ClientSet()
	for _, v := range c.Victims {
		cond := map[string]any{"status": map[string]any{"conditions": []any{map[string]any{
			"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler",
			"message":            p.h.ProfileName() + ": preempting to accommodate a higher priority pod",
			"lastTransitionTime": metav1.Now().UTC().Format("2006-01-02T15:04:05Z"),
		}}}}
		if body, err := json.Marshal(cond); err == nil {
			_, _ = cs.CoreV1().Pods(v.Namespace).Patch(ctx, v.Name, types.StrategicMergePatchType, body, metav1.PatchOptions{}, "status")
		}
		err := cs.CoreV1().Pods(v.Namespace).Delete(ctx, v.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &v.UID}})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("preempt %s/%s: %w", v.Namespace, v.Name, err)
		}
		if rec := p.h.EventRecorder(); rec != nil {
			rec.Eventf(v, corev1.EventTypeNormal, "Preempted", "Preempted by pod %v on node %v", pod.UID, c.Node)
		}
	}
	prio := p.h.PodPriority(pod)
	for _, pi := range p.h.NominatedPodsForNode(c.Node) {
		if pi.Pod.UID == pod.UID || p.h.PodPriority(pi.Pod) >= prio {
			continue
		}
		body := []byte(`{"status":{"nominatedNodeName":null}}`)
		_, _ = cs.CoreV1().Pods(pi.Pod.Namespace).Patch(ctx, pi.Pod.Name, types.MergePatchType, body, metav1.PatchOptions{}, "status")
	}
	return nil
}
