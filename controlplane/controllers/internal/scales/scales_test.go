package scales_test

import (
	"context"
	"strings"
	"testing"

	"github.com/skiffhq/skiff/controlplane/controllers/internal/scales"
	"github.com/skiffhq/skiff/controlplane/controllers/internal/scales/scalestest"
	"github.com/skiffhq/skiff/internal/testserver"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// TestScalesOfAnyKind reads and writes the scale of a custom resource
// (whose definition is created after the client first looked), a
// ReplicationController, and refuses a kind nobody serves.
func TestScalesOfAnyKind(t *testing.T) {
	s := testserver.Start(t)
	ctx := context.Background()
	c := scales.New(s.Client)

	if _, _, err := c.Get(ctx, "default", scalestest.APIVersion, scalestest.Kind, "a"); err == nil {
		t.Fatal("scale of a kind not yet defined: no error")
	}
	scalestest.CreateCRD(t, s)
	obj := scalestest.Create(t, s, "default", "a", 2)
	sc, gr, err := c.Get(ctx, "default", scalestest.APIVersion, scalestest.Kind, "a")
	if err != nil {
		t.Fatal(err)
	}
	if gr.Resource != "scalables" || sc.Spec.Replicas != 2 || sc.Status.Selector != "app=a" || sc.UID != obj.GetUID() {
		t.Fatalf("scale of the custom resource: %s %+v uid %s (object's %s)", gr, sc, sc.UID, obj.GetUID())
	}
	sc.Spec.Replicas = 5
	if _, err := c.Update(ctx, "default", gr, sc); err != nil {
		t.Fatal(err)
	}
	if n := scalestest.Replicas(s, "default", "a"); n != 5 {
		t.Fatalf("spec.replicas after the scale update: %d", n)
	}

	rc := &corev1.ReplicationController{ObjectMeta: metav1.ObjectMeta{Name: "rc"}, Spec: corev1.ReplicationControllerSpec{
		Replicas: ptr.To[int32](3), Selector: map[string]string{"app": "rc"},
		Template: &corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "rc"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}}}
	if _, err := s.Client.CoreV1().ReplicationControllers("default").Create(ctx, rc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	sc, gr, err = c.Get(ctx, "default", "v1", "ReplicationController", "rc")
	if err != nil || sc.Spec.Replicas != 3 || gr.Resource != "replicationcontrollers" {
		t.Fatalf("scale of the ReplicationController: %v %+v %s", err, sc, gr)
	}

	if _, _, err := c.Get(ctx, "default", "example.com/v1", "Nope", "x"); err == nil || !strings.Contains(err.Error(), "Nope") {
		t.Fatalf("a kind nobody serves: %v", err)
	}
}
