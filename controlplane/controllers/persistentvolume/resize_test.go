package persistentvolume_test

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/controllers/persistentvolume"
	"github.com/skiffhq/skiff/controlplane/controllers/persistentvolume/provisioner/localpath"
	"github.com/skiffhq/skiff/internal/testserver"
	"github.com/skiffhq/skiff/nodeagent/hollow"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// kubectl runs the real kubectl against s and returns its combined
// output and whether it succeeded.
func kubectl(t *testing.T, s *testserver.Server, args ...string) (string, bool) {
	t.Helper()
	out, err := exec.Command("kubectl", append([]string{"--kubeconfig", s.Kubeconfig()}, args...)...).CombinedOutput()
	return strings.TrimSpace(string(out)), err == nil
}

// TestVolumeExpansion drives `kubectl patch` of a bound claim's request
// against the whole server (PersistentVolumeClaimResize admission, the
// binder's expansion): growing a claim of a class without
// allowVolumeExpansion is refused with upstream's 403, shrinking is
// upstream's 422, and growing a local-path claim ends as upstream's
// online expansion without a filesystem resize (capacity and
// allocatedResources at the new size, no conditions left).
func TestVolumeExpansion(t *testing.T) {
	if _, err := exec.LookPath("kubectl"); err != nil {
		t.Skip("kubectl not installed")
	}
	s := testserver.Start(t)
	c := s.Client
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	nodes, err := hollow.Start(ctx, s.Config, hollow.Options{Nodes: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer nodes.Stop()
	node := nodes.NodeNames()[0]
	const ns = "default"
	wait := storagev1.VolumeBindingWaitForFirstConsumer
	if _, err := c.StorageV1().StorageClasses().Create(ctx, &storagev1.StorageClass{
		ObjectMeta: metav1.ObjectMeta{Name: "fixed-size"}, Provisioner: localpath.Name, VolumeBindingMode: &wait,
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	mkPVC(t, c, ns, "grows", "1Gi", nil) // default class local-path: allowVolumeExpansion
	mkPVC(t, c, ns, "fixed", "1Gi", ptr.To("fixed-size"))
	mkPod(t, c, ns, "user", node, "grows", "fixed")
	for _, name := range []string{"grows", "fixed"} {
		eventually(t, name+" bound", 60*time.Second, func() (bool, string) {
			pvc, st := claimState(c, ns, name)
			return pvc != nil && pvc.Status.Phase == corev1.ClaimBound, st
		})
	}
	grow := `{"spec":{"resources":{"requests":{"storage":"2Gi"}}}}`

	out, ok := kubectl(t, s, "-n", ns, "patch", "pvc", "fixed", "-p", grow)
	want := `Error from server (Forbidden): persistentvolumeclaims "fixed" is forbidden: only dynamically provisioned pvc can be resized and the storageclass that provisions the pvc must support resize`
	if ok || out != want {
		t.Fatalf("grow a claim of a class without expansion: ok=%v\n got %s\nwant %s", ok, out, want)
	}
	if pvc, _ := claimState(c, ns, "fixed"); pvc.Spec.Resources.Requests.Storage().String() != "1Gi" {
		t.Fatalf("refused request stored: %s", pvc.Spec.Resources.Requests.Storage())
	}

	if out, ok := kubectl(t, s, "-n", ns, "patch", "pvc", "grows", "-p", grow); !ok || out != "persistentvolumeclaim/grows patched" {
		t.Fatalf("grow a local-path claim: ok=%v %s", ok, out)
	}
	var pvc *corev1.PersistentVolumeClaim
	eventually(t, "claim expanded", 30*time.Second, func() (bool, string) {
		var st string
		pvc, st = claimState(c, ns, "grows")
		if pvc == nil {
			return false, st
		}
		return pvc.Status.Capacity.Storage().String() == "2Gi" && len(pvc.Status.Conditions) == 0,
			"capacity " + pvc.Status.Capacity.Storage().String() + " conditions " + strings.TrimSpace(strings.Join(condTypes(pvc), ","))
	})
	if got := pvc.Status.AllocatedResources.Storage().String(); got != "2Gi" {
		t.Errorf("status.allocatedResources.storage = %s, want 2Gi", got)
	}
	if len(pvc.Status.AllocatedResourceStatuses) != 0 {
		t.Errorf("status.allocatedResourceStatuses = %v, want none after the expansion", pvc.Status.AllocatedResourceStatuses)
	}
	if v, st := volumeState(c, pvc.Spec.VolumeName); v == nil || v.Spec.Capacity.Storage().String() != "2Gi" {
		t.Errorf("volume not grown: %s", st)
	}
	waitEvent(t, c, ns, "PersistentVolumeClaim", "grows", persistentvolume.EventVolumeResizeSuccessful, "to 2Gi succeeded")

	out, ok = kubectl(t, s, "-n", ns, "patch", "pvc", "grows", "-p", `{"spec":{"resources":{"requests":{"storage":"1Gi"}}}}`)
	want = `The PersistentVolumeClaim "grows" is invalid: spec.resources.requests.storage: Forbidden: field can not be less than status.capacity`
	if ok || out != want {
		t.Fatalf("shrink: ok=%v\n got %s\nwant %s", ok, out, want)
	}
}

func condTypes(pvc *corev1.PersistentVolumeClaim) []string {
	var out []string
	for _, c := range pvc.Status.Conditions {
		out = append(out, string(c.Type))
	}
	return out
}
