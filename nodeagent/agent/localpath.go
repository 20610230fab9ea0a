package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/skiffhq/skiff/controlplane/controllers/persistentvolume/provisioner/localpath"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Local-path storage capacity: the agent owns the node's storage
// directory (<data-dir>/storage, where local-path volumes live) and
// reports its space in two annotations on its Node (localpath.AnnAvailableBytes:
// the filesystem's available bytes; localpath.AnnUsedBytes: what the volume
// directories in it use, from the du cache). The controller manager turns
// them into the node's CSIStorageCapacity objects. A report is written
// when either number moved by at least 1% of the filesystem (at least
// 1 MiB) since the last one, so a busy disk does not rewrite the Node on
// every tick.

// storageSample is one measurement of the storage directory.
type storageSample struct {
	avail, used, size int64
}

// sampleStorage measures the storage directory: statfs of its filesystem
// and the last du of each directory in it.
func (a *Agent) sampleStorage() (storageSample, error) {
	dir := a.storageDir()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return storageSample{}, fmt.Errorf("statfs %s: %w", dir, err)
	}
	s := storageSample{avail: int64(st.Bavail) * st.Bsize, size: int64(st.Blocks) * st.Bsize}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return storageSample{}, fmt.Errorf("read %s: %w", dir, err)
	}
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		if u, ok := a.summary.du.Get(filepath.Join(dir, e.Name())); ok {
			s.used += int64(u.Bytes)
		}
	}
	return s, nil
}

// storageDir is the node's local-path storage directory:
// <data-dir>/storage, beside the agent's state folder <data-dir>/agent
// (absolute: the provisioner puts it in the volumes' paths).
func (a *Agent) storageDir() string {
	dir := filepath.Join(filepath.Dir(a.opts.StateDir), "storage")
	if abs, err := filepath.Abs(dir); err == nil {
		return abs
	}
	return dir
}

// reclaimVolumes removes the local-path directories the controller asks
// this node to delete (annotation localpath.AnnDelete of its own Node)
// and answers each request in localpath.AnnDeleted: "" once the directory
// is gone, else why not. Only <storage dir>/<volume name> is ever
// removed (localpath.RemoveVolumeDir). heartbeat calls it with the Node
// it just read.
func (a *Agent) reclaimVolumes(ctx context.Context, n *corev1.Node) {
	reqs, err := localpath.ParseDirs(n.Annotations[localpath.AnnDelete])
	if err != nil {
		a.log.Warn("local-path delete requests", "err", err)
	}
	root := a.storageDir()
	acks := map[string]string{}
	for name, dir := range reqs {
		_, statErr := os.Lstat(dir)
		if err := localpath.RemoveVolumeDir(root, name, dir); err != nil {
			acks[name] = err.Error()
			continue
		}
		acks[name] = ""
		if statErr == nil {
			a.log.Info("removed released local-path volume", "volume", name, "dir", dir)
		}
	}
	want := localpath.FormatDirs(acks)
	if n.Annotations[localpath.AnnDeleted] == want {
		return
	}
	val := any(nil)
	if want != "" {
		val = want
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]any{localpath.AnnDeleted: val}}})
	if err != nil {
		return
	}
	if _, err := a.client.CoreV1().Nodes().Patch(ctx, a.opts.NodeName, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		a.log.Warn("answer local-path delete requests", "err", err)
	}
}

// storageReporter writes the Node's storage annotations when they moved
// enough; heartbeat calls it on every tick.
type storageReporter struct {
	last *storageSample
}

func (r *storageReporter) report(ctx context.Context, a *Agent) {
	if r.last == nil {
		if err := os.MkdirAll(a.storageDir(), 0o755); err != nil {
			a.log.Warn("storage report", "err", err)
			return
		}
	}
	s, err := a.sampleStorage()
	if err != nil {
		a.log.Warn("storage report", "err", err)
		return
	}
	if r.last != nil && !moved(r.last.avail, s.avail, s.size) && !moved(r.last.used, s.used, s.size) {
		return
	}
	if err := a.patchStorageAnnotations(ctx, s); err != nil {
		a.log.Warn("storage report", "err", err)
		return
	}
	r.last = &s
}

// moved reports whether a reported number changed enough to be written
// again: 1% of the filesystem's size, at least 1 MiB.
func moved(old, cur, size int64) bool {
	d := cur - old
	if d < 0 {
		d = -d
	}
	return d >= max(1<<20, size/100)
}

func (a *Agent) patchStorageAnnotations(ctx context.Context, s storageSample) error {
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{
		localpath.AnnAvailableBytes: strconv.FormatInt(s.avail, 10),
		localpath.AnnUsedBytes:      strconv.FormatInt(s.used, 10),
		localpath.AnnStorageDir:     a.storageDir(),
	}}})
	if err != nil {
		return err
	}
	if _, err := a.client.CoreV1().Nodes().Patch(ctx, a.opts.NodeName, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("annotate node with its storage: %w", err)
	}
	return nil
}
