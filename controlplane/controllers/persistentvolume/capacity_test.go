package persistentvolume_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/controllers/persistentvolume"
	"github.com/skiffhq/skiff/controlplane/scheduler/plugins/volumebinding"
	"github.com/skiffhq/skiff/internal/testserver"
	"github.com/skiffhq/skiff/nodeagent/hollow"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestLocalPathCapacity runs the server with two hollow nodes that report
// 10Gi free for local-path: the capacity controller publishes a
// CSIStorageCapacity per node, the scheduler leaves a pod whose claim
// fits no node Pending with upstream's reason, a provisioned volume
// lowers its node's published capacity, and the binder refuses to
// provision on a node without room (ProvisioningFailed, node choice
// given back).
func TestLocalPathCapacity(t *testing.T) {
	s := testserver.Start(t)
	c := s.Client
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	nodes, err := hollow.Start(ctx, s.Config, hollow.Options{Nodes: 2, LocalPathAvailable: "10Gi"})
	if err != nil {
		t.Fatal(err)
	}
	defer nodes.Stop()
	names := nodes.NodeNames()
	const ns = "default"

	// published returns node → capacity of its local-path object.
	published := func() (map[string]string, string) {
		l, err := c.StorageV1().CSIStorageCapacities(metav1.NamespaceSystem).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, err.Error()
		}
		out := map[string]string{}
		for _, o := range l.Items {
			if o.StorageClassName != "local-path" || o.NodeTopology == nil || o.Capacity == nil {
				continue
			}
			out[o.NodeTopology.MatchLabels[corev1.LabelHostname]] = o.Capacity.String()
		}
		return out, fmt.Sprint(out)
	}
	eventually(t, "capacity published per node", 30*time.Second, func() (bool, string) {
		got, st := published()
		return got[names[0]] == "10Gi" && got[names[1]] == "10Gi", st
	})

	t.Run("claim too large for every node", func(t *testing.T) {
		mkPVC(t, c, ns, "huge", "50Gi", nil)
		mkPod(t, c, ns, "huge-user", "", "huge")
		waitEvent(t, c, ns, "Pod", "huge-user", "FailedScheduling", "2 "+volumebinding.ErrReasonNotEnoughSpace)
		waitEvent(t, c, ns, "PersistentVolumeClaim", "huge", persistentvolume.EventWaitForPodScheduled, "waiting for pod huge-user to be scheduled")
		if pvc, st := claimState(c, ns, "huge"); pvc == nil || pvc.Status.Phase != corev1.ClaimPending || pvc.Spec.VolumeName != "" {
			t.Fatalf("claim: %s", st)
		}
		if n, st := podNode(c, ns, "huge-user"); n != "" {
			t.Fatalf("pod placed: %s", st)
		}
	})

	t.Run("a provisioned volume uses its node's capacity", func(t *testing.T) {
		mkPVC(t, c, ns, "fits", "4Gi", nil)
		mkPod(t, c, ns, "fits-user", names[0], "fits")
		eventually(t, "claim bound", 30*time.Second, func() (bool, string) {
			pvc, st := claimState(c, ns, "fits")
			return pvc != nil && pvc.Status.Phase == corev1.ClaimBound, st
		})
		eventually(t, "node's capacity lowered by the volume", 30*time.Second, func() (bool, string) {
			got, st := published()
			return got[names[0]] == "6Gi" && got[names[1]] == "10Gi", st
		})
	})

	t.Run("provisioning refused on a node without room", func(t *testing.T) {
		mkPVC(t, c, ns, "direct", "8Gi", nil, func(pvc *corev1.PersistentVolumeClaim) {
			pvc.Annotations = map[string]string{persistentvolume.AnnSelectedNode: names[0]}
		})
		waitEvent(t, c, ns, "PersistentVolumeClaim", "direct", persistentvolume.EventProvisioningFailed, fmt.Sprintf("node %q does not have enough free storage for 8Gi", names[0]))
		eventually(t, "node choice given back", 20*time.Second, func() (bool, string) {
			pvc, st := claimState(c, ns, "direct")
			if pvc == nil {
				return false, st
			}
			_, has := pvc.Annotations[persistentvolume.AnnSelectedNode]
			return !has && pvc.Spec.VolumeName == "", st
		})
	})

}
