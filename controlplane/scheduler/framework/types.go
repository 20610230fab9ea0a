package framework

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/sets"
)

// Defaults used for scoring containers that request nothing, as upstream.
const (
	DefaultMilliCPURequest int64 = 100
	DefaultMemoryRequest   int64 = 200 * 1024 * 1024
)

// Resource is a set of resource quantities in their base units.
type Resource struct {
	MilliCPU         int64
	Memory           int64
	EphemeralStorage int64
	AllowedPodNumber int
	// ScalarResources holds extended and hugepage resources.
	ScalarResources map[corev1.ResourceName]int64
}

// NewResource converts a ResourceList.
func NewResource(rl corev1.ResourceList) *Resource {
	r := &Resource{}
	r.Add(rl)
	return r
}

// Add adds a ResourceList.
func (r *Resource) Add(rl corev1.ResourceList) {
	for name, q := range rl {
		switch name {
		case corev1.ResourceCPU:
			r.MilliCPU += q.MilliValue()
		case corev1.ResourceMemory:
			r.Memory += q.Value()
		case corev1.ResourcePods:
			r.AllowedPodNumber += int(q.Value())
		case corev1.ResourceEphemeralStorage:
			r.EphemeralStorage += q.Value()
		default:
			if IsScalarResourceName(name) {
				r.AddScalar(name, q.Value())
			}
		}
	}
}

// AddScalar adds quantity of a scalar resource.
func (r *Resource) AddScalar(name corev1.ResourceName, q int64) {
	if r.ScalarResources == nil {
		r.ScalarResources = map[corev1.ResourceName]int64{}
	}
	r.ScalarResources[name] += q
}

// AddResource adds o to r.
func (r *Resource) AddResource(o *Resource) {
	r.MilliCPU += o.MilliCPU
	r.Memory += o.Memory
	r.EphemeralStorage += o.EphemeralStorage
	r.AllowedPodNumber += o.AllowedPodNumber
	for k, v := range o.ScalarResources {
		r.AddScalar(k, v)
	}
}

// SubResource subtracts o from r.
func (r *Resource) SubResource(o *Resource) {
	r.MilliCPU -= o.MilliCPU
	r.Memory -= o.Memory
	r.EphemeralStorage -= o.EphemeralStorage
	r.AllowedPodNumber -= o.AllowedPodNumber
	for k, v := range o.ScalarResources {
		r.AddScalar(k, -v)
	}
}

// SetMax raises each of r's quantities to o's where o's is larger.
func (r *Resource) SetMax(o *Resource) {
	r.MilliCPU = max(r.MilliCPU, o.MilliCPU)
	r.Memory = max(r.Memory, o.Memory)
	r.EphemeralStorage = max(r.EphemeralStorage, o.EphemeralStorage)
	for k, v := range o.ScalarResources {
		if v > r.ScalarResources[k] {
			if r.ScalarResources == nil {
				r.ScalarResources = map[corev1.ResourceName]int64{}
			}
			r.ScalarResources[k] = v
		}
	}
}

// Clone deep-copies r.
func (r *Resource) Clone() *Resource {
	out := *r
	if r.ScalarResources != nil {
		out.ScalarResources = make(map[corev1.ResourceName]int64, len(r.ScalarResources))
		for k, v := range r.ScalarResources {
			out.ScalarResources[k] = v
		}
	}
	return &out
}

// Get returns the quantity of name in base units (CPU in millicores).
func (r *Resource) Get(name corev1.ResourceName) int64 {
	switch name {
	case corev1.ResourceCPU:
		return r.MilliCPU
	case corev1.ResourceMemory:
		return r.Memory
	case corev1.ResourceEphemeralStorage:
		return r.EphemeralStorage
	case corev1.ResourcePods:
		return int64(r.AllowedPodNumber)
	}
	return r.ScalarResources[name]
}

// IsScalarResourceName reports extended resources, hugepages and
// attachable volumes, which the scheduler accounts as integers.
func IsScalarResourceName(name corev1.ResourceName) bool {
	s := string(name)
	if len(s) > len(corev1.ResourceHugePagesPrefix) && s[:len(corev1.ResourceHugePagesPrefix)] == corev1.ResourceHugePagesPrefix {
		return true
	}
	if len(s) > len("attachable-volumes-") && s[:len("attachable-volumes-")] == "attachable-volumes-" {
		return true
	}
	return IsExtendedResourceName(name)
}

