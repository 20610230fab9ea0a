package kinds

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// TestStatefulSetClaimTemplateMounts: containers may mount
// volumeClaimTemplates by name; other unknown names are still refused.
func TestStatefulSetClaimTemplateMounts(t *testing.T) {
	d := goodDeployment()
	ss := &appsv1.StatefulSet{Spec: appsv1.StatefulSetSpec{Selector: d.Spec.Selector, Template: *d.Spec.Template.DeepCopy()}}
	ss.Spec.Template.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}
	ss.Spec.VolumeClaimTemplates = []corev1.PersistentVolumeClaim{{
		ObjectMeta: metav1.ObjectMeta{Name: "data"},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
		},
	}}
	expectErrors(t, validateCreate(t, "apps", "StatefulSet", ss.DeepCopy()), nil)
	if len(ss.Spec.Template.Spec.Volumes) != 0 {
		t.Fatal("validation changed the template's volumes")
	}
	ss.Spec.Template.Spec.Containers[0].VolumeMounts[0].Name = "other"
	expectErrors(t, validateCreate(t, "apps", "StatefulSet", ss), []want{{"spec.template.spec.containers[0].volumeMounts[0].name", field.ErrorTypeNotFound, ""}})
}
