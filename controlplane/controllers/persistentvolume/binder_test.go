package persistentvolume_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/controllers/persistentvolume"
	"github.com/skiffhq/skiff/internal/testserver"
	"github.com/skiffhq/skiff/server"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v; last state: %s", what, timeout, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func mkPV(t *testing.T, c kubernetes.Interface, name, size, class string, policy corev1.PersistentVolumeReclaimPolicy, mutate ...func(*corev1.PersistentVolume)) {
	t.Helper()
	v := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)},
			AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName:              class,
			PersistentVolumeReclaimPolicy: policy,
			PersistentVolumeSource:        corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/tmp/skiff-test-pv-" + name}},
		},
	}
	for _, m := range mutate {
		m(v)
	}
	if _, err := c.CoreV1().PersistentVolumes().Create(context.Background(), v, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create volume %s: %v", name, err)
	}
}

func mkPVC(t *testing.T, c kubernetes.Interface, ns, name, size string, class *string, mutate ...func(*corev1.PersistentVolumeClaim)) {
	t.Helper()
	pvc := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PersistentVolumeClaimSpec{
			StorageClassName: class,
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)}},
		},
	}
	for _, m := range mutate {
		m(pvc)
	}
	if _, err := c.CoreV1().PersistentVolumeClaims(ns).Create(context.Background(), pvc, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create claim %s: %v", name, err)
	}
}

func claimState(c kubernetes.Interface, ns, name string) (*corev1.PersistentVolumeClaim, string) {
	pvc, err := c.CoreV1().PersistentVolumeClaims(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		return nil, err.Error()
	}
	return pvc, fmt.Sprintf("phase=%s volume=%q finalizers=%v deleting=%v", pvc.Status.Phase, pvc.Spec.VolumeName, pvc.Finalizers, pvc.DeletionTimestamp != nil)
}

func volumeState(c kubernetes.Interface, name string) (*corev1.PersistentVolume, string) {
	v, err := c.CoreV1().PersistentVolumes().Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		return nil, err.Error()
	}
	ref := ""
	if v.Spec.ClaimRef != nil {
		ref = v.Spec.ClaimRef.Namespace + "/" + v.Spec.ClaimRef.Name
	}
	return v, fmt.Sprintf("phase=%s claim=%q finalizers=%v deleting=%v msg=%q", v.Status.Phase, ref, v.Finalizers, v.DeletionTimestamp != nil, v.Status.Message)
}

// waitEvent waits for an event of reason on the object whose message
// contains substr.
func waitEvent(t *testing.T, c kubernetes.Interface, ns, kind, name, reason, substr string) {
	t.Helper()
	eventually(t, fmt.Sprintf("%s event on %s %s", reason, kind, name), 20*time.Second, func() (bool, string) {
		evs, err := c.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{})
		if err != nil {
			return false, err.Error()
		}
		var seen []string
		for _, e := range evs.Items {
			if e.InvolvedObject.Kind != kind || e.InvolvedObject.Name != name {
				continue
			}
			seen = append(seen, e.Reason+": "+e.Message)
			if e.Reason == reason && strings.Contains(e.Message, substr) {
				return true, ""
			}
		}
		return false, fmt.Sprintf("events: %q", seen)
	})
}

func gone(err error) bool { return apierrors.IsNotFound(err) }