// IsExtendedResourceName reports a domain-qualified resource outside
// kubernetes.io (and not requests.*).
func IsExtendedResourceName(name corev1.ResourceName) bool {
	s := string(name)
	slash := -1
	for i := range s {
		if s[i] == '/' {
			slash = i
			break
		}
	}
	if slash < 0 {
		return false
	}
	domain := s[:slash]
	if domain == "kubernetes.io" || len(domain) > len(".kubernetes.io") && domain[len(domain)-len(".kubernetes.io"):] == ".kubernetes.io" {
		return false
	}
	return len(s) < len("requests.") || s[:len("requests.")] != "requests."
}

// PodRequests computes what a pod requests, as upstream: the sum of its
// containers (and restartable init "sidecar" containers), or the largest
// init container if larger, plus the pod overhead. Pod-level resources,
// when set, take the place of the container sum for the resources they name.
func PodRequests(pod *corev1.Pod) *Resource {
	reqs := &Resource{}
	for i := range pod.Spec.Containers {
		reqs.Add(pod.Spec.Containers[i].Resources.Requests)
	}
	restartable := &Resource{}
	initMax := &Resource{}
	for i := range pod.Spec.InitContainers {
		ic := &pod.Spec.InitContainers[i]
		c := NewResource(ic.Resources.Requests)
		if ic.RestartPolicy != nil && *ic.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			reqs.AddResource(c)
			restartable.AddResource(c)
			c = restartable.Clone()
		} else {
			c.AddResource(restartable)
		}
		initMax.SetMax(c)
	}
	reqs.SetMax(initMax)
	if pr := pod.Spec.Resources; pr != nil {
		for name, q := range pr.Requests {
			switch name {
			case corev1.ResourceCPU:
				reqs.MilliCPU = q.MilliValue()
			case corev1.ResourceMemory:
				reqs.Memory = q.Value()
			}
		}
	}
	if pod.Spec.Overhead != nil {
		reqs.Add(pod.Spec.Overhead)
	}
	return reqs
}

// NonZeroRequests is PodRequests for CPU and memory where containers that
// request nothing count the scoring defaults (100m CPU, 200Mi memory).
func NonZeroRequests(pod *corev1.Pod) (milliCPU, memory int64) {
	nz := func(rl corev1.ResourceList) (int64, int64) {
		c, m := DefaultMilliCPURequest, DefaultMemoryRequest
		if q, ok := rl[corev1.ResourceCPU]; ok {
			c = q.MilliValue()
		}
		if q, ok := rl[corev1.ResourceMemory]; ok {
			m = q.Value()
		}
		return c, m
	}
	for i := range pod.Spec.Containers {
		c, m := nz(pod.Spec.Containers[i].Resources.Requests)
		milliCPU += c
		memory += m
	}
	var rc, rm, ic, im int64
	for i := range pod.Spec.InitContainers {
		c, m := nz(pod.Spec.InitContainers[i].Resources.Requests)
		if r := pod.Spec.InitContainers[i].RestartPolicy; r != nil && *r == corev1.ContainerRestartPolicyAlways {
			milliCPU += c
			memory += m
			rc += c
			rm += m
			c, m = rc, rm
		} else {
			c += rc
			m += rm
		}
		ic, im = max(ic, c), max(im, m)
	}
	milliCPU, memory = max(milliCPU, ic), max(memory, im)
	if pr := pod.Spec.Resources; pr != nil {
		if q, ok := pr.Requests[corev1.ResourceCPU]; ok {
			milliCPU = q.MilliValue()
		}
		if q, ok := pr.Requests[corev1.ResourceMemory]; ok {
			memory = q.Value()
		}
	}
	if pod.Spec.Overhead != nil {
		if q, ok := pod.Spec.Overhead[corev1.ResourceCPU]; ok {
			milliCPU += q.MilliValue()
		}
		if q, ok := pod.Spec.Overhead[corev1.ResourceMemory]; ok {
			memory += q.Value()
		}
	}
	return milliCPU, memory
}

