package metrics

import (
	"bytes"
	"fmt"
	"time"
)

// Summary is the part of the kubelet Summary API
// (k8s.io/kubelet/pkg/apis/stats/v1alpha1) the add-on reads: the same
// JSON, decoded into fewer fields with a cheaper time parser, because
// decoding summaries is most of a scrape round's cost.
type Summary struct {
	Node NodeSummary  `json:"node"`
	Pods []PodSummary `json:"pods"`
}

// NodeSummary is a summary's node part.
type NodeSummary struct {
	NodeName string        `json:"nodeName"`
	CPU      *CPUSample    `json:"cpu,omitempty"`
	Memory   *MemorySample `json:"memory,omitempty"`
	Network  *NetSample    `json:"network,omitempty"`
	Fs       *FsSample     `json:"fs,omitempty"`
}

// PodSummary is one pod of a summary.
type PodSummary struct {
	PodRef struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
		UID       string `json:"uid"`
	} `json:"podRef"`
	Containers []ContainerSummary `json:"containers"`
	// CPU and Memory are the pod's own (its cgroup's), when reported.
	CPU     *CPUSample    `json:"cpu,omitempty"`
	Memory  *MemorySample `json:"memory,omitempty"`
	Network *NetSample    `json:"network,omitempty"`
	// Volumes are the pod's volumes; only those with a pvcRef are kept.
	Volumes []VolumeSample `json:"volume,omitempty"`
}

// VolumeSample is v1alpha1 VolumeStats: a volume's filesystem usage and,
// for a PersistentVolumeClaim's volume, the claim.
type VolumeSample struct {
	Time           Time    `json:"time"`
	AvailableBytes *uint64 `json:"availableBytes,omitempty"`
	CapacityBytes  *uint64 `json:"capacityBytes,omitempty"`
	UsedBytes      *uint64 `json:"usedBytes,omitempty"`
	InodesFree     *uint64 `json:"inodesFree,omitempty"`
	Inodes         *uint64 `json:"inodes,omitempty"`
	InodesUsed     *uint64 `json:"inodesUsed,omitempty"`
	Name           string  `json:"name"`
	PVCRef         *struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"pvcRef,omitempty"`
}

// ContainerSummary is one container of a pod.
type ContainerSummary struct {
	Name   string        `json:"name"`
	CPU    *CPUSample    `json:"cpu,omitempty"`
	Memory *MemorySample `json:"memory,omitempty"`
}

// CPUSample is CPUStats' time and usage.
type CPUSample struct {
	Time                 Time    `json:"time"`
	UsageNanoCores       *uint64 `json:"usageNanoCores,omitempty"`
	UsageCoreNanoSeconds *uint64 `json:"usageCoreNanoSeconds,omitempty"`
}

// MemorySample is MemoryStats' working set.
type MemorySample struct {
	WorkingSetBytes *uint64 `json:"workingSetBytes,omitempty"`
}

// NetSample is NetworkStats' default interface counters.
type NetSample struct {
	Time    Time    `json:"time"`
	RxBytes *uint64 `json:"rxBytes,omitempty"`
	TxBytes *uint64 `json:"txBytes,omitempty"`
}

// FsSample is FsStats' usage.
type FsSample struct {
	UsedBytes     *uint64 `json:"usedBytes,omitempty"`
	CapacityBytes *uint64 `json:"capacityBytes,omitempty"`
}

// Time is an RFC 3339 time parsed without metav1.Time's detours.
type Time struct{ time.Time }

// UnmarshalJSON implements json.Unmarshaler.
func (t *Time) UnmarshalJSON(b []byte) error {
	if bytes.Equal(b, []byte("null")) {
		t.Time = time.Time{}
		return nil
	}
	if len(b) < 2 || b[0] != '"' || b[len(b)-1] != '"' {
		return fmt.Errorf("time: not a string: %s", b)
	}
	v, err := time.Parse(time.RFC3339Nano, string(b[1:len(b)-1]))
	if err != nil {
		return err
	}
	t.Time = v
	return nil
}

// MarshalJSON implements json.Marshaler.
func (t Time) MarshalJSON() ([]byte, error) {
	if t.IsZero() {
		return []byte("null"), nil
	}
	return []byte(`"` + t.UTC().Format(time.RFC3339Nano) + `"`), nil
}
