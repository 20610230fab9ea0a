package runtime

import (
	"context"
	"fmt"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/errdefs"
)

// LabelPinned marks an image that image garbage collection never deletes:
// containerd's CRI plugin's label, which k3s also sets on the images of
// its airgap folder.
const LabelPinned = "io.cri-containerd.pinned"

// StoredImage is one image record (a name) of the local store.
type StoredImage struct {
	Ref string
	// Digest is the target (manifest or index) digest: names sharing
	// it are one image.
	Digest string
	// Size is the bytes of the image's content (manifest, config and
	// layers, as the CRI reports an image's size).
	Size   int64
	Pinned bool
}

// ListImages lists the image records of the namespace.
func (r *Runtime) ListImages(ctx context.Context) ([]StoredImage, error) {
	ctx = r.ctx(ctx)
	imgs, err := r.client.ListImages(ctx)
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	out := make([]StoredImage, 0, len(imgs))
	for _, img := range imgs {
		size, err := img.Size(ctx)
		if err != nil && !errdefs.IsNotFound(err) {
			return nil, fmt.Errorf("size of image %s: %w", img.Name(), err)
		}
		out = append(out, StoredImage{Ref: img.Name(), Digest: img.Target().Digest.String(), Size: size,
			Pinned: img.Labels()[LabelPinned] == "pinned"})
	}
	return out, nil
}

// PinImage labels the image LabelPinned=pinned.
func (r *Runtime) PinImage(ctx context.Context, ref string) error {
	ctx = r.ctx(ctx)
	is := r.client.ImageService()
	img, err := is.Get(ctx, ref)
	if err != nil {
		return fmt.Errorf("pin image %s: %w", ref, err)
	}
	if img.Labels[LabelPinned] == "pinned" {
		return nil
	}
	img.Labels = map[string]string{LabelPinned: "pinned"}
	if _, err := is.Update(ctx, img, "labels."+LabelPinned); err != nil {
		return fmt.Errorf("pin image %s: %w", ref, err)
	}
	return nil
}

// ImagesInUse is the set of image names the namespace's containers were
// created from (every container, whichever node's: agents sharing a
// containerd keep each other's images).
func (r *Runtime) ImagesInUse(ctx context.Context) (map[string]bool, error) {
	ctx = r.ctx(ctx)
	cs, err := r.client.ContainerService().List(ctx)
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	used := make(map[string]bool, len(cs))
	for _, c := range cs {
		if c.Image != "" {
			used[c.Image] = true
		}
		if ref := c.Labels[LabelImageRef]; ref != "" {
			used[ref] = true
		}
	}
	return used, nil
}

// DeleteImage deletes an image record and waits for containerd's garbage
// collection, so that its content and snapshots no other image or
// container uses are gone when it returns. An absent image is not an
// error.
func (r *Runtime) DeleteImage(ctx context.Context, ref string) error {
	err := r.client.ImageService().Delete(r.ctx(ctx), ref, images.SynchronousDelete())
	if err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("delete image %s: %w", ref, err)
	}
	return nil
}