// AffinityTerm is a parsed pod (anti-)affinity term.
type AffinityTerm struct {
	Namespaces        sets.Set[string]
	Selector          labels.Selector
	TopologyKey       string
	NamespaceSelector labels.Selector
	// HasNamespaceSelector is set when the term has a namespaceSelector
	// (an empty one selects every namespace).
	HasNamespaceSelector bool
	// Key identifies what the term selects (zero if built by hand).
	Key MatchKey
}

// Matches reports whether pod (with its namespace's labels) matches the term.
func (t *AffinityTerm) Matches(pod *corev1.Pod, nsLabels labels.Set) bool {
	if t.Namespaces.Has(pod.Namespace) || (t.HasNamespaceSelector && t.NamespaceSelector.Matches(nsLabels)) {
		return t.Selector.Matches(labels.Set(pod.Labels))
	}
	return false
}

// WeightedAffinityTerm is a preferred term with its weight.
type WeightedAffinityTerm struct {
	AffinityTerm
	Weight int32
}

// PodInfo is a pod with what the scheduler derives from it once.
type PodInfo struct {
	Pod                        *corev1.Pod
	RequiredAffinityTerms      []AffinityTerm
	RequiredAntiAffinityTerms  []AffinityTerm
	PreferredAffinityTerms     []WeightedAffinityTerm
	PreferredAntiAffinityTerms []WeightedAffinityTerm
	// Requests is PodRequests(Pod); NonZeroCPU/Memory its scoring form.
	Requests      *Resource
	NonZeroCPU    int64
	NonZeroMemory int64
	// ParseError is set when an affinity selector does not parse.
	ParseError error
	// LabelsKey identifies the pod's namespace and labels.
	LabelsKey MatchKey
}

// NewPodInfo derives a PodInfo.
func NewPodInfo(pod *corev1.Pod) *PodInfo {
	pi := &PodInfo{}
	pi.Update(pod)
	return pi
}

// Update re-derives the PodInfo for a new version of the pod.
func (pi *PodInfo) Update(pod *corev1.Pod) {
	*pi = PodInfo{Pod: pod, LabelsKey: LabelsKey(pod.Namespace, pod.Labels)}
	pi.Requests = PodRequests(pod)
	pi.NonZeroCPU, pi.NonZeroMemory = NonZeroRequests(pod)
	var errs []error
	if a := pod.Spec.Affinity; a != nil {
		if pa := a.PodAffinity; pa != nil {
			pi.RequiredAffinityTerms, errs = termsOf(pod, pa.RequiredDuringSchedulingIgnoredDuringExecution, errs)
			pi.PreferredAffinityTerms, errs = weightedTermsOf(pod, pa.PreferredDuringSchedulingIgnoredDuringExecution, errs)
		}
		if pa := a.PodAntiAffinity; pa != nil {
			pi.RequiredAntiAffinityTerms, errs = termsOf(pod, pa.RequiredDuringSchedulingIgnoredDuringExecution, errs)
			pi.PreferredAntiAffinityTerms, errs = weightedTermsOf(pod, pa.PreferredDuringSchedulingIgnoredDuringExecution, errs)
		}
	}
	if len(errs) > 0 {
		pi.ParseError = errs[0]
	}
}

func termsOf(pod *corev1.Pod, terms []corev1.PodAffinityTerm, errs []error) ([]AffinityTerm, []error) {
	var out []AffinityTerm
	for i := range terms {
		t, err := NewAffinityTerm(pod, &terms[i])
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, *t)
	}
	return out, errs
}

func weightedTermsOf(pod *corev1.Pod, terms []corev1.WeightedPodAffinityTerm, errs []error) ([]WeightedAffinityTerm, []error) {
	var out []WeightedAffinityTerm
	for i := range terms {
		t, err := NewAffinityTerm(pod, &terms[i].PodAffinityTerm)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, WeightedAffinityTerm{AffinityTerm: *t, Weight: terms[i].Weight})
	}
	return out, errs
}

