package server

import (
	"context"
	"fmt"

	"github.com/skiffhq/skiff/controlplane/controllers/persistentvolume/provisioner/localpath"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ensureDefaultStorageClass creates the `local-path` StorageClass, the
// cluster's default, served by the controller manager's built-in
// local-path provisioner (as k3s ships one). `--disable local-storage`
// skips it; an existing class of that name is left as it is.
func (s *Server) ensureDefaultStorageClass(ctx context.Context) error {
	if s.disabled("local-storage") {
		return nil
	}
	wait := storagev1.VolumeBindingWaitForFirstConsumer
	del := corev1.PersistentVolumeReclaimDelete
	expand := true // capacity is not enforced: growing is bookkeeping
	sc := &storagev1.StorageClass{
		ObjectMeta: metav1.ObjectMeta{
			Name:        localpath.ClassName,
			Annotations: map[string]string{"storageclass.kubernetes.io/is-default-class": "true"},
		},
		Provisioner:          localpath.Name,
		ReclaimPolicy:        &del,
		VolumeBindingMode:    &wait,
		AllowVolumeExpansion: &expand,
	}
	if err := s.api.Ensure(ctx, "storage.k8s.io", "v1", "storageclasses", sc); err != nil {
		return fmt.Errorf("default storage class: %w", err)
	}
	return nil
}
