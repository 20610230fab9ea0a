package backend

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
	"unsafe"

	goruntime "runtime"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
)

// fullPod is a pod as the API server returns it, with the bulky fields no
// table shows (managed fields, last-applied, env, probes, resources,
// projected volumes, images' digests).
func fullPod() *corev1.Pod {
	t0 := metav1.NewTime(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC))
	t1 := metav1.NewTime(t0.Add(3 * time.Second))
	always := corev1.ContainerRestartPolicyAlways
	return &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Name: "web-7d9f-abcde", Namespace: "team", GenerateName: "web-7d9f-", UID: "u-1", ResourceVersion: "42",
			CreationTimestamp: t0, Labels: map[string]string{"app": "web", "pod-template-hash": "7d9f"},
			Annotations: map[string]string{lastApplied: `{"big":"copy"}`, "note": "kept"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-7d9f", UID: "rs-1",
				Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl", Operation: metav1.ManagedFieldsOperationApply,
				FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:spec":{}}`)}}},
			Finalizers: []string{"example.com/f"},
		},
		Spec: corev1.PodSpec{
			NodeName: "node-1",
			InitContainers: []corev1.Container{{Name: "sidecar", Image: "envoy:1", RestartPolicy: &always,
				TerminationMessagePath: "/dev/termination-log"}},
			Containers: []corev1.Container{{
				Name: "c", Image: "registry.k8s.io/pause:3.10", Command: []string{"/pause"},
				Env:                    []corev1.EnvVar{{Name: "SECRETISH", Value: "x"}},
				Resources:              corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")}},
				LivenessProbe:          &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"true"}}}},
				TerminationMessagePath: "/dev/termination-log", ImagePullPolicy: corev1.PullIfNotPresent,
				VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}},
			}},
			ReadinessGates: []corev1.PodReadinessGate{{ConditionType: "example.com/ready"}},
			Volumes: []corev1.Volume{
				{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data-web"}}},
				{Name: "scratch", VolumeSource: corev1.VolumeSource{Ephemeral: &corev1.EphemeralVolumeSource{VolumeClaimTemplate: &corev1.PersistentVolumeClaimTemplate{
					Spec: corev1.PersistentVolumeClaimSpec{StorageClassName: ptr.To("fast")}}}}},
				{Name: "kube-api-access", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{DefaultMode: ptr.To[int32](0o644)}}},
			},
			RestartPolicy: corev1.RestartPolicyAlways, DNSPolicy: corev1.DNSClusterFirst, SchedulerName: "default-scheduler",
			TerminationGracePeriodSeconds: ptr.To[int64](30),
			Tolerations:                   []corev1.Toleration{{Key: "node.kubernetes.io/not-ready", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute}},
		},
		Status: corev1.PodStatus{
			Phase: corev1.PodRunning, PodIP: "10.42.0.7", HostIP: "10.0.0.1", StartTime: &t0, QOSClass: corev1.PodQOSBurstable,
			PodIPs: []corev1.PodIP{{IP: "10.42.0.7"}},
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: t1},
				{Type: "example.com/ready", Status: corev1.ConditionFalse, LastTransitionTime: t1}},
			InitContainerStatuses: []corev1.ContainerStatus{{Name: "sidecar", Ready: true, Started: ptr.To(true),
				State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: t0}}, Image: "envoy:1", ImageID: "sha256:aa"}},
			ContainerStatuses: []corev1.ContainerStatus{{
				Name: "c", Ready: false, RestartCount: 3, Started: ptr.To(false), Image: "registry.k8s.io/pause:3.10", ImageID: "sha256:bb", ContainerID: "containerd://cc",
				State:                corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff", Message: "back-off 40s restarting failed container"}},
				LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 137, Signal: 9, Reason: "Error", StartedAt: t0, FinishedAt: t1, ContainerID: "containerd://cc"}},
			}},
		},
	}
}

