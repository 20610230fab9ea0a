package job

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/skiffhq/skiff/controlplane/controllers/internal/podutil"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Condition messages, as upstream.
const (
	msgBackoffLimit     = "Job has reached the specified backoff limit"
	msgDeadline         = "Job was active longer than specified deadline"
	msgCompletions      = "Reached expected number of succeeded pods"
	msgSuspended        = "Job suspended"
	msgResumed          = "Job resumed"
	reasonSuspended     = "JobSuspended"
	reasonResumed       = "JobResumed"
	completionIndexEnv  = "JOB_COMPLETION_INDEX"
	controllerManagedBy = "kubernetes.io/job-controller"
)

// Defaults of the pod failure backoff (upstream's DefaultJobPodFailureBackOff
// and MaxJobPodFailureBackOff).
const (
	DefaultPodFailureBackoff    = 10 * time.Second
	DefaultMaxPodFailureBackoff = 10 * time.Minute
)

// FindCondition returns the job's condition of type t, or nil.
func FindCondition(j *batchv1.Job, t batchv1.JobConditionType) *batchv1.JobCondition {
	for i := range j.Status.Conditions {
		if j.Status.Conditions[i].Type == t {
			return &j.Status.Conditions[i]
		}
	}
	return nil
}

// HasCondition reports a True condition of type t.
func HasCondition(j *batchv1.Job, t batchv1.JobConditionType) bool {
	c := FindCondition(j, t)
	return c != nil && c.Status == corev1.ConditionTrue
}

// IsFinished reports a job with a True Complete or Failed condition.
func IsFinished(j *batchv1.Job) bool {
	return HasCondition(j, batchv1.JobComplete) || HasCondition(j, batchv1.JobFailed)
}

// setCondition sets (or updates) a condition; it returns whether it changed.
func setCondition(j *batchv1.Job, t batchv1.JobConditionType, status corev1.ConditionStatus, reason, msg string, now time.Time) bool {
	if c := FindCondition(j, t); c != nil {
		if c.Status == status && c.Reason == reason && c.Message == msg {
			return false
		}
		if c.Status != status {
			c.LastTransitionTime = metav1.NewTime(now)
		}
		c.Status, c.Reason, c.Message = status, reason, msg
		c.LastProbeTime = metav1.NewTime(now)
		return true
	}
	j.Status.Conditions = append(j.Status.Conditions, batchv1.JobCondition{
		Type: t, Status: status, Reason: reason, Message: msg,
		LastProbeTime: metav1.NewTime(now), LastTransitionTime: metav1.NewTime(now),
	})
	return true
}

func isIndexed(j *batchv1.Job) bool {
	return j.Spec.CompletionMode != nil && *j.Spec.CompletionMode == batchv1.IndexedCompletion
}

func isSuspended(j *batchv1.Job) bool { return j.Spec.Suspend != nil && *j.Spec.Suspend }

func onlyReplaceFailed(j *batchv1.Job) bool {
	return j.Spec.PodReplacementPolicy != nil && *j.Spec.PodReplacementPolicy == batchv1.Failed
}

func parallelism(j *batchv1.Job) int {
	if j.Spec.Parallelism == nil {
		return 1
	}
	return int(*j.Spec.Parallelism)
}

func hasFinalizer(p *corev1.Pod) bool {
	for _, f := range p.Finalizers {
		if f == batchv1.JobTrackingFinalizer {
			return true
		}
	}
	return false
}

// isTerminating reports a pod being deleted that has not reached a
// terminal phase.
func isTerminating(p *corev1.Pod) bool {
	return p.DeletionTimestamp != nil && !podutil.IsTerminated(p)
}

// IsPodFailed reports whether the job counts p as failed: phase Failed, or
// (unless the job replaces only Failed pods) deleted before it succeeded.
func IsPodFailed(p *corev1.Pod, j *batchv1.Job) bool {
	if p.Status.Phase == corev1.PodFailed {
		return true
	}
	if onlyReplaceFailed(j) {
		return false
	}
	return p.DeletionTimestamp != nil && p.Status.Phase != corev1.PodSucceeded
}

