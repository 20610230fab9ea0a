package backend

import (
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// Pods are the kind that grows to tens of thousands of objects, so the
// shared cache lists and watches them in protobuf into typed Pods (far
// cheaper to decode than JSON into maps) and keeps, per pod, only a row:
// the fields the dashboard's views and upstream's pod printer read. The
// detail page reads the whole object with the user's token (GET
// /api/object), so nothing else is lost. A row is
//
//	apiVersion, kind
//	metadata: name, namespace, generateName, uid, resourceVersion,
//	  generation, creationTimestamp, deletionTimestamp,
//	  deletionGracePeriodSeconds, labels, annotations (without kubectl's
//	  last-applied copy), ownerReferences (apiVersion, kind, name, uid,
//	  controller)
//	spec: nodeName, containers and initContainers (name, image; an init
//	  container's restartPolicy), readinessGates (conditionType), volumes
//	  that are a claim (name, persistentVolumeClaim.claimName and readOnly)
//	  or generic ephemeral (name, ephemeral: {})
//	status: phase, reason, message, podIP, hostIP, startTime,
//	  nominatedNodeName, the readiness gates' conditions (type, status),
//	  containerStatuses and
//	  initContainerStatuses (name, ready, started, restartCount, state and
//	  lastState: waiting.reason, running.startedAt, terminated.reason,
//	  exitCode, signal, finishedAt)
//
// Server-side filters and sorts on dotted paths see only these fields for
// pods (the front end uses status.phase and spec.nodeName). Row maps are
// built directly from the typed Pod with int64 numbers and RFC 3339
// times, as the JSON decoder would give them; repeated short strings
// (namespaces, node names, images, phases, condition types, label values)
// share one copy through the cache's interner.

// podRow returns the transform that turns a typed Pod into its row.
func podRow(in *interner) func(obj any) (any, error) {
	return func(obj any) (any, error) {
		p, ok := obj.(*corev1.Pod)
		if !ok {
			// Already a row (transforms may run twice) or a tombstone.
			return obj, nil
		}
		return &unstructured.Unstructured{Object: podRowMap(in, p)}, nil
	}
}

func podRowMap(in *interner, p *corev1.Pod) map[string]any {
	return map[string]any{
		"apiVersion": "v1",
		"kind":       "Pod",
		"metadata":   objectMetaRow(in, &p.ObjectMeta),
		"spec":       podSpecRow(in, &p.Spec),
		"status":     podStatusRow(in, &p.Status, p.Spec.ReadinessGates),
	}
}

func objectMetaRow(in *interner, m *metav1.ObjectMeta) map[string]any {
	out := make(map[string]any, 8)
	out["name"] = m.Name
	if m.Namespace != "" {
		out["namespace"] = in.str(m.Namespace)
	}
	if m.GenerateName != "" {
		out["generateName"] = in.str(m.GenerateName)
	}
	out["uid"] = string(m.UID)
	out["resourceVersion"] = m.ResourceVersion
	if m.Generation != 0 {
		out["generation"] = m.Generation
	}
	// A missing creationTimestamp is null in upstream's JSON.
	out["creationTimestamp"] = timeRow(m.CreationTimestamp)
	if m.DeletionTimestamp != nil {
		out["deletionTimestamp"] = timeRow(*m.DeletionTimestamp)
	}
	if m.DeletionGracePeriodSeconds != nil {
		out["deletionGracePeriodSeconds"] = *m.DeletionGracePeriodSeconds
	}
	if len(m.Labels) > 0 {
		out["labels"] = stringMapRow(in, m.Labels, "")
	}
	if len(m.Annotations) > 0 {
		if a := stringMapRow(in, m.Annotations, lastApplied); len(a) > 0 {
			out["annotations"] = a
		}
	}
	if len(m.OwnerReferences) > 0 {
		refs := make([]any, len(m.OwnerReferences))
		for i, r := range m.OwnerReferences {
			ref := map[string]any{"apiVersion": in.str(r.APIVersion), "kind": in.str(r.Kind), "name": in.str(r.Name), "uid": string(r.UID)}
			if r.Controller != nil {
				ref["controller"] = *r.Controller
			}
			refs[i] = ref
		}
		out["ownerReferences"] = refs
	}
	return out
}

// stringMapRow copies labels or annotations (without key drop).
func stringMapRow(in *interner, m map[string]string, drop string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		if k == drop {
			continue
		}
		out[in.key(k)] = in.str(v)
	}
	return out
}

// timeRow renders a time as metav1.Time's JSON does (nil when zero).
func timeRow(t metav1.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC().Format(time.RFC3339)
}

func podSpecRow(in *interner, s *corev1.PodSpec) map[string]any {
	out := make(map[string]any, 4)
	if s.NodeName != "" {
		out["nodeName"] = in.str(s.NodeName)
	}
	out["containers"] = containersRow(in, s.Containers)
	if len(s.InitContainers) > 0 {
		out["initContainers"] = containersRow(in, s.InitContainers)
	}
	if len(s.ReadinessGates) > 0 {
		gates := make([]any, len(s.ReadinessGates))
		for i, g := range s.ReadinessGates {
			gates[i] = map[string]any{"conditionType": in.str(string(g.ConditionType))}
		}
		out["readinessGates"] = gates
	}
	var vols []any
	for _, v := range s.Volumes {
		switch {
		case v.PersistentVolumeClaim != nil:
			claim := map[string]any{"claimName": v.PersistentVolumeClaim.ClaimName}
			if v.PersistentVolumeClaim.ReadOnly {
				claim["readOnly"] = true
			}
			vols = append(vols, map[string]any{"name": in.str(v.Name), "persistentVolumeClaim": claim})
		case v.Ephemeral != nil:
			vols = append(vols, map[string]any{"name": in.str(v.Name), "ephemeral": map[string]any{}})
		}
	}
	if vols != nil {
		out["volumes"] = vols
	}
	return out
}

