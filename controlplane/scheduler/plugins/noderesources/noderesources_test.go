package noderesources

import (
	"context"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/skiffhq/skiff/controlplane/scheduler/framework"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

func rl(kv ...string) corev1.ResourceList {
	out := corev1.ResourceList{}
	for i := 0; i < len(kv); i += 2 {
		out[corev1.ResourceName(kv[i])] = resource.MustParse(kv[i+1])
	}
	return out
}

func podReq(name string, req corev1.ResourceList) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID(name)}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Resources: corev1.ResourceRequirements{Requests: req}}}}}
}

func nodeInfo(alloc corev1.ResourceList, pods ...*corev1.Pod) *framework.NodeInfo {
	ni := framework.NewNodeInfo(pods...)
	ni.SetNode(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n"}, Status: corev1.NodeStatus{Allocatable: alloc}})
	return ni
}

func TestFitFilter(t *testing.T) {
	always := corev1.ContainerRestartPolicyAlways
	alloc := rl("cpu", "2", "memory", "4Gi", "pods", "3", "example.com/gpu", "1")
	tests := []struct {
		name     string
		pod      *corev1.Pod
		existing []*corev1.Pod
		want     []string
	}{
		{"fits", podReq("p", rl("cpu", "1", "memory", "1Gi")), nil, nil},
		{"insufficient cpu", podReq("p", rl("cpu", "1500m")), []*corev1.Pod{podReq("e", rl("cpu", "1"))}, []string{"Insufficient cpu"}},
		{"insufficient cpu and memory", podReq("p", rl("cpu", "3", "memory", "5Gi")), nil, []string{"Insufficient cpu", "Insufficient memory"}},
		{"too many pods", podReq("p", nil), []*corev1.Pod{podReq("a", nil), podReq("b", nil), podReq("c", nil)}, []string{"Too many pods"}},
		{"extended resource", podReq("p", rl("example.com/gpu", "2")), nil, []string{"Insufficient example.com/gpu"}},
		{"init container max counts", func() *corev1.Pod {
			p := podReq("p", rl("cpu", "500m"))
			p.Spec.InitContainers = []corev1.Container{{Name: "i", Resources: corev1.ResourceRequirements{Requests: rl("cpu", "2500m")}}}
			return p
		}(), nil, []string{"Insufficient cpu"}},
		{"sidecar adds to containers", func() *corev1.Pod {
			p := podReq("p", rl("cpu", "1500m"))
			p.Spec.InitContainers = []corev1.Container{{Name: "s", RestartPolicy: &always, Resources: corev1.ResourceRequirements{Requests: rl("cpu", "1")}}}
			return p
		}(), nil, []string{"Insufficient cpu"}},
		{"overhead counts", func() *corev1.Pod {
			p := podReq("p", rl("cpu", "1900m"))
			p.Spec.Overhead = rl("cpu", "200m")
			return p
		}(), nil, []string{"Insufficient cpu"}},
	}
	f, err := NewFit(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := f.(*Fit).Filter(context.Background(), framework.NewCycleState(), tc.pod, nodeInfo(alloc, tc.existing...))
			if !reflect.DeepEqual(st.Reasons(), tc.want) {
				t.Fatalf("reasons = %v, want %v", st.Reasons(), tc.want)
			}
			if tc.want != nil && st.Code() != framework.Unschedulable {
				t.Fatalf("code = %v", st.Code())
			}
		})
	}
}

func TestFitIgnoredResources(t *testing.T) {
	f, err := NewFit(json.RawMessage(`{"ignoredResourceGroups":["example.com"]}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	st := f.(*Fit).Filter(context.Background(), framework.NewCycleState(), podReq("p", rl("example.com/gpu", "5")), nodeInfo(rl("cpu", "1", "pods", "10")))
	if !st.IsSuccess() {
		t.Fatalf("ignored group still filtered: %v", st)
	}
}

func TestFitScoring(t *testing.T) {
	alloc := rl("cpu", "4", "memory", "8Gi", "pods", "10")
	existing := podReq("e", rl("cpu", "1", "memory", "2Gi"))
	pod := podReq("p", rl("cpu", "1", "memory", "2Gi"))
	// With the pod, the node would use half its CPU and memory.
	tests := []struct {
		args string
		want int64
	}{
		{``, 50},
		{`{"scoringStrategy":{"type":"MostAllocated"}}`, 50},
		{`{"scoringStrategy":{"type":"LeastAllocated","resources":[{"name":"cpu","weight":1}]}}`, 50},
		{`{"scoringStrategy":{"type":"RequestedToCapacityRatio","requestedToCapacityRatio":{"shape":[{"utilization":0,"score":0},{"utilization":100,"score":10}]}}}`, 50},
		{`{"scoringStrategy":{"type":"RequestedToCapacityRatio","requestedToCapacityRatio":{"shape":[{"utilization":0,"score":10},{"utilization":100,"score":0}]}}}`, 50},
	}
	for _, tc := range tests {
		f, err := NewFit(json.RawMessage(tc.args), nil)
		if err != nil {
			t.Fatalf("%s: %v", tc.args, err)
		}
		got, _ := f.(*Fit).Score(context.Background(), nil, pod, nodeInfo(alloc, existing))
		if got != tc.want {
			t.Errorf("%s: score %d, want %d", tc.args, got, tc.want)
		}
	}
	// Asymmetric case: 3 of 4 CPUs and 2 of 8Gi memory used with the pod.
	heavy := podReq("h", rl("cpu", "2", "memory", "0"))
	least, _ := NewFit(nil, nil)
	most, _ := NewFit(json.RawMessage(`{"scoringStrategy":{"type":"MostAllocated"}}`), nil)
	ni := nodeInfo(alloc, existing)
	if got, _ := least.(*Fit).Score(context.Background(), nil, heavy, ni); got != (25+75)/2 {
		t.Errorf("LeastAllocated = %d, want 50", got)
	}
	if got, _ := most.(*Fit).Score(context.Background(), nil, heavy, ni); got != (75+25)/2 {
		t.Errorf("MostAllocated = %d, want 50", got)
	}
	b, _ := NewBalanced(nil, nil)
	if got, _ := b.(*Balanced).Score(context.Background(), nil, heavy, ni); got != 75 {
		t.Errorf("BalancedAllocation = %d, want 75 (fractions 0.75 and 0.25)", got)
	}
	if got, _ := b.(*Balanced).Score(context.Background(), nil, pod, ni); got != 100 {
		t.Errorf("BalancedAllocation of an even pod = %d, want 100", got)
	}
}

func TestFitArgsValidation(t *testing.T) {
	for _, bad := range []string{
		`{"scoringStrategy":{"type":"Random"}}`,
		`{"scoringStrategy":{"type":"RequestedToCapacityRatio"}}`,
		`{"scoringStrategy":{"resources":[{"name":"cpu","weight":0}]}}`,
		`{"unknownField":1}`,
	} {
		if _, err := NewFit(json.RawMessage(bad), nil); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}