// PodIndex returns the completion index of a pod of an Indexed job, or -1.
func PodIndex(p *corev1.Pod) int {
	v, ok := p.Annotations[batchv1.JobCompletionIndexAnnotation]
	if !ok {
		v, ok = p.Labels[batchv1.JobCompletionIndexAnnotation]
	}
	if !ok {
		return -1
	}
	i, err := strconv.Atoi(v)
	if err != nil || i < 0 {
		return -1
	}
	return i
}

// Indexes is a sorted set of completion indexes.
type Indexes map[int]bool

// ParseIndexes parses upstream's interval form ("1,3-5,7"), ignoring
// indexes at or beyond limit and malformed parts.
func ParseIndexes(s string, limit int) Indexes {
	out := Indexes{}
	if s == "" {
		return out
	}
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			continue
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil {
				continue
			}
		}
		for i := a; i <= b && i < limit; i++ {
			if i >= 0 {
				out[i] = true
			}
		}
	}
	return out
}

// String formats the set in upstream's interval form.
func (s Indexes) String() string {
	keys := make([]int, 0, len(s))
	for k := range s {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	var b strings.Builder
	for i := 0; i < len(keys); {
		j := i
		for j+1 < len(keys) && keys[j+1] == keys[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		if j == i {
			fmt.Fprintf(&b, "%d", keys[i])
		} else {
			fmt.Fprintf(&b, "%d-%d", keys[i], keys[j])
		}
		i = j + 1
	}
	return b.String()
}

// PolicyAction is the outcome of the pod failure policy for a failed pod.
type PolicyAction struct {
	// Action is FailJob, FailIndex, Ignore or Count ("" when no rule matched).
	Action batchv1.PodFailurePolicyAction
	// Message explains a FailJob match, as upstream words it.
	Message string
}

// MatchPodFailurePolicy applies the job's podFailurePolicy to a Failed pod:
// the first rule whose onExitCodes or onPodConditions requirement matches
// decides. Containers that exited 0 never match an exit code rule.
func MatchPodFailurePolicy(policy *batchv1.PodFailurePolicy, p *corev1.Pod) PolicyAction {
	if policy == nil || p.Status.Phase != corev1.PodFailed {
		return PolicyAction{}
	}
	for i, rule := range policy.Rules {
		if req := rule.OnExitCodes; req != nil {
			if ctr, code, ok := matchExitCodes(req, p); ok {
				return PolicyAction{Action: rule.Action, Message: fmt.Sprintf(
					"Container %s for pod %s/%s failed with exit code %d matching %s rule at index %d",
					ctr, p.Namespace, p.Name, code, rule.Action, i)}
			}
			continue
		}
		for _, pc := range rule.OnPodConditions {
			status := pc.Status
			if status == "" {
				status = corev1.ConditionTrue
			}
			for _, c := range p.Status.Conditions {
				if c.Type == pc.Type && c.Status == status {
					return PolicyAction{Action: rule.Action, Message: fmt.Sprintf(
						"Pod %s/%s has condition %s matching %s rule at index %d", p.Namespace, p.Name, c.Type, rule.Action, i)}
				}
			}
		}
	}
	return PolicyAction{}
}

func matchExitCodes(req *batchv1.PodFailurePolicyOnExitCodesRequirement, p *corev1.Pod) (string, int32, bool) {
	statuses := append(append([]corev1.ContainerStatus(nil), p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...)
	for _, cs := range statuses {
		if req.ContainerName != nil && *req.ContainerName != cs.Name {
			continue
		}
		t := cs.State.Terminated
		if t == nil || t.ExitCode == 0 {
			continue
		}
		in := false
		for _, v := range req.Values {
			if v == t.ExitCode {
				in = true
				break
			}
		}
		if (req.Operator == batchv1.PodFailurePolicyOnExitCodesOpIn) == in {
			return cs.Name, t.ExitCode, true
		}
	}
	return "", 0, false
}

// WantActive is how many pods a NonIndexed job should be running given its
// succeeded count and the pods it has now.
func WantActive(j *batchv1.Job, succeeded, active int) int {
	par := parallelism(j)
	if j.Spec.Completions == nil {
		if succeeded > 0 {
			return min(active, par)
		}
		return par
	}
	return max(0, min(par, int(*j.Spec.Completions)-succeeded))
}

// IndexesToCreate lists the indexes of an Indexed job that need a new pod:
// lowest first, skipping completed and failed indexes and those with a pod
// (active, or terminating when the job replaces only failed pods), at most
// room of them.
func IndexesToCreate(completions int, done, failed Indexes, busy map[int]bool, room int) []int {
	var out []int
	for i := 0; i < completions && len(out) < room; i++ {
		if done[i] || failed[i] || busy[i] {
			continue
		}
		out = append(out, i)
	}
	return out
}

// Backoff is the delay before a new pod after failures consecutive failed
// pods: base*2^(failures-1), capped at limit.
func Backoff(failures int, base, limit time.Duration) time.Duration {
	if failures <= 0 {
		return 0
	}
	d := base
	for i := 1; i < failures; i++ {
		d *= 2
		if d >= limit {
			return limit
		}
	}
	return min(d, limit)
}

// PastBackoffLimit reports whether failures (plus, for OnFailure pods, the
// restarts of active pods' containers) exceed spec.backoffLimit.
func PastBackoffLimit(j *batchv1.Job, failed int, active []*corev1.Pod) bool {
	limit := 6
	if j.Spec.BackoffLimit != nil {
		limit = int(*j.Spec.BackoffLimit)
	}
	if failed > limit {
		return true
	}
	if j.Spec.Template.Spec.RestartPolicy != corev1.RestartPolicyOnFailure {
		return false
	}
	restarts := failed
	for _, p := range active {
		for _, cs := range append(append([]corev1.ContainerStatus(nil), p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
			restarts += int(cs.RestartCount)
		}
	}
	return limit == 0 && restarts > 0 || restarts > limit
}

// deletionOrder sorts pods so the ones to delete first come first:
// unscheduled, then pending, then not ready, then newest.
func deletionOrder(pods []*corev1.Pod) {
	rank := func(p *corev1.Pod) int {
		switch {
		case p.Spec.NodeName == "":
			return 0
		case p.Status.Phase == corev1.PodPending:
			return 1
		case !podutil.IsReady(p):
			return 2
		}
		return 3
	}
	sort.SliceStable(pods, func(a, b int) bool {
		ra, rb := rank(pods[a]), rank(pods[b])
		if ra != rb {
			return ra < rb
		}
		return pods[b].CreationTimestamp.Before(&pods[a].CreationTimestamp)
	})
}

// PodForIndex decorates a new pod of an Indexed job with its completion
// index: annotation and label, the JOB_COMPLETION_INDEX environment
// variable in every container, and hostname <job>-<index>.
func PodForIndex(p *corev1.Pod, jobName string, index int) {
	v := strconv.Itoa(index)
	if p.Annotations == nil {
		p.Annotations = map[string]string{}
	}
	p.Annotations[batchv1.JobCompletionIndexAnnotation] = v
	if p.Labels == nil {
		p.Labels = map[string]string{}
	}
	p.Labels[batchv1.JobCompletionIndexAnnotation] = v
	env := corev1.EnvVar{Name: completionIndexEnv, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{
		FieldPath: fmt.Sprintf("metadata.annotations['%s']", batchv1.JobCompletionIndexAnnotation)}}}
	add := func(cs []corev1.Container) {
		for i := range cs {
			has := false
			for _, e := range cs[i].Env {
				if e.Name == completionIndexEnv {
					has = true
				}
			}
			if !has {
				cs[i].Env = append(cs[i].Env, env)
			}
		}
	}
	add(p.Spec.InitContainers)
	add(p.Spec.Containers)
	if p.Spec.Hostname == "" {
		p.Spec.Hostname = fmt.Sprintf("%s-%d", jobName, index)
	}
	suffix := fmt.Sprintf("-%d-", index)
	if len(jobName)+len(suffix) > 58 {
		jobName = jobName[:58-len(suffix)]
	}
	p.GenerateName = jobName + suffix
}