// NewAffinityTerm parses term of pod: an empty namespace list with no
// namespace selector means the pod's own namespace; matchLabelKeys and
// mismatchLabelKeys are merged into the selector with the pod's labels.
func NewAffinityTerm(pod *corev1.Pod, term *corev1.PodAffinityTerm) (*AffinityTerm, error) {
	sel, err := metav1.LabelSelectorAsSelector(term.LabelSelector)
	if err != nil {
		return nil, fmt.Errorf("affinity term label selector: %w", err)
	}
	if term.LabelSelector != nil {
		for _, k := range term.MatchLabelKeys {
			if v, ok := pod.Labels[k]; ok {
				r, err := labels.NewRequirement(k, "in", []string{v})
				if err == nil {
					sel = sel.Add(*r)
				}
			}
		}
		for _, k := range term.MismatchLabelKeys {
			if v, ok := pod.Labels[k]; ok {
				r, err := labels.NewRequirement(k, "notin", []string{v})
				if err == nil {
					sel = sel.Add(*r)
				}
			}
		}
	}
	ns := sets.New(term.Namespaces...)
	nsSel := labels.Nothing()
	if term.NamespaceSelector != nil {
		nsSel, err = metav1.LabelSelectorAsSelector(term.NamespaceSelector)
		if err != nil {
			return nil, fmt.Errorf("affinity term namespace selector: %w", err)
		}
	}
	if len(term.Namespaces) == 0 && term.NamespaceSelector == nil {
		ns.Insert(pod.Namespace)
	}
	t := &AffinityTerm{Namespaces: ns, Selector: sel, TopologyKey: term.TopologyKey, NamespaceSelector: nsSel, HasNamespaceSelector: term.NamespaceSelector != nil}
	t.Key = termKey(t.Namespaces, t.Selector, t.HasNamespaceSelector, t.NamespaceSelector)
	return t, nil
}

// ImageStateSummary is what the scheduler knows about an image on a node.
type ImageStateSummary struct {
	Size     int64
	NumNodes int
}

// HostPortInfo records used host ports: ip -> protocol/port set.
type HostPortInfo map[string]sets.Set[ProtocolPort]

// ProtocolPort is a protocol and port pair.
type ProtocolPort struct {
	Protocol string
	Port     int32
}

const defaultHostIP = "0.0.0.0"

// Add records a port.
func (h HostPortInfo) Add(ip, protocol string, port int32) {
	if port <= 0 {
		return
	}
	ip, protocol = sanitize(ip, protocol)
	if h[ip] == nil {
		h[ip] = sets.New[ProtocolPort]()
	}
	h[ip].Insert(ProtocolPort{protocol, port})
}

// Remove forgets a port.
func (h HostPortInfo) Remove(ip, protocol string, port int32) {
	if port <= 0 {
		return
	}
	ip, protocol = sanitize(ip, protocol)
	if s := h[ip]; s != nil {
		s.Delete(ProtocolPort{protocol, port})
		if s.Len() == 0 {
			delete(h, ip)
		}
	}
}

// CheckConflict reports whether ip/protocol/port collides with a used port;
// 0.0.0.0 conflicts with every address.
func (h HostPortInfo) CheckConflict(ip, protocol string, port int32) bool {
	if port <= 0 {
		return false
	}
	ip, protocol = sanitize(ip, protocol)
	pp := ProtocolPort{protocol, port}
	if ip == defaultHostIP {
		for _, s := range h {
			if s.Has(pp) {
				return true
			}
		}
		return false
	}
	for _, key := range []string{ip, defaultHostIP} {
		if s := h[key]; s != nil && s.Has(pp) {
			return true
		}
	}
	return false
}

func sanitize(ip, protocol string) (string, string) {
	if ip == "" {
		ip = defaultHostIP
	}
	if protocol == "" {
		protocol = string(corev1.ProtocolTCP)
	}
	return ip, protocol
}

// QuantityOrZero returns rl[name] or zero.
func QuantityOrZero(rl corev1.ResourceList, name corev1.ResourceName) resource.Quantity {
	if q, ok := rl[name]; ok {
		return q
	}
	return resource.Quantity{}
}
