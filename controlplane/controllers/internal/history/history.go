// Package history keeps the ControllerRevisions of StatefulSets and
// DaemonSets: the revision data (a strategic merge patch that replaces the
// pod template, the form `kubectl rollout undo` applies), its hash and name,
// finding, creating, re-numbering and trimming revisions.
package history

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"sort"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/kubernetes"
)

// HashLabel is the label holding a revision's hash (upstream's
// controller-revision-hash); it is also set on the pods of a revision.
const HashLabel = appsv1.ControllerRevisionHashLabelKey

// TemplatePatch is the revision data of a pod template:
// {"spec":{"template":{...,"$patch":"replace"}}}.
func TemplatePatch(t *corev1.PodTemplateSpec) ([]byte, error) {
	raw, err := json.Marshal(t)
	if err != nil {
		return nil, fmt.Errorf("encode template: %w", err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("decode template: %w", err)
	}
	m["$patch"] = "replace"
	return json.Marshal(map[string]any{"spec": map[string]any{"template": m}})
}

// Template decodes the pod template of revision data made by TemplatePatch.
func Template(data []byte) (*corev1.PodTemplateSpec, error) {
	var v struct {
		Spec struct {
			Template json.RawMessage `json:"template"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(data, &v); err != nil {
		return nil, fmt.Errorf("decode revision: %w", err)
	}
	if len(v.Spec.Template) == 0 {
		return nil, errors.New("revision has no spec.template")
	}
	var m map[string]any
	if err := json.Unmarshal(v.Spec.Template, &m); err != nil {
		return nil, fmt.Errorf("decode revision template: %w", err)
	}
	delete(m, "$patch")
	raw, _ := json.Marshal(m)
	t := &corev1.PodTemplateSpec{}
	if err := json.Unmarshal(raw, t); err != nil {
		return nil, fmt.Errorf("decode revision template: %w", err)
	}
	return t, nil
}

// Hash is the revision hash of data: FNV-32 of the bytes and, when set,
// the collision count, in the encoding of rand.SafeEncodeString.
func Hash(data []byte, collisionCount *int32) string {
	h := fnv.New32()
	h.Write(data)
	if collisionCount != nil {
		h.Write([]byte(strconv.FormatInt(int64(*collisionCount), 10)))
	}
	return rand.SafeEncodeString(strconv.FormatUint(uint64(h.Sum32()), 10))
}

// Name is the revision name <prefix>-<hash>, the prefix cut to keep the
// name a valid object name.
func Name(prefix, hash string) string {
	if len(prefix) > 223 {
		prefix = prefix[:223]
	}
	return prefix + "-" + hash
}

// New is the revision number revision of parent with data; labels are the
// template's plus HashLabel.
func New(parent metav1.Object, gvk schema.GroupVersionKind, templateLabels map[string]string, data []byte, revision int64, collisionCount *int32) *appsv1.ControllerRevision {
	lbls := make(map[string]string, len(templateLabels)+1)
	for k, v := range templateLabels {
		lbls[k] = v
	}
	hash := Hash(data, collisionCount)
	lbls[HashLabel] = hash
	t := true
	return &appsv1.ControllerRevision{
		ObjectMeta: metav1.ObjectMeta{
			Name:      Name(parent.GetName(), hash),
			Namespace: parent.GetNamespace(),
			Labels:    lbls,
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: gvk.GroupVersion().String(), Kind: gvk.Kind, Name: parent.GetName(), UID: parent.GetUID(),
				Controller: &t, BlockOwnerDeletion: &t,
			}},
		},
		Data:     runtime.RawExtension{Raw: data},
		Revision: revision,
	}
}

// Equal reports revisions with the same data.
func Equal(a, b *appsv1.ControllerRevision) bool {
	return bytes.Equal(a.Data.Raw, b.Data.Raw)
}

// FindEqual returns the revisions among revs whose data equals needle's.
func FindEqual(revs []*appsv1.ControllerRevision, needle *appsv1.ControllerRevision) []*appsv1.ControllerRevision {
	var out []*appsv1.ControllerRevision
	for _, r := range revs {
		if Equal(r, needle) {
			out = append(out, r)
		}
	}
	return out
}

// Sort orders revisions by revision number, then creation time, then name.
func Sort(revs []*appsv1.ControllerRevision) {
	sort.SliceStable(revs, func(i, j int) bool {
		a, b := revs[i], revs[j]
		if a.Revision != b.Revision {
			return a.Revision < b.Revision
		}
		if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
			return a.CreationTimestamp.Before(&b.CreationTimestamp)
		}
		return a.Name < b.Name
	})
}

// Next is one more than the highest revision number in sorted revs.
func Next(sorted []*appsv1.ControllerRevision) int64 {
	if len(sorted) == 0 {
		return 1
	}
	return sorted[len(sorted)-1].Revision + 1
}

// Owned returns the revisions controlled by uid.
func Owned(revs []*appsv1.ControllerRevision, uid types.UID) []*appsv1.ControllerRevision {
	var out []*appsv1.ControllerRevision
	for _, r := range revs {
		if ref := metav1.GetControllerOf(r); ref != nil && ref.UID == uid {
			out = append(out, r)
		}
	}
	return out
}

// Client writes revisions.
type Client struct {
	Client kubernetes.Interface
}

// Ensure returns the revision of data for parent among its sorted
// revisions: the newest equal revision, re-numbered to the next number when
// an older one is reused (a rollback), or a new one. A name taken by
// different data bumps *collisionCount and tries the next name, as upstream.
func (c Client) Ensure(ctx context.Context, parent metav1.Object, gvk schema.GroupVersionKind, templateLabels map[string]string, data []byte, sorted []*appsv1.ControllerRevision, collisionCount *int32) (*appsv1.ControllerRevision, error) {
	next := Next(sorted)
	want := New(parent, gvk, templateLabels, data, next, collisionCount)
	equal := FindEqual(sorted, want)
	if n := len(equal); n > 0 {
		last := equal[n-1]
		if last == sorted[len(sorted)-1] {
			return last, nil
		}
		upd := last.DeepCopy()
		upd.Revision = next
		got, err := c.Client.AppsV1().ControllerRevisions(upd.Namespace).Update(ctx, upd, metav1.UpdateOptions{})
		if err != nil {
			return nil, fmt.Errorf("renumber revision %s: %w", upd.Name, err)
		}
		return got, nil
	}
	for range 10 {
		want = New(parent, gvk, templateLabels, data, next, collisionCount)
		got, err := c.Client.AppsV1().ControllerRevisions(want.Namespace).Create(ctx, want, metav1.CreateOptions{})
		if err == nil {
			return got, nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("create revision %s: %w", want.Name, err)
		}
		existing, gerr := c.Client.AppsV1().ControllerRevisions(want.Namespace).Get(ctx, want.Name, metav1.GetOptions{})
		if gerr != nil {
			return nil, fmt.Errorf("get revision %s: %w", want.Name, gerr)
		}
		ref := metav1.GetControllerOf(existing)
		if Equal(existing, want) && (ref == nil || ref.UID == parent.GetUID()) {
			if ref == nil {
				return c.adopt(ctx, parent, gvk, existing, next)
			}
			return existing, nil
		}
		if collisionCount != nil {
			*collisionCount++
		}
	}
	return nil, fmt.Errorf("revision of %s/%s: too many hash collisions", parent.GetNamespace(), parent.GetName())
}

// adopt makes an orphaned revision parent's, numbered revision.
func (c Client) adopt(ctx context.Context, parent metav1.Object, gvk schema.GroupVersionKind, r *appsv1.ControllerRevision, revision int64) (*appsv1.ControllerRevision, error) {
	upd := r.DeepCopy()
	t := true
	upd.OwnerReferences = append(upd.OwnerReferences, metav1.OwnerReference{
		APIVersion: gvk.GroupVersion().String(), Kind: gvk.Kind, Name: parent.GetName(), UID: parent.GetUID(),
		Controller: &t, BlockOwnerDeletion: &t,
	})
	upd.Revision = revision
	got, err := c.Client.AppsV1().ControllerRevisions(upd.Namespace).Update(ctx, upd, metav1.UpdateOptions{})
	if err != nil {
		return nil, fmt.Errorf("adopt revision %s: %w", upd.Name, err)
	}
	return got, nil
}

// ToTrim returns the oldest revisions of sorted beyond limit that live does
// not name (revisions still used by pods or status are kept).
func ToTrim(sorted []*appsv1.ControllerRevision, live map[string]bool, limit int32) []*appsv1.ControllerRevision {
	var old []*appsv1.ControllerRevision
	for _, r := range sorted {
		if !live[r.Name] {
			old = append(old, r)
		}
	}
	n := len(old) - int(max(limit, 0))
	if n <= 0 {
		return nil
	}
	return old[:n]
}

// Trim deletes revs (already gone is fine).
func (c Client) Trim(ctx context.Context, revs []*appsv1.ControllerRevision) error {
	var errs []error
	for _, r := range revs {
		err := c.Client.AppsV1().ControllerRevisions(r.Namespace).Delete(ctx, r.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &r.UID}})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			errs = append(errs, fmt.Errorf("delete revision %s: %w", r.Name, err))
		}
	}
	return errors.Join(errs...)
}
