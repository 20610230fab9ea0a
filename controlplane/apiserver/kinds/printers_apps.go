package kinds

import (
	"fmt"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	appsv1beta1 "k8s.io/api/apps/v1beta1"
	corev1 "k8s.io/api/core/v1"
	extensionsv1beta1 "k8s.io/api/extensions/v1beta1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

func init() {
	tblRegister("apps", "Deployment", []metav1.TableColumnDefinition{
		tblName(),
		tblCol("Ready", "string", "Number of the pod with ready state"),
		tblCol("Up-to-date", "string", extensionsv1beta1.DeploymentStatus{}.SwaggerDoc()["updatedReplicas"]),
		tblCol("Available", "string", extensionsv1beta1.DeploymentStatus{}.SwaggerDoc()["availableReplicas"]),
		tblAge(),
		tblWide("Containers", "string", tblContainersDesc),
		tblWide("Images", "string", tblImagesDesc),
		tblWide("Selector", "string", extensionsv1beta1.DeploymentSpec{}.SwaggerDoc()["selector"]),
	}, deploymentRow)

	tblRegister("apps", "ReplicaSet", []metav1.TableColumnDefinition{
		tblName(),
		tblCol("Desired", "integer", extensionsv1beta1.ReplicaSetSpec{}.SwaggerDoc()["replicas"]),
		tblCol("Current", "integer", extensionsv1beta1.ReplicaSetStatus{}.SwaggerDoc()["replicas"]),
		tblCol("Ready", "integer", extensionsv1beta1.ReplicaSetStatus{}.SwaggerDoc()["readyReplicas"]),
		tblAge(),
		tblWide("Containers", "string", tblContainersDesc),
		tblWide("Images", "string", tblImagesDesc),
		tblWide("Selector", "string", extensionsv1beta1.ReplicaSetSpec{}.SwaggerDoc()["selector"]),
	}, func(o *appsv1.ReplicaSet) []interface{} {
		names, images := tblContainers(o.Spec.Template.Spec.Containers)
		return []interface{}{o.Name, int64(deref(o.Spec.Replicas, 1)), int64(o.Status.Replicas), int64(o.Status.ReadyReplicas),
			tblSince(o.CreationTimestamp), names, images, metav1.FormatLabelSelector(o.Spec.Selector)}
	})

	tblRegister("apps", "StatefulSet", []metav1.TableColumnDefinition{
		tblName(),
		tblCol("Ready", "string", "Number of the pod with ready state"),
		tblAge(),
		tblWide("Containers", "string", tblContainersDesc),
		tblWide("Images", "string", tblImagesDesc),
	}, func(o *appsv1.StatefulSet) []interface{} {
		names, images := tblContainers(o.Spec.Template.Spec.Containers)
		return []interface{}{o.Name, fmt.Sprintf("%d/%d", o.Status.ReadyReplicas, deref(o.Spec.Replicas, 1)),
			tblSince(o.CreationTimestamp), names, images}
	})

	tblRegister("apps", "DaemonSet", []metav1.TableColumnDefinition{
		tblName(),
		tblCol("Desired", "integer", extensionsv1beta1.DaemonSetStatus{}.SwaggerDoc()["desiredNumberScheduled"]),
		tblCol("Current", "integer", extensionsv1beta1.DaemonSetStatus{}.SwaggerDoc()["currentNumberScheduled"]),
		tblCol("Ready", "integer", extensionsv1beta1.DaemonSetStatus{}.SwaggerDoc()["numberReady"]),
		tblCol("Up-to-date", "integer", extensionsv1beta1.DaemonSetStatus{}.SwaggerDoc()["updatedNumberScheduled"]),
		tblCol("Available", "integer", extensionsv1beta1.DaemonSetStatus{}.SwaggerDoc()["numberAvailable"]),
		tblCol("Node Selector", "string", corev1.PodSpec{}.SwaggerDoc()["nodeSelector"]),
		tblAge(),
		tblWide("Containers", "string", tblContainersDesc),
		tblWide("Images", "string", tblImagesDesc),
		tblWide("Selector", "string", extensionsv1beta1.DaemonSetSpec{}.SwaggerDoc()["selector"]),
	}, func(o *appsv1.DaemonSet) []interface{} {
		s := o.Status
		names, images := tblContainers(o.Spec.Template.Spec.Containers)
		return []interface{}{o.Name, int64(s.DesiredNumberScheduled), int64(s.CurrentNumberScheduled), int64(s.NumberReady),
			int64(s.UpdatedNumberScheduled), int64(s.NumberAvailable), labels.FormatLabels(o.Spec.Template.Spec.NodeSelector),
			tblSince(o.CreationTimestamp), names, images, metav1.FormatLabelSelector(o.Spec.Selector)}
	})

	tblRegister("apps", "ControllerRevision", []metav1.TableColumnDefinition{
		tblName(),
		tblCol("Controller", "string", "Controller of the object"),
		tblCol("Revision", "string", appsv1beta1.ControllerRevision{}.SwaggerDoc()["revision"]),
		tblAge(),
	}, func(o *appsv1.ControllerRevision) []interface{} {
		return []interface{}{o.Name, controllerName(o), o.Revision, tblSince(o.CreationTimestamp)}
	})
}

func deploymentRow(o *appsv1.Deployment) []interface{} {
	selector := "<invalid>"
	if sel, err := metav1.LabelSelectorAsSelector(o.Spec.Selector); err == nil {
		selector = sel.String()
	}
	names, images := tblContainers(o.Spec.Template.Spec.Containers)
	return []interface{}{o.Name, fmt.Sprintf("%d/%d", o.Status.ReadyReplicas, deref(o.Spec.Replicas, 1)),
		int64(o.Status.UpdatedReplicas), int64(o.Status.AvailableReplicas), tblSince(o.CreationTimestamp),
		names, images, selector}
}

// controllerName renders the controlling owner as "kind.group/name".
func controllerName(o metav1.Object) string {
	ref := metav1.GetControllerOfNoCopy(o)
	if ref == nil {
		return "<none>"
	}
	gv, err := schema.ParseGroupVersion(ref.APIVersion)
	if err != nil {
		return ref.Name
	}
	gk := schema.GroupKind{Group: gv.Group, Kind: ref.Kind}
	if gk.Empty() {
		return ref.Name
	}
	return strings.ToLower(gk.String()) + "/" + ref.Name
}
