package persistentvolume_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/controllers/persistentvolume"
	"github.com/skiffhq/skiff/controlplane/scheduler/plugins/volumebinding"
	"github.com/skiffhq/skiff/internal/testserver"
	"github.com/skiffhq/skiff/nodeagent/hollow"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

func mkPod(t *testing.T, c kubernetes.Interface, ns, name, node string, claims ...string) {
	t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
	}
	if node != "" {
		pod.Spec.NodeSelector = map[string]string{corev1.LabelHostname: node}
	}
	for _, cl := range claims {
		pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: cl, VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: cl}}})
	}
	if _, err := c.CoreV1().Pods(ns).Create(context.Background(), pod, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create pod %s: %v", name, err)
	}
}

func podNode(c kubernetes.Interface, ns, name string) (string, string) {
	p, err := c.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		return "", err.Error()
	}
	return p.Spec.NodeName, fmt.Sprintf("node=%q phase=%s conditions=%v", p.Spec.NodeName, p.Status.Phase, p.Status.Conditions)
}

// TestWaitForFirstConsumer runs the server's scheduler and PV binder with
// hollow nodes: a WaitForFirstConsumer claim binds a static local volume
// on the node its pod can use, the default local-path class provisions
// on the pod's node (PV node affinity to it) and removes the directory on
// Delete reclaim, and pods whose volumes cannot be had are rejected with
// the VolumeBinding plugin's reasons.
func TestWaitForFirstConsumer(t *testing.T) {
	s := testserver.Start(t)
	c := s.Client
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	nodes, err := hollow.Start(ctx, s.Config, hollow.Options{Nodes: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer nodes.Stop()
	names := nodes.NodeNames()
	const ns = "default"
	wait := storagev1.VolumeBindingWaitForFirstConsumer
	if _, err := c.StorageV1().StorageClasses().Create(ctx, &storagev1.StorageClass{
		ObjectMeta: metav1.ObjectMeta{Name: "local-static"}, Provisioner: volumebinding.NoProvisioner, VolumeBindingMode: &wait,
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	onNode := func(n string) func(*corev1.PersistentVolume) {
		return func(v *corev1.PersistentVolume) {
			v.Spec.HostPath = nil
			v.Spec.Local = &corev1.LocalVolumeSource{Path: "/mnt/disks/" + v.Name}
			v.Spec.NodeAffinity = &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
				MatchExpressions: []corev1.NodeSelectorRequirement{{Key: corev1.LabelHostname, Operator: corev1.NodeSelectorOpIn, Values: []string{n}}},
			}}}}
		}
	}

	t.Run("static local volume decides the node", func(t *testing.T) {
		mkPV(t, c, "disk-on-2", "5Gi", "local-static", corev1.PersistentVolumeReclaimRetain, onNode(names[2]))
		mkPVC(t, c, ns, "static-claim", "2Gi", ptr.To("local-static"))
		waitEvent(t, c, ns, "PersistentVolumeClaim", "static-claim", persistentvolume.EventWaitForFirstConsumer, "waiting for first consumer")
		if pvc, st := claimState(c, ns, "static-claim"); pvc == nil || pvc.Status.Phase != corev1.ClaimPending {
			t.Fatalf("claim bound before a consumer: %s", st)
		}
		mkPod(t, c, ns, "static-user", "", "static-claim")
		eventually(t, "pod placed with its volume", 30*time.Second, func() (bool, string) {
			n, st := podNode(c, ns, "static-user")
			return n == names[2], st
		})
		pvc, st := claimState(c, ns, "static-claim")
		if pvc == nil || pvc.Status.Phase != corev1.ClaimBound || pvc.Spec.VolumeName != "disk-on-2" {
			t.Fatalf("claim not bound before the pod was: %s", st)
		}
	})

	t.Run("bound volume's node affinity conflicts with the pod's node", func(t *testing.T) {
		mkPod(t, c, ns, "conflict", names[0], "static-claim")
		waitEvent(t, c, ns, "Pod", "conflict", "FailedScheduling", volumebinding.ErrReasonNodeConflict)
		if n, st := podNode(c, ns, "conflict"); n != "" {
			t.Fatalf("pod bound despite the conflict: %s", st)
		}
	})

	t.Run("no volume on any node", func(t *testing.T) {
		mkPVC(t, c, ns, "too-big", "50Gi", ptr.To("local-static"))
		mkPod(t, c, ns, "starved", "", "too-big")
		waitEvent(t, c, ns, "Pod", "starved", "FailedScheduling", "3 "+volumebinding.ErrReasonBindConflict)
		// A volume appearing later gets the pod scheduled (the plugin's
		// events requeue it).
		mkPV(t, c, "late-disk", "60Gi", "local-static", corev1.PersistentVolumeReclaimRetain, onNode(names[1]))
		eventually(t, "pod placed once a volume exists", 30*time.Second, func() (bool, string) {
			n, st := podNode(c, ns, "starved")
			return n == names[1], st
		})
	})

	t.Run("local-path provisions on the pod's node and deletes on reclaim", func(t *testing.T) {
		mkPVC(t, c, ns, "dyn", "1Gi", nil) // default class: local-path
		mkPod(t, c, ns, "dyn-user", names[1], "dyn")
		eventually(t, "pod scheduled", 30*time.Second, func() (bool, string) {
			n, st := podNode(c, ns, "dyn-user")
			return n == names[1], st
		})
		pvc, st := claimState(c, ns, "dyn")
		if pvc == nil || pvc.Status.Phase != corev1.ClaimBound || pvc.Annotations[persistentvolume.AnnSelectedNode] != names[1] {
			t.Fatalf("claim: %s annotations %v", st, pvc.Annotations)
		}
		pvName := pvc.Spec.VolumeName
		if pvName != "pvc-"+string(pvc.UID) {
			t.Fatalf("provisioned volume named %q", pvName)
		}
		waitEvent(t, c, ns, "PersistentVolumeClaim", "dyn", persistentvolume.EventProvisioningSucceeded, "using skiff.io/local-path")
		v, _ := volumeState(c, pvName)
		dir := filepath.Join(s.DataDir, "storage", pvName)
		if v.Spec.HostPath == nil || v.Spec.HostPath.Path != dir {
			t.Fatalf("volume source %+v, want hostPath %s", v.Spec.PersistentVolumeSource, dir)
		}
		if v.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimDelete || v.Annotations[persistentvolume.AnnDynamicallyProvisioned] != "skiff.io/local-path" {
			t.Fatalf("volume policy %s annotations %v", v.Spec.PersistentVolumeReclaimPolicy, v.Annotations)
		}
		terms := v.Spec.NodeAffinity.Required.NodeSelectorTerms
		if len(terms) != 1 || !strings.Contains(fmt.Sprint(terms[0].MatchExpressions), names[1]) {
			t.Fatalf("node affinity %v, want %s", terms, names[1])
		}
		// local-path allows expansion: a larger request grows the
		// volume and the claim's capacity.
		claims := c.CoreV1().PersistentVolumeClaims(ns)
		if _, err := testserver.Modify(ctx, claims.Get, claims.Update, pvc.Name, func(pvc *corev1.PersistentVolumeClaim) {
			pvc.Spec.Resources.Requests[corev1.ResourceStorage] = resource.MustParse("3Gi")
		}); err != nil {
			t.Fatal(err)
		}
		eventually(t, "volume expanded", 20*time.Second, func() (bool, string) {
			v, st := volumeState(c, pvName)
			cl, cst := claimState(c, ns, "dyn")
			if v == nil || cl == nil {
				return false, st + cst
			}
			vq, cq := v.Spec.Capacity[corev1.ResourceStorage], cl.Status.Capacity[corev1.ResourceStorage]
			return vq.String() == "3Gi" && cq.String() == "3Gi", "volume " + vq.String() + " claim " + cq.String()
		})
		waitEvent(t, c, ns, "PersistentVolumeClaim", "dyn", persistentvolume.EventVolumeResizeSuccessful, "to 3Gi succeeded")
		// Hollow nodes mount nothing; stand in for the agent that would
		// have made the directory.
		if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "data", "f"), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := c.CoreV1().Pods(ns).Delete(ctx, "dyn-user", metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
			t.Fatal(err)
		}
		if err := c.CoreV1().PersistentVolumeClaims(ns).Delete(ctx, "dyn", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		eventually(t, "volume deleted", 30*time.Second, func() (bool, string) {
			v, st := volumeState(c, pvName)
			return v == nil && strings.Contains(st, "not found"), st
		})
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Fatalf("directory %s left after Delete reclaim: %v", dir, err)
		}
	})

	t.Run("selected node gone: the claim is rescheduled", func(t *testing.T) {
		// The scheduler chose a node that then disappeared: the binder
		// drops the choice, and the claim's consumer is placed again.
		mkPVC(t, c, ns, "orphan", "1Gi", nil, func(pvc *corev1.PersistentVolumeClaim) {
			pvc.Annotations = map[string]string{persistentvolume.AnnSelectedNode: "gone-node"}
		})
		waitEvent(t, c, ns, "PersistentVolumeClaim", "orphan", persistentvolume.EventProvisioningFailed, `selected node "gone-node" not found`)
		eventually(t, "stale node choice removed", 10*time.Second, func() (bool, string) {
			pvc, st := claimState(c, ns, "orphan")
			if pvc == nil {
				return false, st
			}
			_, has := pvc.Annotations[persistentvolume.AnnSelectedNode]
			return !has, fmt.Sprintf("%s annotations %v", st, pvc.Annotations)
		})
		mkPod(t, c, ns, "orphan-user", names[0], "orphan")
		eventually(t, "claim provisioned on the pod's node", 30*time.Second, func() (bool, string) {
			pvc, st := claimState(c, ns, "orphan")
			n, pst := podNode(c, ns, "orphan-user")
			return pvc != nil && pvc.Status.Phase == corev1.ClaimBound && pvc.Annotations[persistentvolume.AnnSelectedNode] == names[0] && n == names[0], st + " pod " + pst
		})
	})

	t.Run("provisioner gives the node back: the pod is placed again", func(t *testing.T) {
		// An external provisioner that cannot make the volume on the
		// chosen node removes the choice; the scheduler's wait for the
		// claim ends at once and the pod goes back to the queue.
		if _, err := c.StorageV1().StorageClasses().Create(ctx, &storagev1.StorageClass{
			ObjectMeta: metav1.ObjectMeta{Name: "external-wffc"}, Provisioner: "example.com/external", VolumeBindingMode: &wait,
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		mkPVC(t, c, ns, "ext", "1Gi", ptr.To("external-wffc"))
		mkPod(t, c, ns, "ext-user", names[2], "ext")
		eventually(t, "node chosen for the claim", 30*time.Second, func() (bool, string) {
			pvc, st := claimState(c, ns, "ext")
			return pvc != nil && pvc.Annotations[persistentvolume.AnnSelectedNode] == names[2], st
		})
		// A merge patch, as the controllers write the claim too (its
		// status, finalizers): a read-modify-write here can conflict.
		reset := fmt.Sprintf(`{"metadata":{"annotations":{%q:null}}}`, persistentvolume.AnnSelectedNode)
		if _, err := c.CoreV1().PersistentVolumeClaims(ns).Patch(ctx, "ext", types.MergePatchType, []byte(reset), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		waitEvent(t, c, ns, "Pod", "ext-user", "FailedScheduling", `selectedNode annotation reset for PVC "ext"`)
		// Placed again: the claim gets the node chosen anew.
		eventually(t, "node chosen again", 30*time.Second, func() (bool, string) {
			pvc, st := claimState(c, ns, "ext")
			return pvc != nil && pvc.Annotations[persistentvolume.AnnSelectedNode] == names[2], st
		})
		if err := c.CoreV1().Pods(ns).Delete(ctx, "ext-user", metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("unbound immediate claim", func(t *testing.T) {
		imm := storagev1.VolumeBindingImmediate
		if _, err := c.StorageV1().StorageClasses().Create(ctx, &storagev1.StorageClass{
			ObjectMeta: metav1.ObjectMeta{Name: "slow-immediate"}, Provisioner: "example.com/none", VolumeBindingMode: &imm,
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		mkPVC(t, c, ns, "imm", "1Gi", ptr.To("slow-immediate"))
		mkPod(t, c, ns, "imm-user", "", "imm")
		waitEvent(t, c, ns, "Pod", "imm-user", "FailedScheduling", volumebinding.ErrReasonUnboundImmediate)
	})
}
