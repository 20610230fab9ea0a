package agent

import (
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
)

// Volume stats of the stats summary (pods[].volume[]), as the kubelet
// reports them for volumes measured with du: usedBytes and inodesUsed
// from the du cache (du.go; a walk at most once a minute per volume, on
// a background goroutine), capacityBytes, availableBytes, inodes and
// inodesFree from statfs of the filesystem that backs the volume; time is
// when the walk ended. Reported volumes: claims bound to local and
// hostPath volumes (with pvcRef), emptyDir, and the API-data volumes
// configMap, secret, projected and downwardAPI. A volume appears once its
// first walk has finished.

// claimMounts remembers where each pod's claims are on this node (the
// directory resolved when the volume was mounted), so the summary needs no
// API calls.
type claimMounts struct {
	m sync.Map // "<pod uid>/<volume>" → claimMount
}

type claimMount struct {
	path, claim string
}

func (c *claimMounts) record(uid types.UID, volume, claim, path string) {
	c.m.Store(string(uid)+"/"+volume, claimMount{path: path, claim: claim})
}

func (c *claimMounts) get(uid types.UID, volume string) (claimMount, bool) {
	v, ok := c.m.Load(string(uid) + "/" + volume)
	if !ok {
		return claimMount{}, false
	}
	return v.(claimMount), true
}

// prune forgets the claims of pods keep says are gone.
func (c *claimMounts) prune(keep func(uid string) bool) {
	c.m.Range(func(k, _ any) bool {
		if uid, _, _ := strings.Cut(k.(string), "/"); !keep(uid) {
			c.m.Delete(k)
		}
		return true
	})
}

// volumeDir is the host directory of one of the pod's volumes and the
// claim behind it ("" for other volumes); ok is false for volumes the
// summary does not report.
func (a *Agent) volumeDir(pod *corev1.Pod, v corev1.Volume) (dir, claim string, ok bool) {
	base := filepath.Join(a.podDir(pod.UID), "volumes")
	switch {
	case v.PersistentVolumeClaim != nil:
		m, ok := a.summary.claims.get(pod.UID, v.Name)
		return m.path, m.claim, ok
	case v.EmptyDir != nil:
		return filepath.Join(base, "kubernetes.io~empty-dir", v.Name), "", true
	case v.ConfigMap != nil:
		return filepath.Join(base, "kubernetes.io~configmap", v.Name), "", true
	case v.Secret != nil:
		return filepath.Join(base, "kubernetes.io~secret", v.Name), "", true
	case v.Projected != nil:
		return filepath.Join(base, "kubernetes.io~projected", v.Name), "", true
	case v.DownwardAPI != nil:
		return filepath.Join(base, "kubernetes.io~downward-api", v.Name), "", true
	}
	return "", "", false
}

// volumeStats returns the stats of the pod's reported volumes that have
// been measured.
func (a *Agent) volumeStats(pod *corev1.Pod) []statsv1alpha1.VolumeStats {
	var out []statsv1alpha1.VolumeStats
	for _, v := range pod.Spec.Volumes {
		dir, claim, ok := a.volumeDir(pod, v)
		if !ok {
			continue
		}
		u, ok := a.summary.du.Get(dir)
		if !ok {
			continue
		}
		var st unix.Statfs_t
		if unix.Statfs(dir, &st) != nil {
			continue
		}
		bsize := uint64(st.Bsize)
		capacity, avail := st.Blocks*bsize, st.Bavail*bsize
		inodes, free, used, iused := st.Files, st.Ffree, u.Bytes, u.Inodes
		vs := statsv1alpha1.VolumeStats{
			Name: v.Name,
			FsStats: statsv1alpha1.FsStats{
				Time: metav1.NewTime(u.At), CapacityBytes: &capacity, AvailableBytes: &avail, UsedBytes: &used,
				Inodes: &inodes, InodesFree: &free, InodesUsed: &iused,
			},
		}
		if claim != "" {
			vs.PVCRef = &statsv1alpha1.PVCReference{Name: claim, Namespace: pod.Namespace}
		}
		out = append(out, vs)
	}
	return out
}
