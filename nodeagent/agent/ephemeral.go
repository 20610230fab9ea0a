package agent

import (
	"context"
	"os"
	"path/filepath"
	"time"

	"github.com/skiffhq/skiff/nodeagent/runtime"
	"github.com/skiffhq/skiff/nodeagent/stats"
	corev1 "k8s.io/api/core/v1"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
)

// Ephemeral storage in the stats summary, as the kubelet defines it:
// each container's rootfs (its writable layer, as containerd's
// snapshotter counts it; capacity and available of the image
// filesystem) and logs (the files of its log folder; capacity and
// available of the log filesystem), and per pod ephemeral-storage: the
// containers' rootfs and logs plus the pod's local ephemeral volumes
// (disk-backed emptyDirs and configMaps, from the volume stats), with
// capacity and available of the node filesystem.

// containerFs fills c's Rootfs and Logs.
func (a *Agent) containerFs(ctx context.Context, ctr runtime.Container, cs *statsv1alpha1.ContainerStats, now time.Time) {
	if b, inodes, err := a.rt.WritableLayerUsage(ctx, ctr.ID); err == nil {
		fs := &statsv1alpha1.FsStats{Time: cs.StartTime}
		if img := a.summary.node.ImageFsPath; img != "" {
			if s := stats.FsStats(img, now); s != nil {
				fs = s
			}
		}
		fs.UsedBytes, fs.InodesUsed = &b, &inodes
		cs.Rootfs = fs
	}
	if p := ctr.Labels[runtime.LabelLogPath]; p != "" {
		dir := filepath.Dir(p)
		if fs := stats.FsStats(dir, now); fs != nil {
			var used, files uint64
			if ents, err := os.ReadDir(dir); err == nil {
				for _, e := range ents {
					if info, err := e.Info(); err == nil && info.Mode().IsRegular() {
						used += uint64(info.Size())
						files++
					}
				}
			}
			fs.UsedBytes, fs.InodesUsed = &used, &files
			cs.Logs = fs
		}
	}
}

// podEphemeralStorage is the pod's ephemeral-storage: its containers'
// rootfs and logs and its local ephemeral volumes.
func (a *Agent) podEphemeralStorage(pod *corev1.Pod, ps *statsv1alpha1.PodStats, now time.Time) *statsv1alpha1.FsStats {
	fs := stats.FsStats(a.opts.StateDir, now)
	if fs == nil {
		return nil
	}
	var used, inodes uint64
	for _, c := range ps.Containers {
		for _, f := range []*statsv1alpha1.FsStats{c.Rootfs, c.Logs} {
			if f != nil && f.UsedBytes != nil {
				used += *f.UsedBytes
			}
			if f != nil && f.InodesUsed != nil {
				inodes += *f.InodesUsed
			}
		}
	}
	local := map[string]bool{}
	for _, v := range pod.Spec.Volumes {
		if (v.EmptyDir != nil && v.EmptyDir.Medium == corev1.StorageMediumDefault) || v.ConfigMap != nil {
			local[v.Name] = true
		}
	}
	for _, v := range ps.VolumeStats {
		if local[v.Name] && v.UsedBytes != nil {
			used += *v.UsedBytes
			if v.InodesUsed != nil {
				inodes += *v.InodesUsed
			}
		}
	}
	fs.UsedBytes, fs.InodesUsed = &used, &inodes
	return fs
}