func mkNamespace(t *testing.T, c kubernetes.Interface, name string) {
	t.Helper()
	if _, err := c.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestStaticBinding runs the whole server: claims bind to the smallest
// fitting static volume, phases and finalizers follow upstream, Retain
// keeps a released volume, Delete of a volume without a provisioner
// fails it, protection finalizers hold deletes while in use, and bad
// claims stay Pending with upstream's events.
func TestStaticBinding(t *testing.T) {
	s := testserver.Start(t)
	c := s.Client
	ctx := context.Background()
	const ns = "default"
	mkPV(t, c, "small", "1Gi", "manual", corev1.PersistentVolumeReclaimRetain)
	mkPV(t, c, "big", "5Gi", "manual", corev1.PersistentVolumeReclaimRetain)
	mkPV(t, c, "huge", "10Gi", "manual", corev1.PersistentVolumeReclaimRetain)
	mkPV(t, c, "doomed", "1Gi", "", corev1.PersistentVolumeReclaimDelete)
	mkPVC(t, c, ns, "data", "2Gi", ptr.To("manual"))

	t.Run("binds smallest fitting volume", func(t *testing.T) {
		eventually(t, "claim bound", 20*time.Second, func() (bool, string) {
			pvc, st := claimState(c, ns, "data")
			return pvc != nil && pvc.Status.Phase == corev1.ClaimBound && pvc.Spec.VolumeName == "big", st
		})
		pvc, _ := claimState(c, ns, "data")
		if got := pvc.Status.Capacity[corev1.ResourceStorage]; got.String() != "5Gi" {
			t.Errorf("claim capacity %s, want the volume's 5Gi", got.String())
		}
		if pvc.Annotations[persistentvolume.AnnBindCompleted] != "yes" || pvc.Annotations[persistentvolume.AnnBoundByController] != "yes" {
			t.Errorf("claim annotations %v", pvc.Annotations)
		}
		eventually(t, "volume bound with finalizer", 20*time.Second, func() (bool, string) {
			v, st := volumeState(c, "big")
			return v != nil && v.Status.Phase == corev1.VolumeBound && v.Spec.ClaimRef != nil && v.Spec.ClaimRef.UID == pvc.UID &&
				slices.Contains(v.Finalizers, persistentvolume.PVProtectionFinalizer), st
		})
		eventually(t, "claim finalizer", 20*time.Second, func() (bool, string) {
			pvc, st := claimState(c, ns, "data")
			return pvc != nil && slices.Contains(pvc.Finalizers, persistentvolume.PVCProtectionFinalizer), st
		})
		for _, name := range []string{"small", "huge"} {
			eventually(t, name+" available", 20*time.Second, func() (bool, string) {
				v, st := volumeState(c, name)
				return v != nil && v.Status.Phase == corev1.VolumeAvailable && v.Spec.ClaimRef == nil, st
			})
		}
	})

	t.Run("too large stays pending", func(t *testing.T) {
		mkPVC(t, c, ns, "too-large", "100Gi", ptr.To(""))
		// StorageObjectInUseProtection admission protects it from creation.
		if pvc, st := claimState(c, ns, "too-large"); pvc == nil || !slices.Contains(pvc.Finalizers, persistentvolume.PVCProtectionFinalizer) {
			t.Fatalf("new claim without the protection finalizer: %s", st)
		}
		waitEvent(t, c, ns, "PersistentVolumeClaim", "too-large", persistentvolume.EventFailedBinding, "no persistent volumes available for this claim and no storage class is set")
		if pvc, st := claimState(c, ns, "too-large"); pvc == nil || pvc.Status.Phase != corev1.ClaimPending {
			t.Fatalf("too large claim: %s", st)
		}
	})

	t.Run("unknown class", func(t *testing.T) {
		mkPVC(t, c, ns, "unknown-class", "1Gi", ptr.To("nope"))
		waitEvent(t, c, ns, "PersistentVolumeClaim", "unknown-class", persistentvolume.EventProvisioningFailed, `storageclass.storage.k8s.io "nope" not found`)
		if pvc, st := claimState(c, ns, "unknown-class"); pvc == nil || pvc.Status.Phase != corev1.ClaimPending {
			t.Fatalf("claim of unknown class: %s", st)
		}
	})

	t.Run("unsupported access mode and immediate local-path", func(t *testing.T) {
		imm := storagev1.VolumeBindingImmediate
		if _, err := c.StorageV1().StorageClasses().Create(ctx, &storagev1.StorageClass{
			ObjectMeta: metav1.ObjectMeta{Name: "local-immediate"}, Provisioner: "skiff.io/local-path", VolumeBindingMode: &imm,
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		mkPVC(t, c, ns, "rwx", "1Gi", ptr.To("local-immediate"), func(p *corev1.PersistentVolumeClaim) {
			p.Spec.AccessModes = []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany}
		})
		waitEvent(t, c, ns, "PersistentVolumeClaim", "rwx", persistentvolume.EventProvisioningFailed, "skiff.io/local-path supports access modes [ReadWriteOnce ReadWriteOncePod], not [ReadWriteMany]")
		mkPVC(t, c, ns, "no-node", "1Gi", ptr.To("local-immediate"))
		waitEvent(t, c, ns, "PersistentVolumeClaim", "no-node", persistentvolume.EventProvisioningFailed, "WaitForFirstConsumer")
		for _, name := range []string{"rwx", "no-node"} {
			if pvc, st := claimState(c, ns, name); pvc == nil || pvc.Status.Phase != corev1.ClaimPending {
				t.Fatalf("claim %s: %s", name, st)
			}
		}
	})

	t.Run("external provisioner", func(t *testing.T) {
		if _, err := c.StorageV1().StorageClasses().Create(ctx, &storagev1.StorageClass{
			ObjectMeta: metav1.ObjectMeta{Name: "nfs"}, Provisioner: "example.com/nfs",
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		mkPVC(t, c, ns, "external", "1Gi", ptr.To("nfs"))
		waitEvent(t, c, ns, "PersistentVolumeClaim", "external", persistentvolume.EventExternalProvisioning, "external provisioner 'example.com/nfs'")
		pvc, st := claimState(c, ns, "external")
		if pvc == nil || pvc.Annotations[persistentvolume.AnnStorageProvisioner] != "example.com/nfs" {
			t.Fatalf("claim not annotated with its provisioner: %s %v", st, pvc.Annotations)
		}
	})

	t.Run("default class applies", func(t *testing.T) {
		mkPVC(t, c, ns, "defaulted", "1Gi", nil)
		pvc, st := claimState(c, ns, "defaulted")
		if pvc == nil || pvc.Spec.StorageClassName == nil || *pvc.Spec.StorageClassName != "local-path" {
			t.Fatalf("claim without class did not get local-path: %s", st)
		}
		waitEvent(t, c, ns, "PersistentVolumeClaim", "defaulted", persistentvolume.EventWaitForFirstConsumer, "waiting for first consumer to be created before binding")
	})

	t.Run("pre-bound claim and volume", func(t *testing.T) {
		mkPV(t, c, "reserved", "3Gi", "manual", corev1.PersistentVolumeReclaimRetain, func(v *corev1.PersistentVolume) {
			v.Spec.ClaimRef = &corev1.ObjectReference{Namespace: ns, Name: "wants-reserved"}
		})
		mkPVC(t, c, ns, "named", "1Gi", ptr.To("manual"), func(p *corev1.PersistentVolumeClaim) { p.Spec.VolumeName = "huge" })
		mkPVC(t, c, ns, "wants-reserved", "1Gi", ptr.To("manual"))
		mkPVC(t, c, ns, "mismatch", "1Gi", ptr.To("other"), func(p *corev1.PersistentVolumeClaim) { p.Spec.VolumeName = "small" })
		for claim, vol := range map[string]string{"named": "huge", "wants-reserved": "reserved"} {
			eventually(t, claim+" bound to "+vol, 20*time.Second, func() (bool, string) {
				pvc, st := claimState(c, ns, claim)
				return pvc != nil && pvc.Status.Phase == corev1.ClaimBound && pvc.Spec.VolumeName == vol, st
			})
		}
		waitEvent(t, c, ns, "PersistentVolumeClaim", "mismatch", persistentvolume.EventVolumeMismatch, `Cannot bind to requested volume "small": storageClassName does not match`)
		// A claim of a class that does not allow expansion cannot grow:
		// PersistentVolumeClaimResize admission refuses it.
		named, _ := claimState(c, ns, "named")
		named.Spec.Resources.Requests[corev1.ResourceStorage] = resource.MustParse("20Gi")
		_, err := c.CoreV1().PersistentVolumeClaims(ns).Update(ctx, named, metav1.UpdateOptions{})
		if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), `persistentvolumeclaims "named" is forbidden: only dynamically provisioned pvc can be resized`) {
			t.Fatalf("grow a claim whose class does not allow expansion: %v", err)
		}
		if v, st := volumeState(c, "huge"); v == nil || v.Spec.Capacity.Storage().String() != "10Gi" {
			t.Fatalf("static volume resized: %s", st)
		}
	})

	t.Run("claim protection while a pod uses it", func(t *testing.T) {
		pod, err := c.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "user"},
			Spec: corev1.PodSpec{
				NodeName:   "somewhere",
				Containers: []corev1.Container{{Name: "c", Image: "busybox", VolumeMounts: []corev1.VolumeMount{{Name: "d", MountPath: "/d"}}}},
				Volumes:    []corev1.Volume{{Name: "d", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}}}},
			},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.CoreV1().PersistentVolumeClaims(ns).Delete(ctx, "data", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		// The claim is held (and stays Bound) while the pod exists.
		eventually(t, "claim terminating", 10*time.Second, func() (bool, string) {
			pvc, st := claimState(c, ns, "data")
			return pvc != nil && pvc.DeletionTimestamp != nil, st
		})
		time.Sleep(time.Second) // give the controller a chance to misbehave
		if pvc, st := claimState(c, ns, "data"); pvc == nil || pvc.Status.Phase != corev1.ClaimBound {
			t.Fatalf("claim in use went away or unbound: %s", st)
		}
		// The volume cannot go either while bound.
		if err := c.CoreV1().PersistentVolumes().Delete(ctx, "big", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := c.CoreV1().Pods(ns).Delete(ctx, pod.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
			t.Fatal(err)
		}
		eventually(t, "claim deleted after its pod", 20*time.Second, func() (bool, string) {
			_, err := c.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "data", metav1.GetOptions{})
			return gone(err), fmt.Sprint(err)
		})
		// Retain + released + deleted by the user: the volume goes once
		// it is no longer Bound.
		eventually(t, "terminating volume deleted once released", 20*time.Second, func() (bool, string) {
			v, st := volumeState(c, "big")
			return v == nil && strings.Contains(st, "not found"), st
		})
	})

	t.Run("retain keeps a released volume", func(t *testing.T) {
		if err := c.CoreV1().PersistentVolumeClaims(ns).Delete(ctx, "named", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		eventually(t, "huge released", 20*time.Second, func() (bool, string) {
			v, st := volumeState(c, "huge")
			return v != nil && v.Status.Phase == corev1.VolumeReleased && v.Spec.ClaimRef != nil, st
		})
		// A released volume is not offered to new claims.
		mkPVC(t, c, ns, "after-release", "8Gi", ptr.To("manual"))
		waitEvent(t, c, ns, "PersistentVolumeClaim", "after-release", persistentvolume.EventProvisioningFailed, `storageclass.storage.k8s.io "manual" not found`)
		if v, st := volumeState(c, "huge"); v == nil || v.Status.Phase != corev1.VolumeReleased {
			t.Fatalf("released volume rebound: %s", st)
		}
	})

	t.Run("delete without a provisioner fails the volume", func(t *testing.T) {
		mkPVC(t, c, ns, "short", "1Gi", ptr.To(""))
		eventually(t, "short bound to doomed", 20*time.Second, func() (bool, string) {
			pvc, st := claimState(c, ns, "short")
			return pvc != nil && pvc.Status.Phase == corev1.ClaimBound && pvc.Spec.VolumeName == "doomed", st
		})
		if err := c.CoreV1().PersistentVolumeClaims(ns).Delete(ctx, "short", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		eventually(t, "doomed failed", 20*time.Second, func() (bool, string) {
			v, st := volumeState(c, "doomed")
			return v != nil && v.Status.Phase == corev1.VolumeFailed, st
		})
		waitEvent(t, c, "", "PersistentVolume", "doomed", persistentvolume.EventVolumeFailedDelete, "no deletable volume plugin matched")
	})

	t.Run("claim lost with its volume", func(t *testing.T) {
		v, _ := volumeState(c, "reserved")
		if v == nil {
			t.Fatal("volume reserved missing")
		}
		if err := c.CoreV1().PersistentVolumes().Delete(ctx, "reserved", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		// Forcibly drop the protection, as an administrator could.
		eventually(t, "finalizers dropped", 10*time.Second, func() (bool, string) {
			v, st := volumeState(c, "reserved")
			if v == nil {
				return true, st
			}
			v.Finalizers = nil
			_, err := c.CoreV1().PersistentVolumes().Update(ctx, v, metav1.UpdateOptions{})
			return err == nil, fmt.Sprint(err)
		})
		eventually(t, "claim lost", 20*time.Second, func() (bool, string) {
			pvc, st := claimState(c, ns, "wants-reserved")
			return pvc != nil && pvc.Status.Phase == corev1.ClaimLost, st
		})
		waitEvent(t, c, ns, "PersistentVolumeClaim", "wants-reserved", persistentvolume.EventClaimLost, "Bound claim has lost its PersistentVolume. Data on the volume is lost!")
	})
}

// TestNoDefaultClass: without a default class a claim without a class
// has no class and stays Pending with upstream's event.
func TestNoDefaultClass(t *testing.T) {
	s := testserver.Start(t, func(c *server.Config) { c.Disable = append(c.Disable, "local-storage") })
	mkNamespace(t, s.Client, "nodefault")
	mkPVC(t, s.Client, "nodefault", "classless", "1Gi", nil)
	pvc, st := claimState(s.Client, "nodefault", "classless")
	if pvc == nil || pvc.Spec.StorageClassName != nil {
		t.Fatalf("claim got a class without a default: %s", st)
	}
	waitEvent(t, s.Client, "nodefault", "PersistentVolumeClaim", "classless", persistentvolume.EventFailedBinding, "no persistent volumes available for this claim and no storage class is set")
	if _, err := s.Client.StorageV1().StorageClasses().Get(context.Background(), "local-path", metav1.GetOptions{}); !gone(err) {
		t.Fatalf("--disable local-storage still made the class: %v", err)
	}
}
