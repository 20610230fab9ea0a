package runtime

import (
	"testing"

	v1 "github.com/containerd/cgroups/v3/cgroup1/stats"
	v2 "github.com/containerd/cgroups/v3/cgroup2/stats"
	"google.golang.org/protobuf/proto"
)

func TestDecodeCgroupStats(t *testing.T) {
	b1, _ := proto.Marshal(&v1.Metrics{
		CPU:    &v1.CPUStat{Usage: &v1.CPUUsage{Total: 5e9}},
		Memory: &v1.MemoryStat{Usage: &v1.MemoryEntry{Usage: 100 << 20}, TotalInactiveFile: 10 << 20, TotalRSS: 80 << 20},
	})
	b2, _ := proto.Marshal(&v2.Metrics{
		CPU:    &v2.CPUStat{UsageUsec: 5e6},
		Memory: &v2.MemoryStat{Usage: 100 << 20, InactiveFile: 10 << 20, Anon: 80 << 20},
	})
	for name, tc := range map[string]struct {
		url  string
		data []byte
	}{
		"v1": {"io.containerd.cgroups.v1.Metrics", b1},
		"v2": {"types.googleapis.com/io.containerd.cgroups.v2.Metrics", b2},
	} {
		t.Run(name, func(t *testing.T) {
			var st ContainerStats
			if err := decodeCgroupStats(tc.url, tc.data, &st); err != nil {
				t.Fatal(err)
			}
			if st.CPUUsageNanos != 5e9 || st.MemoryUsage != 100<<20 || st.MemoryWorkingSet != 90<<20 || st.MemoryRSS != 80<<20 {
				t.Fatalf("%+v", st)
			}
		})
	}
	var st ContainerStats
	if err := decodeCgroupStats("io.containerd.windows.Stats", nil, &st); err == nil {
		t.Fatal("unknown type accepted")
	}
}