// TestPodRowKeepsWhatViewsReadAndDropsTheRest: a cached pod row has the
// fields the tables, the storage view and upstream's pod printer read,
// each equal to the same path of the full object as the JSON decoder
// would give it, and none of the bulky rest (managed fields, kubectl's
// last-applied copy, env, probes, other volumes, digests).
func TestPodRowKeepsWhatViewsReadAndDropsTheRest(t *testing.T) {
	p := fullPod()
	out, err := podRow(newInterner())(p.DeepCopy())
	if err != nil {
		t.Fatal(err)
	}
	row := out.(*unstructured.Unstructured).Object

	// The full object as a browser or the dynamic client would see it.
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	full := &unstructured.Unstructured{}
	if err := full.UnmarshalJSON(b); err != nil {
		t.Fatal(err)
	}
	// Every leaf of the row is the same value at the same path of the full
	// object (ephemeral volumes are reduced to a marker).
	var walk func(path string, r, f any)
	walk = func(path string, r, f any) {
		switch rv := r.(type) {
		case map[string]any:
			fm, ok := f.(map[string]any)
			if !ok {
				t.Errorf("%s: a map in the row, %T in the object", path, f)
				return
			}
			if strings.HasSuffix(path, ".ephemeral") && len(rv) == 0 {
				return
			}
			for k, v := range rv {
				walk(path+"."+k, v, fm[k])
			}
		case []any:
			fl, ok := f.([]any)
			if !ok || len(fl) < len(rv) {
				t.Errorf("%s: %d items in the row, %v in the object", path, len(rv), f)
				return
			}
			// Volumes and conditions are a selection (checked below).
			if !strings.HasSuffix(path, ".volumes") && !strings.HasSuffix(path, ".conditions") {
				for i := range rv {
					walk(path+"["+string(rune('0'+i))+"]", rv[i], fl[i])
				}
			}
		default:
			if !reflect.DeepEqual(r, f) {
				t.Errorf("%s: %#v in the row, %#v in the object", path, r, f)
			}
		}
	}
	walk("", row, full.Object)
	// The row is a valid JSON value tree (int64 numbers, strings for times).
	_ = runtime.DeepCopyJSON(row)

	want := map[string]any{
		"metadata.name":                "web-7d9f-abcde",
		"metadata.namespace":           "team",
		"metadata.resourceVersion":     "42",
		"metadata.creationTimestamp":   "2026-12-01T10:00:00Z",
		"metadata.labels.app":          "web",
		"metadata.annotations.note":    "kept",
		"spec.nodeName":                "node-1",
		"status.phase":                 "Running",
		"status.podIP":                 "10.42.0.7",
		"status.startTime":             "2026-12-01T10:00:00Z",
		"status.conditions":            []any{map[string]any{"type": "example.com/ready", "status": "False"}},
		"spec.containers":              []any{map[string]any{"name": "c", "image": "registry.k8s.io/pause:3.10"}},
		"spec.readinessGates":          []any{map[string]any{"conditionType": "example.com/ready"}},
		"metadata.ownerReferences":     []any{map[string]any{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d9f", "uid": "rs-1", "controller": true}},
		"spec.initContainers":          []any{map[string]any{"name": "sidecar", "image": "envoy:1", "restartPolicy": "Always"}},
		"status.initContainerStatuses": []any{map[string]any{"name": "sidecar", "ready": true, "started": true, "restartCount": int64(0), "state": map[string]any{"running": map[string]any{"startedAt": "2026-12-01T10:00:00Z"}}}},
		"status.containerStatuses":     []any{map[string]any{"name": "c", "ready": false, "started": false, "restartCount": int64(3), "state": map[string]any{"waiting": map[string]any{"reason": "CrashLoopBackOff"}}, "lastState": map[string]any{"terminated": map[string]any{"exitCode": int64(137), "signal": int64(9), "reason": "Error", "finishedAt": "2026-12-01T10:00:03Z"}}}},
		"spec.volumes":                 []any{map[string]any{"name": "data", "persistentVolumeClaim": map[string]any{"claimName": "data-web"}}, map[string]any{"name": "scratch", "ephemeral": map[string]any{}}},
	}
	for path, v := range want {
		got, ok, _ := unstructured.NestedFieldNoCopy(row, strings.Split(path, ".")...)
		if !ok || !reflect.DeepEqual(got, v) {
			t.Errorf("%s = %#v, want %#v", path, got, v)
		}
	}
	// The server-side sorts and filters the front end uses read the row.
	for path, v := range map[string]string{"status.phase": "Running", "spec.nodeName": "node-1", "metadata.labels.app": "web"} {
		if got := fieldString(row, strings.Split(path, ".")); got != v {
			t.Errorf("fieldString(%s) = %q, want %q", path, got, v)
		}
	}
	// Dropped.
	for _, path := range [][]string{
		{"metadata", "managedFields"}, {"metadata", "annotations", lastApplied}, {"metadata", "finalizers"},
		{"spec", "restartPolicy"}, {"spec", "tolerations"}, {"status", "podIPs"}, {"status", "qosClass"},
	} {
		if _, ok, _ := unstructured.NestedFieldNoCopy(row, path...); ok {
			t.Errorf("%s kept", strings.Join(path, "."))
		}
	}
	js, err := json.Marshal(row)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"SECRETISH", "livenessProbe", "sha256:", "containerd://", "back-off 40s", "kube-api-access", "fast", "f:spec", "big"} {
		if strings.Contains(string(js), s) {
			t.Errorf("row holds %q: %s", s, js)
		}
	}
	// The row is much smaller than the object.
	if len(js)*2 > len(b) {
		t.Errorf("row %d bytes of JSON, object %d: want at most half", len(js), len(b))
	}
}

// TestPodRowTransformIsIdempotent: a transform may see its own output
// (and tombstones), which it passes through.
func TestPodRowTransformIsIdempotent(t *testing.T) {
	tr := podRow(newInterner())
	first, err := tr(fullPod())
	if err != nil {
		t.Fatal(err)
	}
	again, err := tr(first)
	if err != nil || again != first {
		t.Fatalf("second transform: %v, %v", again, err)
	}
}

// TestInternerSharesAndBounds: equal strings share one box (the point of
// the interner), and it stops growing at its bound.
func TestInternerSharesAndBounds(t *testing.T) {
	in := newInterner()
	a, b := in.str(strings.Repeat("x", 8)), in.str(strings.Clone(strings.Repeat("x", 8)))
	if a != b || unsafe.StringData(a.(string)) != unsafe.StringData(b.(string)) {
		t.Fatal("equal strings were not shared")
	}
	for i := range maxInterned + 100 {
		in.str(fmt.Sprintf("v%d", i))
	}
	if len(in.vals) > maxInterned {
		t.Fatalf("interner holds %d strings, bound %d", len(in.vals), maxInterned)
	}
	if in.str(strings.Repeat("l", 200)) == nil {
		t.Fatal("a long string was lost")
	}
}

// benchPod is a pod of skiff-bench dashboard as the API server holds it:
// one pause container, defaulted, Running on a hollow node.
func benchPod(i int) *corev1.Pod {
	t0 := metav1.NewTime(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC))
	p := &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("pod-%05d", i), Namespace: "bench-dashboard", UID: types.UID(fmt.Sprintf("5f0e8a4c-6b8e-4a3e-9d2c-%012d", i)),
			ResourceVersion: fmt.Sprint(100000 + i), CreationTimestamp: t0, Labels: map[string]string{"app": fmt.Sprintf("a%d", i%10)},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "skiff-bench", Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "v1", Time: &t0,
				FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:metadata":{"f:labels":{".":{},"f:app":{}}},"f:spec":{"f:containers":{"k:{\"name\":\"c\"}":{".":{},"f:image":{},"f:imagePullPolicy":{},"f:name":{},"f:resources":{},"f:terminationMessagePath":{},"f:terminationMessagePolicy":{}}},"f:dnsPolicy":{},"f:enableServiceLinks":{},"f:nodeName":{},"f:restartPolicy":{},"f:schedulerName":{},"f:securityContext":{},"f:terminationGracePeriodSeconds":{}}}`)}}}},
		Spec: corev1.PodSpec{NodeName: fmt.Sprintf("hollow-%03d", i%100),
			Containers: []corev1.Container{{Name: "c", Image: "registry.k8s.io/pause:3.10", TerminationMessagePath: "/dev/termination-log",
				TerminationMessagePolicy: corev1.TerminationMessageReadFile, ImagePullPolicy: corev1.PullIfNotPresent}},
			RestartPolicy: corev1.RestartPolicyAlways, TerminationGracePeriodSeconds: ptr.To[int64](30), DNSPolicy: corev1.DNSClusterFirst,
			SecurityContext: &corev1.PodSecurityContext{}, SchedulerName: "default-scheduler", EnableServiceLinks: ptr.To(true),
			PreemptionPolicy: ptr.To(corev1.PreemptLowerPriority), Priority: ptr.To[int32](0),
			Tolerations: []corev1.Toleration{
				{Key: "node.kubernetes.io/not-ready", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To[int64](300)},
				{Key: "node.kubernetes.io/unreachable", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To[int64](300)}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, HostIP: fmt.Sprintf("10.0.%d.%d", i%100/250, i%100+1), PodIP: fmt.Sprintf("10.42.%d.%d", i/250, i%250+2),
			PodIPs: []corev1.PodIP{{IP: fmt.Sprintf("10.42.%d.%d", i/250, i%250+2)}}, StartTime: &t0, QOSClass: corev1.PodQOSBestEffort,
			ContainerStatuses: []corev1.ContainerStatus{{Name: "c", Ready: true, Started: ptr.To(true), Image: "registry.k8s.io/pause:3.10",
				ImageID:     "registry.k8s.io/pause@sha256:ee6521f290b2168b6e0935a181d4cff9be1ac3f505666ef0e3c98fae8199917a",
				ContainerID: fmt.Sprintf("hollow://%064d", i), State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: t0}}}}},
	}
	for _, c := range []corev1.PodConditionType{"PodReadyToStartContainers", corev1.PodInitialized, corev1.ContainersReady, corev1.PodReady, corev1.PodScheduled} {
		p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{Type: c, Status: corev1.ConditionTrue, LastTransitionTime: t0})
	}
	return p
}

// BenchmarkPodCache reports the heap a cached pod costs and the time to
// decode one from a list: before (JSON into an unstructured map, managed
// fields dropped) and now (protobuf into a typed Pod, turned into a row).
func BenchmarkPodCache(b *testing.B) {
	const n = 2000
	list := corev1.PodList{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "PodList"}}
	for i := range n {
		list.Items = append(list.Items, *benchPod(i))
	}
	js, err := json.Marshal(&list)
	if err != nil {
		b.Fatal(err)
	}
	pb, err := list.Marshal()
	if err != nil {
		b.Fatal(err)
	}
	measure := func(b *testing.B, decode func() []any) {
		var keep []any
		var before, after goruntime.MemStats
		var took time.Duration
		for b.Loop() {
			keep = nil
			goruntime.GC()
			goruntime.ReadMemStats(&before)
			t0 := time.Now()
			keep = decode()
			took += time.Since(t0)
			goruntime.GC()
			goruntime.ReadMemStats(&after)
		}
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "heapB/pod")
		b.ReportMetric(float64(took.Nanoseconds())/float64(b.N)/n, "decode-ns/pod")
		goruntime.KeepAlive(keep)
	}
	b.Run("unstructured-json", func(b *testing.B) {
		measure(b, func() []any {
			var ul unstructured.UnstructuredList
			if err := ul.UnmarshalJSON(js); err != nil {
				b.Fatal(err)
			}
			out := make([]any, len(ul.Items))
			for i := range ul.Items {
				out[i], _ = stripManagedFields(&ul.Items[i])
			}
			return out
		})
	})
	b.Run("row-protobuf", func(b *testing.B) {
		measure(b, func() []any {
			var pl corev1.PodList
			if err := pl.Unmarshal(pb); err != nil {
				b.Fatal(err)
			}
			tr := podRow(newInterner())
			out := make([]any, len(pl.Items))
			for i := range pl.Items {
				out[i], _ = tr(&pl.Items[i])
			}
			return out
		})
	})
}
