package agent_test

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/skiffhq/skiff/nodeagent/agent"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/controllers/persistentvolume/provisioner/localpath"
	"github.com/skiffhq/skiff/internal/testimages"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
	"k8s.io/utils/ptr"
)

// TestVolumeStats runs a real pod on a local-path claim that writes
// 10 MiB into it: the agent's stats summary reports the claim's volume
// (pvcRef, usedBytes within a margin of 10 MiB, capacity and inodes from
// the backing filesystem) and the pod's emptyDir and downwardAPI volumes,
// with upstream's JSON field names. The node reports its storage space
// and the controller manager publishes its CSIStorageCapacity.
func TestVolumeStats(t *testing.T) {
	// Usage is measured again every 2 s instead of every minute, so the
	// test need not wait for a second pass after the pod wrote its files.
	e := setupWith(t, func(o *agent.Options) { o.VolumeStatsAggPeriod = 2 * time.Second })
	c := e.srv.Client
	ctx := context.Background()
	const ns = "default"
	_, _ = c.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{})
	if _, err := c.CoreV1().PersistentVolumeClaims(ns).Create(ctx, &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "stats-data"},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("64Mi")}},
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	script := "dd if=/dev/zero of=/data/blob bs=1048576 count=10 && echo x > /scratch/f && sync && touch /data/done && sleep 3600"
	if _, err := c.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "vol-stats"},
		Spec: corev1.PodSpec{
			NodeSelector:                  map[string]string{corev1.LabelHostname: e.nodeName},
			AutomountServiceAccountToken:  ptr.To(false),
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			Containers: []corev1.Container{{
				Name: "c", Image: testimages.Busybox, Command: []string{"sh", "-c", script},
				VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}, {Name: "scratch", MountPath: "/scratch"}},
			}},
			Volumes: []corev1.Volume{
				{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "stats-data"}}},
				{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
				{Name: "info", VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{Items: []corev1.DownwardAPIVolumeFile{
					{Path: "name", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}},
				}}}},
			},
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitPod(ns, "vol-stats", "running", running)
	pvc, err := c.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "stats-data", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	done := filepath.Join(e.storageDir(), pvc.Spec.VolumeName, "done")
	deadline := time.Now().Add(60 * time.Second)
	for _, err := os.Stat(done); err != nil; _, err = os.Stat(done) {
		if time.Now().After(deadline) {
			t.Fatalf("the pod did not write its data: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Usage is walked in the background at most once per
	// VolumeStatsAggPeriod per volume: the 10 MiB show within a couple
	// of walks.
	const mib = 1 << 20
	var vols map[string]statsv1alpha1.VolumeStats
	var raw []byte
	deadline = time.Now().Add(3 * time.Minute)
	for {
		sum, err := e.agent.Summary(ctx, false)
		if err != nil {
			t.Fatal(err)
		}
		vols = map[string]statsv1alpha1.VolumeStats{}
		for _, p := range sum.Pods {
			if p.PodRef.Name == "vol-stats" {
				for _, v := range p.VolumeStats {
					vols[v.Name] = v
				}
				raw, _ = json.Marshal(p.VolumeStats)
			}
		}
		d, s := vols["data"], vols["scratch"]
		// The storage report may have walked the volume (it lives in the
		// agent's storage directory) before "done" was written: wait for
		// a walk that saw all three entries.
		if d.UsedBytes != nil && *d.UsedBytes >= 10*mib && d.InodesUsed != nil && *d.InodesUsed >= 3 && s.UsedBytes != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no volume stats with the pod's 10 MiB: %s", raw)
		}
		time.Sleep(time.Second)
	}
	d := vols["data"]
	if d.PVCRef == nil || d.PVCRef.Name != "stats-data" || d.PVCRef.Namespace != ns {
		t.Errorf("data volume pvcRef = %+v", d.PVCRef)
	}
	if *d.UsedBytes > 12*mib {
		t.Errorf("data volume usedBytes = %d, want 10 MiB (+ at most 2 MiB)", *d.UsedBytes)
	}
	if d.CapacityBytes == nil || d.AvailableBytes == nil || *d.CapacityBytes == 0 || *d.AvailableBytes > *d.CapacityBytes ||
		d.Inodes == nil || d.InodesFree == nil || d.InodesUsed == nil || *d.InodesUsed < 3 || d.Time.IsZero() {
		t.Errorf("data volume stats incomplete: %s", raw)
	}
	if s := vols["scratch"]; s.PVCRef != nil || *s.UsedBytes == 0 || *s.UsedBytes > mib {
		t.Errorf("emptyDir stats: %s", raw)
	}
	if i, ok := vols["info"]; !ok || i.PVCRef != nil || i.UsedBytes == nil {
		t.Errorf("no stats of the downwardAPI volume: %s", raw)
	}
	for _, field := range []string{`"name":"data"`, `"pvcRef":{"name":"stats-data","namespace":"default"}`, `"usedBytes":`, `"capacityBytes":`, `"availableBytes":`, `"inodesFree":`, `"inodesUsed":`, `"inodes":`, `"time":`} {
		if !strings.Contains(string(raw), field) {
			t.Errorf("summary JSON lacks %s: %s", field, raw)
		}
	}

	// The node's storage report and its published capacity.
	node, err := c.CoreV1().Nodes().Get(ctx, e.nodeName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := strconv.ParseInt(node.Annotations[localpath.AnnAvailableBytes], 10, 64); err != nil || n <= 0 {
		t.Errorf("node annotation %s = %q", localpath.AnnAvailableBytes, node.Annotations[localpath.AnnAvailableBytes])
	}
	caps, err := c.StorageV1().CSIStorageCapacities(metav1.NamespaceSystem).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	found := ""
	for _, o := range caps.Items {
		if o.NodeTopology != nil && o.NodeTopology.MatchLabels[corev1.LabelHostname] == e.nodeName && o.StorageClassName == localpath.ClassName {
			found = fmt.Sprint(o.Capacity)
		}
	}
	if found == "" {
		t.Errorf("no CSIStorageCapacity published for node %s", e.nodeName)
	}
}
