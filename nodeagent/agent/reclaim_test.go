package agent_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/controllers/persistentvolume/provisioner/localpath"
	"github.com/skiffhq/skiff/internal/testimages"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

// storageDir is the agent's local-path storage directory (<data-dir>/storage
// beside its state folder), which it reports on its Node.
func (e *env) storageDir() string {
	return filepath.Join(filepath.Dir(e.opts.StateDir), "storage")
}

// eventually polls cond every 100 ms until it holds or d passes.
func eventually(t *testing.T, what string, d time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, st := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: never happened; last state: %s", what, st)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestLocalPathReclaimOnNode deletes released local-path volumes on the
// node that holds them, through the node's own credentials: the agent
// keeps its volumes in its own storage directory (not the server's), so
// only the agent can remove them. A Delete-reclaim claim's volume stays
// Released while the agent is away and its directory is kept; once the
// agent is back it removes the directory and the PV is deleted. A Retain
// volume keeps its directory; volumes whose path is outside the storage
// directory or a symlink are refused (VolumeFailedDelete, nothing
// removed); the node may not write the controller's delete requests.
func TestLocalPathReclaimOnNode(t *testing.T) {
	e := setup(t)
	c := e.srv.Client
	ctx := context.Background()
	const ns = "default"
	root := e.storageDir()

	// A pod writes into a local-path claim and finishes.
	if _, err := c.CoreV1().PersistentVolumeClaims(ns).Create(ctx, &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "reclaim"},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("8Mi")}},
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Scheduled (not bound by the test): the scheduler picks the node the
	// WaitForFirstConsumer claim is provisioned on.
	_, _ = c.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{})
	if _, err := c.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "writer", Namespace: ns},
		Spec: corev1.PodSpec{
			NodeSelector:                  map[string]string{corev1.LabelHostname: e.nodeName},
			AutomountServiceAccountToken:  ptr.To(false),
			RestartPolicy:                 corev1.RestartPolicyNever,
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			Containers: []corev1.Container{{
				Name: "c", Image: testimages.Busybox, Command: []string{"sh", "-c", "echo data > /data/f"},
				VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}},
			}},
			Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "reclaim"}}}},
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitPod(ns, "writer", "succeeded", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodSucceeded })
	pvc, err := c.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "reclaim", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pvName := pvc.Spec.VolumeName
	dir := filepath.Join(root, pvName)
	if b, err := os.ReadFile(filepath.Join(dir, "f")); err != nil || string(b) != "data\n" {
		t.Fatalf("volume file: %q %v", b, err)
	}

	// Static volumes as if local-path made them, already released (their
	// claim never existed): one Retain, two Delete with bad paths.
	victim := t.TempDir()
	if err := os.WriteFile(filepath.Join(victim, "keep"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	retainDir := filepath.Join(root, "retained-vol")
	if err := os.MkdirAll(retainDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(retainDir, "keep"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, filepath.Join(root, "linked-vol")); err != nil {
		t.Fatal(err)
	}
	static := func(name, path string, policy corev1.PersistentVolumeReclaimPolicy) {
		t.Helper()
		if _, err := c.CoreV1().PersistentVolumes().Create(ctx, &corev1.PersistentVolume{
			ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{"pv.kubernetes.io/provisioned-by": localpath.Name}},
			Spec: corev1.PersistentVolumeSpec{
				Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Mi")},
				AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				PersistentVolumeReclaimPolicy: policy,
				StorageClassName:              "manual",
				PersistentVolumeSource:        corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: path}},
				ClaimRef:                      &corev1.ObjectReference{Kind: "PersistentVolumeClaim", Namespace: ns, Name: "gone-" + name, UID: types.UID("uid-" + name)},
				NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
					MatchExpressions: []corev1.NodeSelectorRequirement{{Key: corev1.LabelHostname, Operator: corev1.NodeSelectorOpIn, Values: []string{e.nodeName}}},
				}}}},
			},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	static("retained-vol", retainDir, corev1.PersistentVolumeReclaimRetain)
	static("outside-vol", victim, corev1.PersistentVolumeReclaimDelete)
	static("linked-vol", filepath.Join(root, "linked-vol"), corev1.PersistentVolumeReclaimDelete)

	// The agent goes away; the claim is deleted: the volume is Released
	// and asked for on the node, and nothing else touches its directory.
	e.agent.Stop()
	e.agent = nil
	if err := c.CoreV1().PersistentVolumeClaims(ns).Delete(ctx, "reclaim", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	node := func() *corev1.Node {
		n, err := c.CoreV1().Nodes().Get(ctx, e.nodeName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	eventually(t, "delete request on the node", 30*time.Second, func() (bool, string) {
		reqs, _ := localpath.ParseDirs(node().Annotations[localpath.AnnDelete])
		return reqs[pvName] == dir, fmt.Sprint(reqs)
	})
	time.Sleep(2 * time.Second) // a few binder rechecks
	if pv, err := c.CoreV1().PersistentVolumes().Get(ctx, pvName, metav1.GetOptions{}); err != nil || pv.Status.Phase != corev1.VolumeReleased {
		t.Fatalf("volume while its node is away: %v %v; want Released", pv.Status, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "f")); err != nil {
		t.Fatalf("directory removed without the node: %v", err)
	}

	// The node may not change the controller's requests, nor touch
	// another node.
	rc, err := e.srv.ComponentConfig("system:node:"+e.nodeName, []string{"system:nodes"})
	if err != nil {
		t.Fatal(err)
	}
	nc := kubernetes.NewForConfigOrDie(rc)
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]any{localpath.AnnDelete: `{"x":"/etc"}`}}})
	if _, err := nc.CoreV1().Nodes().Patch(ctx, e.nodeName, types.MergePatchType, patch, metav1.PatchOptions{}); !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), localpath.AnnDelete) {
		t.Fatalf("node patching its delete requests: %v; want 403", err)
	}
	other := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: e.nodeName + "-other"}}
	if _, err := c.CoreV1().Nodes().Create(ctx, other, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.CoreV1().Nodes().Delete(context.Background(), other.Name, metav1.DeleteOptions{}) })
	ack, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]any{localpath.AnnDeleted: `{"x":""}`}}})
	if _, err := nc.CoreV1().Nodes().Patch(ctx, other.Name, types.MergePatchType, ack, metav1.PatchOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("node answering for another node: %v; want 403", err)
	}

	// The agent is back: it removes the directory, then the volume goes.
	e.start()
	eventually(t, "volume and directory deleted", 60*time.Second, func() (bool, string) {
		_, err := c.CoreV1().PersistentVolumes().Get(ctx, pvName, metav1.GetOptions{})
		_, serr := os.Stat(dir)
		return apierrors.IsNotFound(err) && os.IsNotExist(serr), fmt.Sprintf("get %v, stat %v", err, serr)
	})
	eventually(t, "request withdrawn", 30*time.Second, func() (bool, string) {
		n := node()
		reqs, _ := localpath.ParseDirs(n.Annotations[localpath.AnnDelete])
		acks, _ := localpath.ParseDirs(n.Annotations[localpath.AnnDeleted])
		_, r := reqs[pvName]
		_, a := acks[pvName]
		return !r && !a, fmt.Sprint(reqs, acks)
	})

	// The bad paths are refused: the volumes fail with the node's reason
	// and nothing outside the storage directory is removed.
	for name, want := range map[string]string{"outside-vol": "is not the local-path directory", "linked-vol": "is a symlink"} {
		eventually(t, name+" failed", 30*time.Second, func() (bool, string) {
			pv, err := c.CoreV1().PersistentVolumes().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			return pv.Status.Phase == corev1.VolumeFailed && strings.Contains(pv.Status.Message, want), fmt.Sprintf("%s: %s", pv.Status.Phase, pv.Status.Message)
		})
		eventually(t, name+" event", 10*time.Second, func() (bool, string) {
			evs, err := c.CoreV1().Events("").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
			if err != nil {
				return false, err.Error()
			}
			for _, ev := range evs.Items {
				if ev.Reason == "VolumeFailedDelete" && ev.Type == corev1.EventTypeWarning && strings.Contains(ev.Message, want) {
					return true, ""
				}
			}
			return false, fmt.Sprint(len(evs.Items), " events")
		})
	}
	if _, err := os.Stat(filepath.Join(victim, "keep")); err != nil {
		t.Fatalf("file outside the storage directory removed: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(root, "linked-vol")); err != nil {
		t.Fatalf("symlink removed: %v", err)
	}
	// Retain keeps volume and directory.
	if pv, err := c.CoreV1().PersistentVolumes().Get(ctx, "retained-vol", metav1.GetOptions{}); err != nil || pv.Status.Phase != corev1.VolumeReleased {
		t.Fatalf("retained volume: %v %v; want Released", pv.Status, err)
	}
	if _, err := os.Stat(filepath.Join(retainDir, "keep")); err != nil {
		t.Fatalf("retained directory: %v", err)
	}
}
