package agent_test

import (
	"context"
	"fmt"
	"github.com/skiffhq/skiff/nodeagent/agent"
	"testing"
	"time"

	"github.com/skiffhq/skiff/internal/testimages"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// TestEphemeralStorageStats: a real pod writes 6 MiB into its writable
// layer, 3 MiB into a disk emptyDir and a 2000-character log line; the
// stats summary reports them as the container's rootfs and logs and the
// pod's ephemeral-storage (their sum), and the node's fs and imageFs.
func TestEphemeralStorageStats(t *testing.T) {
	// Usage is measured again every 2 s instead of every minute, so the
	// test need not wait for a second pass after the pod wrote its files.
	e := setupWith(t, func(o *agent.Options) { o.VolumeStatsAggPeriod = 2 * time.Second })
	const mib = 1 << 20
	script := "dd if=/dev/zero of=/big bs=1048576 count=6 && dd if=/dev/zero of=/scratch/f bs=1048576 count=3 && sync && " +
		"head -c 2000 /dev/zero | tr '\\000' a && echo && sleep 3600"
	p := e.createPod(&corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "eph"},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			Containers: []corev1.Container{{
				Name: "c", Image: testimages.Busybox, Command: []string{"sh", "-c", script},
				VolumeMounts: []corev1.VolumeMount{{Name: "scratch", MountPath: "/scratch"}},
			}},
			Volumes: []corev1.Volume{{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
		},
	})
	e.waitPod("default", "eph", "running", running)
	in := func(v *uint64, lo, hi uint64) bool { return v != nil && *v >= lo && *v <= hi }
	deadline := time.Now().Add(60 * time.Second)
	for {
		sum, err := e.agent.Summary(context.Background(), false)
		if err != nil {
			t.Fatal(err)
		}
		state := "pod not in summary"
		for _, ps := range sum.Pods {
			if ps.PodRef.UID != string(p.UID) || len(ps.Containers) != 1 {
				continue
			}
			c := ps.Containers[0]
			if c.Rootfs == nil || c.Logs == nil || ps.EphemeralStorage == nil {
				state = fmt.Sprintf("rootfs %v logs %v ephemeral %v", c.Rootfs, c.Logs, ps.EphemeralStorage)
				break
			}
			root, logs, eph := *c.Rootfs.UsedBytes, *c.Logs.UsedBytes, *ps.EphemeralStorage.UsedBytes
			state = fmt.Sprintf("rootfs %d logs %d ephemeral %d", root, logs, eph)
			if in(c.Rootfs.UsedBytes, 6*mib, 7*mib) && in(c.Logs.UsedBytes, 2000, 64<<10) &&
				in(ps.EphemeralStorage.UsedBytes, root+logs+3*mib, root+logs+4*mib) &&
				ps.EphemeralStorage.CapacityBytes != nil && *ps.EphemeralStorage.CapacityBytes > 0 {
				if sum.Node.Fs == nil || sum.Node.Fs.CapacityBytes == nil || sum.Node.Runtime == nil || sum.Node.Runtime.ImageFs == nil {
					t.Fatalf("node fs %v runtime %v", sum.Node.Fs, sum.Node.Runtime)
				}
				t.Logf("%s", state)
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("summary never showed the pod's bytes: %s", state)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
