package kinds

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Annotations marking the default StorageClass.
const (
	defaultStorageClassAnnotation     = "storageclass.kubernetes.io/is-default-class"
	betaDefaultStorageClassAnnotation = "storageclass.beta.kubernetes.io/is-default-class"
)

func init() {
	tblRegister("storage.k8s.io", "StorageClass", []metav1.TableColumnDefinition{
		tblName(),
		tblCol("Provisioner", "string", storagev1.StorageClass{}.SwaggerDoc()["provisioner"]),
		tblCol("ReclaimPolicy", "string", storagev1.StorageClass{}.SwaggerDoc()["reclaimPolicy"]),
		tblCol("VolumeBindingMode", "string", storagev1.StorageClass{}.SwaggerDoc()["volumeBindingMode"]),
		tblCol("AllowVolumeExpansion", "string", storagev1.StorageClass{}.SwaggerDoc()["allowVolumeExpansion"]),
		tblAge(),
	}, storageClassRow)

	tblRegister("storage.k8s.io", "CSIDriver", []metav1.TableColumnDefinition{
		tblName(),
		tblCol("AttachRequired", "boolean", storagev1.CSIDriverSpec{}.SwaggerDoc()["attachRequired"]),
		tblCol("PodInfoOnMount", "boolean", storagev1.CSIDriverSpec{}.SwaggerDoc()["podInfoOnMount"]),
		tblCol("StorageCapacity", "boolean", storagev1.CSIDriverSpec{}.SwaggerDoc()["storageCapacity"]),
		tblCol("TokenRequests", "string", storagev1.CSIDriverSpec{}.SwaggerDoc()["tokenRequests"]),
		tblCol("RequiresRepublish", "boolean", storagev1.CSIDriverSpec{}.SwaggerDoc()["requiresRepublish"]),
		tblCol("Modes", "string", storagev1.CSIDriverSpec{}.SwaggerDoc()["volumeLifecycleModes"]),
		tblAge(),
	}, func(o *storagev1.CSIDriver) []interface{} {
		boolOr := func(b *bool, def bool) bool {
			if b == nil {
				return def
			}
			return *b
		}
		var modes []string
		for _, m := range o.Spec.VolumeLifecycleModes {
			modes = append(modes, string(m))
		}
		modeCell := strings.Join(modes, ",")
		if modeCell == "" {
			modeCell = "<none>"
		}
		tokens := "<unset>"
		if o.Spec.TokenRequests != nil {
			aud := make([]string, 0, len(o.Spec.TokenRequests))
			for _, t := range o.Spec.TokenRequests {
				aud = append(aud, t.Audience)
			}
			tokens = strings.Join(aud, ",")
		}
		return []interface{}{o.Name, boolOr(o.Spec.AttachRequired, true), boolOr(o.Spec.PodInfoOnMount, false),
			boolOr(o.Spec.StorageCapacity, false), tokens, boolOr(o.Spec.RequiresRepublish, false), modeCell,
			tblSince(o.CreationTimestamp)}
	})

	tblRegister("storage.k8s.io", "CSIStorageCapacity", []metav1.TableColumnDefinition{
		tblName(),
		tblCol("StorageClassName", "string", storagev1.CSIStorageCapacity{}.SwaggerDoc()["storageClassName"]),
		tblCol("Capacity", "string", storagev1.CSIStorageCapacity{}.SwaggerDoc()["capacity"]),
	}, func(o *storagev1.CSIStorageCapacity) []interface{} {
		capacity := "<unset>"
		if o.Capacity != nil {
			capacity = o.Capacity.String()
		}
		return []interface{}{o.Name, o.StorageClassName, capacity}
	})

	tblRegister("storage.k8s.io", "CSINode", []metav1.TableColumnDefinition{
		tblName(),
		tblCol("Drivers", "integer", "Drivers indicates the number of CSI drivers registered on the node"),
		tblAge(),
	}, func(o *storagev1.CSINode) []interface{} {
		return []interface{}{o.Name, int64(len(o.Spec.Drivers)), tblSince(o.CreationTimestamp)}
	})

	tblRegister("storage.k8s.io", "VolumeAttachment", []metav1.TableColumnDefinition{
		tblName(),
		{Name: "Attacher", Type: "string", Format: "name", Description: storagev1.VolumeAttachmentSpec{}.SwaggerDoc()["attacher"]},
		tblCol("PV", "string", storagev1.VolumeAttachmentSource{}.SwaggerDoc()["persistentVolumeName"]),
		tblCol("Node", "string", storagev1.VolumeAttachmentSpec{}.SwaggerDoc()["nodeName"]),
		tblCol("Attached", "boolean", storagev1.VolumeAttachmentStatus{}.SwaggerDoc()["attached"]),
		tblAge(),
	}, func(o *storagev1.VolumeAttachment) []interface{} {
		pv := ""
		if o.Spec.Source.PersistentVolumeName != nil {
			pv = *o.Spec.Source.PersistentVolumeName
		}
		return []interface{}{o.Name, o.Spec.Attacher, pv, o.Spec.NodeName, o.Status.Attached, tblSince(o.CreationTimestamp)}
	})
}

func storageClassRow(o *storagev1.StorageClass) []interface{} {
	name := o.Name
	if o.Annotations[defaultStorageClassAnnotation] == "true" || o.Annotations[betaDefaultStorageClassAnnotation] == "true" {
		name += " (default)"
	}
	reclaim := string(corev1.PersistentVolumeReclaimDelete)
	if o.ReclaimPolicy != nil {
		reclaim = string(*o.ReclaimPolicy)
	}
	binding := string(storagev1.VolumeBindingImmediate)
	if o.VolumeBindingMode != nil {
		binding = string(*o.VolumeBindingMode)
	}
	expand := false
	if o.AllowVolumeExpansion != nil {
		expand = *o.AllowVolumeExpansion
	}
	return []interface{}{name, o.Provisioner, reclaim, binding, expand, tblSince(o.CreationTimestamp)}
}
