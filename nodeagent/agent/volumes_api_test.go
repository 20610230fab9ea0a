package agent_test

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/skiffhq/skiff/internal/testserver"
	"github.com/skiffhq/skiff/nodeagent/agent"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// readVolume lists a volume as a container sees it: path → contents
// through the visible names (symlinks followed), without the hidden ".."
// entries of the atomic writer.
func readVolume(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	var walk func(rel string)
	walk = func(rel string) {
		ents, err := os.ReadDir(filepath.Join(dir, rel))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			if rel == "" && strings.HasPrefix(e.Name(), "..") {
				continue
			}
			p := filepath.Join(rel, e.Name())
			st, err := os.Stat(filepath.Join(dir, p))
			if err != nil {
				t.Fatal(err)
			}
			if st.IsDir() {
				walk(p)
				continue
			}
			b, err := os.ReadFile(filepath.Join(dir, p))
			if err != nil {
				t.Fatal(err)
			}
			out[p] = string(b)
		}
	}
	walk("")
	return out
}

// TestAPIDataVolumesUpdate runs the agent's volume code against a real API
// server (no containers): configMap, secret, projected and downwardAPI
// volumes follow their objects and the pod's labels on every sync, as a
// running pod's resync does; an optional missing ConfigMap is an empty
// folder that fills once it exists; a non-optional one that goes away
// leaves the volume as it was and fails the sync.
func TestAPIDataVolumesUpdate(t *testing.T) {
	srv := testserver.Start(t)
	ctx := context.Background()
	c := srv.Client
	const ns = "default"
	state := t.TempDir()
	podDir := filepath.Join(state, "pods", "uid-1")
	cm, err := c.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "cfg"},
		Data:       map[string]string{"a": "1", "b": "2"},
		BinaryData: map[string][]byte{"bin": {0, 1}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sec, err := c.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "sec"}, Data: map[string][]byte{"pw": []byte("one")},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: ns, UID: "uid-1", Labels: map[string]string{"app": "x"}},
		Spec: corev1.PodSpec{Volumes: []corev1.Volume{
			{Name: "cm", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}}},
			{Name: "items", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
				LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}, DefaultMode: ptr.To[int32](0o600),
				Items: []corev1.KeyToPath{{Key: "a", Path: "nested/dir/a"}, {Key: "b", Path: "b", Mode: ptr.To[int32](0o444)}},
			}}},
			{Name: "opt", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "later"}, Optional: ptr.To(true)}}},
			{Name: "sec", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "sec"}}},
			{Name: "dapi", VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{Items: []corev1.DownwardAPIVolumeFile{
				{Path: "labels", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels"}},
				{Path: "name", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}},
				{Path: "app", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels['app']"}},
			}}}},
			{Name: "proj", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
				{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}, Items: []corev1.KeyToPath{{Key: "a", Path: "cm/a"}}}},
				{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "sec"}}},
				{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{{Path: "labels", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels"}}}}},
			}}}},
		}},
	}
	sync := func() map[string]map[string]string {
		t.Helper()
		out := map[string]map[string]string{}
		for _, v := range pod.Spec.Volumes {
			dir, err := agent.PrepareVolume(ctx, c, state, pod, v)
			if err != nil {
				t.Fatalf("volume %s: %v", v.Name, err)
			}
			out[v.Name] = readVolume(t, dir)
		}
		return out
	}
	want := map[string]map[string]string{
		"cm":    {"a": "1", "b": "2", "bin": "\x00\x01"},
		"items": {"nested/dir/a": "1", "b": "2"},
		"opt":   {},
		"sec":   {"pw": "one"},
		"dapi":  {"labels": `app="x"`, "name": "p", "app": "x"},
		"proj":  {"cm/a": "1", "pw": "one", "labels": `app="x"`},
	}
	check := func(when string) {
		t.Helper()
		got := sync()
		for name, w := range want {
			if !maps.Equal(got[name], w) {
				t.Errorf("%s: volume %s = %v, want %v", when, name, got[name], w)
			}
		}
	}
	check("first sync")
	itemsDir := filepath.Join(podDir, "volumes", "kubernetes.io~configmap", "items")
	for p, m := range map[string]os.FileMode{"nested/dir/a": 0o600, "b": 0o444} {
		if st, err := os.Stat(filepath.Join(itemsDir, p)); err != nil || st.Mode().Perm() != m {
			t.Errorf("items/%s mode %v (%v), want %v", p, st.Mode().Perm(), err, m)
		}
	}
	if l, err := os.Readlink(filepath.Join(itemsDir, "nested")); err != nil || l != "..data/nested" {
		t.Errorf("items/nested -> %q, %v; want the atomic writer's symlink", l, err)
	}

	// Updates: a key changes, one goes, one comes; the secret changes;
	// the optional ConfigMap appears; the pod's labels change.
	cm.Data = map[string]string{"a": "10", "c": "3"}
	cm.BinaryData = nil
	if _, err := c.CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	sec.Data["pw"] = []byte("two")
	if _, err := c.CoreV1().Secrets(ns).Update(ctx, sec, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "later"}, Data: map[string]string{"k": "v"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod.Labels = map[string]string{"app": "y", "tier": "web"}
	// Key b is gone from the ConfigMap: the items volume names it, so that
	// sync fails (below) and the volume keeps its contents.
	pod.Spec.Volumes[1].ConfigMap.Items = pod.Spec.Volumes[1].ConfigMap.Items[:1]
	want = map[string]map[string]string{
		"cm":    {"a": "10", "c": "3"},
		"items": {"nested/dir/a": "10"},
		"opt":   {"k": "v"},
		"sec":   {"pw": "two"},
		"dapi":  {"labels": "app=\"y\"\ntier=\"web\"", "name": "p", "app": "y"},
		"proj":  {"cm/a": "10", "pw": "two", "labels": "app=\"y\"\ntier=\"web\""},
	}
	check("after updates")

	// A referenced key that is missing fails the sync; the volume keeps
	// what it had.
	bad := corev1.Volume{Name: "items", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
		LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}, Items: []corev1.KeyToPath{{Key: "b", Path: "b"}}}}}
	if _, err := agent.PrepareVolume(ctx, c, state, pod, bad); err == nil || !strings.Contains(err.Error(), "non-existent config key: b") {
		t.Errorf("missing key: %v", err)
	}
	if got := readVolume(t, itemsDir); !maps.Equal(got, map[string]string{"nested/dir/a": "10"}) {
		t.Errorf("volume after a failed sync: %v", got)
	}
	// The ConfigMap deleted: the non-optional volume fails and keeps its
	// contents; the optional one becomes empty.
	if err := c.CoreV1().ConfigMaps(ns).Delete(ctx, "cfg", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.CoreV1().ConfigMaps(ns).Delete(ctx, "later", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := agent.PrepareVolume(ctx, c, state, pod, pod.Spec.Volumes[0]); err == nil || !strings.Contains(err.Error(), `configmap "cfg" not found`) {
		t.Errorf("deleted configmap: %v", err)
	}
	cmDir := filepath.Join(podDir, "volumes", "kubernetes.io~configmap")
	if got := readVolume(t, filepath.Join(cmDir, "cm")); !maps.Equal(got, map[string]string{"a": "10", "c": "3"}) {
		t.Errorf("volume of a deleted configmap: %v", got)
	}
	if dir, err := agent.PrepareVolume(ctx, c, state, pod, pod.Spec.Volumes[2]); err != nil || len(readVolume(t, dir)) != 0 {
		t.Errorf("optional configmap deleted: %v, %v", err, readVolume(t, dir))
	}
}