func containersRow(in *interner, cs []corev1.Container) []any {
	out := make([]any, len(cs))
	for i, c := range cs {
		m := map[string]any{"name": in.str(c.Name), "image": in.str(c.Image)}
		if c.RestartPolicy != nil {
			m["restartPolicy"] = in.str(string(*c.RestartPolicy))
		}
		out[i] = m
	}
	return out
}

func podStatusRow(in *interner, s *corev1.PodStatus, gates []corev1.PodReadinessGate) map[string]any {
	out := make(map[string]any, 8)
	if s.Phase != "" {
		out["phase"] = in.str(string(s.Phase))
	}
	if s.Reason != "" {
		out["reason"] = in.str(s.Reason)
	}
	if s.Message != "" {
		out["message"] = s.Message
	}
	if s.PodIP != "" {
		out["podIP"] = s.PodIP
	}
	if s.HostIP != "" {
		out["hostIP"] = in.str(s.HostIP)
	}
	if s.StartTime != nil {
		out["startTime"] = timeRow(*s.StartTime)
	}
	if s.NominatedNodeName != "" {
		out["nominatedNodeName"] = in.str(s.NominatedNodeName)
	}
	// Conditions are kept only for readiness gates (upstream's printer
	// shows how many of them are met); five maps a pod otherwise.
	var conds []any
	for _, c := range s.Conditions {
		for _, g := range gates {
			if g.ConditionType == c.Type {
				conds = append(conds, map[string]any{"type": in.str(string(c.Type)), "status": in.str(string(c.Status))})
				break
			}
		}
	}
	if conds != nil {
		out["conditions"] = conds
	}
	if len(s.ContainerStatuses) > 0 {
		out["containerStatuses"] = containerStatusesRow(in, s.ContainerStatuses)
	}
	if len(s.InitContainerStatuses) > 0 {
		out["initContainerStatuses"] = containerStatusesRow(in, s.InitContainerStatuses)
	}
	return out
}

func containerStatusesRow(in *interner, cs []corev1.ContainerStatus) []any {
	out := make([]any, len(cs))
	for i, c := range cs {
		m := map[string]any{"name": in.str(c.Name), "ready": c.Ready, "restartCount": int64(c.RestartCount),
			"state": containerStateRow(in, c.State)}
		if c.Started != nil {
			m["started"] = *c.Started
		}
		if last := containerStateRow(in, c.LastTerminationState); len(last) > 0 {
			m["lastState"] = last
		}
		out[i] = m
	}
	return out
}

func containerStateRow(in *interner, s corev1.ContainerState) map[string]any {
	out := make(map[string]any, 1)
	switch {
	case s.Waiting != nil:
		w := map[string]any{}
		if s.Waiting.Reason != "" {
			w["reason"] = in.str(s.Waiting.Reason)
		}
		out["waiting"] = w
	case s.Running != nil:
		out["running"] = map[string]any{"startedAt": timeRow(s.Running.StartedAt)}
	case s.Terminated != nil:
		t := map[string]any{"exitCode": int64(s.Terminated.ExitCode)}
		if s.Terminated.Reason != "" {
			t["reason"] = in.str(s.Terminated.Reason)
		}
		if s.Terminated.Signal != 0 {
			t["signal"] = int64(s.Terminated.Signal)
		}
		if ft := timeRow(s.Terminated.FinishedAt); ft != nil {
			t["finishedAt"] = ft
		}
		out["terminated"] = t
	}
	return out
}

// interner shares one copy of short, repeated strings among the rows of a
// cache: a string stored in a map[string]any is a pointer to its own
// header and bytes, so 30,000 pods on 100 nodes otherwise hold 30,000
// copies of "Running", of the image and of the node names. It keeps at
// most maxInterned strings of at most 128 bytes; the rest are stored as
// they come.
type interner struct {
	mu   sync.Mutex
	vals map[string]any // value → the shared boxed string
	keys map[string]string
}

const maxInterned = 1 << 14

func newInterner() *interner {
	return &interner{vals: map[string]any{}, keys: map[string]string{}}
}

// str returns s boxed, shared with earlier equal strings.
func (in *interner) str(s string) any {
	if in == nil || len(s) > 128 {
		return s
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if v, ok := in.vals[s]; ok {
		return v
	}
	var v any = s
	if len(in.vals) < maxInterned {
		in.vals[s] = v
	}
	return v
}

// key returns s as a map key, sharing its bytes with earlier equal keys.
func (in *interner) key(s string) string {
	if in == nil || len(s) > 128 {
		return s
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if k, ok := in.keys[s]; ok {
		return k
	}
	if len(in.keys) < maxInterned {
		in.keys[s] = s
	}
	return s
}
