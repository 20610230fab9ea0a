package podautoscaler

import (
	"math"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Upstream's defaults (kube-controller-manager flags).
const (
	Tolerance                     = 0.1
	CPUInitializationPeriod       = 5 * time.Minute
	DelayOfInitialReadinessStatus = 30 * time.Second
)

// PodMetric is one pod's usage of a resource (sum of its containers):
// millicores for CPU, bytes for memory.
type PodMetric struct {
	Timestamp time.Time
	Window    time.Duration
	Value     int64
}

// podGroups splits the selected pods as upstream's groupPods: pods with
// metrics that count, pods without metrics (missing), and pods whose CPU
// is not trusted yet (unready: starting up, or not ready). Deleted and
// failed pods are ignored.
func podGroups(pods []*corev1.Pod, metrics map[string]PodMetric, res corev1.ResourceName, now time.Time) (ready map[string]PodMetric, unready, missing []string, ignored map[string]bool) {
	ready = map[string]PodMetric{}
	ignored = map[string]bool{}
	for _, p := range pods {
		if p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodFailed {
			ignored[p.Name] = true
			continue
		}
		if p.Status.Phase == corev1.PodPending {
			unready = append(unready, p.Name)
			continue
		}
		m, ok := metrics[p.Name]
		if !ok {
			missing = append(missing, p.Name)
			continue
		}
		if res == corev1.ResourceCPU && cpuUnready(p, m, now) {
			unready = append(unready, p.Name)
			continue
		}
		ready[p.Name] = m
	}
	return ready, unready, missing, ignored
}

func cpuUnready(p *corev1.Pod, m PodMetric, now time.Time) bool {
	var cond *corev1.PodCondition
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == corev1.PodReady {
			cond = &p.Status.Conditions[i]
		}
	}
	if cond == nil || p.Status.StartTime == nil {
		return true
	}
	start := p.Status.StartTime.Time
	if start.Add(CPUInitializationPeriod).After(now) {
		// Starting: trust a ready pod's sample only once it covers a full
		// window after it became ready.
		return cond.Status == corev1.ConditionFalse || m.Timestamp.Before(cond.LastTransitionTime.Add(m.Window))
	}
	// Later: unready only if it never became ready since starting.
	return cond.Status == corev1.ConditionFalse && start.Add(DelayOfInitialReadinessStatus).After(cond.LastTransitionTime.Time)
}

// requests sums a resource's container requests per pod; a pod without
// a request for it is an error for utilization targets.
func requests(pods []*corev1.Pod, res corev1.ResourceName) (map[string]int64, string) {
	out := make(map[string]int64, len(pods))
	for _, p := range pods {
		var sum int64
		for _, c := range p.Spec.Containers {
			q, ok := c.Resources.Requests[res]
			if !ok {
				return nil, "missing request for " + string(res) + " in container " + c.Name + " of Pod " + p.Name
			}
			sum += q.MilliValue()
		}
		out[p.Name] = sum
	}
	return out, ""
}

// replicasFor is upstream's replica calculation for one resource metric.
// target is a utilization percentage (useRequests) or an average value
// per pod (milli-units); it returns the proposal and the current
// utilization (percent, only with requests) and average value.
func replicasFor(current int32, pods []*corev1.Pod, metrics map[string]PodMetric, res corev1.ResourceName, target int64, useRequests bool, now time.Time) (replicas int32, utilization int32, average int64, errMsg string) {
	if len(pods) == 0 {
		return 0, 0, 0, "no pods returned by selector while calculating replica count"
	}
	ready, unready, missing, _ := podGroups(pods, metrics, res, now)
	var reqs map[string]int64
	if useRequests {
		var msg string
		if reqs, msg = requests(pods, res); msg != "" {
			return 0, 0, 0, msg
		}
	}
	if len(ready) == 0 {
		return 0, 0, 0, "did not receive metrics for targeted pods (pods might be unready)"
	}
	ratio := func(m map[string]PodMetric) (float64, int32, int64) {
		var sum, reqSum int64
		for name, v := range m {
			sum += v.Value
			if useRequests {
				reqSum += reqs[name]
			}
		}
		avg := sum / int64(len(m))
		if useRequests {
			if reqSum == 0 {
				return 0, 0, avg
			}
			u := float64(sum) * 100 / float64(reqSum)
			return u / float64(target), int32(u), avg
		}
		return float64(avg) / float64(target), 0, avg
	}
	r, util, avg := ratio(ready)
	scaleUp := r > 1.0
	if len(missing) == 0 && (len(unready) == 0 || !scaleUp) {
		if math.Abs(1.0-r) <= Tolerance {
			return current, util, avg, ""
		}
		return int32(math.Ceil(r * float64(len(ready)))), util, avg, ""
	}
	// Rebalance: missing pods count as using their request (target) when
	// scaling down and nothing when scaling up; unready pods count as
	// nothing, and only when scaling up.
	all := make(map[string]PodMetric, len(ready)+len(missing)+len(unready))
	for k, v := range ready {
		all[k] = v
	}
	for _, name := range missing {
		v := int64(0)
		if !scaleUp {
			if useRequests {
				v = reqs[name]
			} else {
				v = target
			}
		}
		all[name] = PodMetric{Value: v}
	}
	if scaleUp {
		for _, name := range unready {
			all[name] = PodMetric{Value: 0}
		}
	}
	nr, _, _ := ratio(all)
	if math.Abs(1.0-nr) <= Tolerance || (r < 1.0 && nr > 1.0) || (r > 1.0 && nr < 1.0) {
		return current, util, avg, ""
	}
	n := int32(math.Ceil(nr * float64(len(all))))
	if (nr < 1.0 && n > current) || (nr > 1.0 && n < current) {
		return current, util, avg, ""
	}
	return n, util, avg, ""
}
