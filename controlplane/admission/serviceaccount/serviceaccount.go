// Package serviceaccount is upstream's ServiceAccount admission plugin:
// pods run as a service account ("default" unless named), which must
// exist, and get its API credentials as a projected volume
// (kube-api-access-<random>) mounted into every container unless
// automountServiceAccountToken is false on the pod or the account.
package serviceaccount

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/skiffhq/skiff/controlplane/admission/internal/objects"
	"github.com/skiffhq/skiff/controlplane/apiserver"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilrand "k8s.io/apimachinery/pkg/util/rand"
)

const (
	// DefaultName is the service account pods run as when none is named.
	DefaultName = "default"
	// VolumePrefix starts the name of the projected token volume.
	VolumePrefix = "kube-api-access-"
	// MountPath is where containers find the token, CA and namespace.
	MountPath = "/var/run/secrets/kubernetes.io/serviceaccount"
	// TokenExpirationSeconds is upstream's bound token lifetime (one hour
	// plus seven seconds, so kubelets can tell admission-made tokens apart).
	TokenExpirationSeconds = 3607
	// RootCAConfigMap holds the cluster CA in every namespace.
	RootCAConfigMap  = "kube-root-ca.crt"
	mirrorAnnotation = "kubernetes.io/config.mirror"
)

// Plugin is the ServiceAccount admission plugin.
type Plugin struct {
	r *objects.Reader
	// lookups is how many live reads are tried for the default account
	// (created by a controller just after its namespace) before giving up.
	lookups int
}

var _ apiserver.AdmissionPlugin = (*Plugin)(nil)

// New returns the plugin.
func New(r *objects.Reader) *Plugin { return &Plugin{r: r, lookups: 10} }

// Name implements apiserver.AdmissionPlugin.
func (p *Plugin) Name() string { return "ServiceAccount" }

func isPodCreate(a *apiserver.Attributes) (*corev1.Pod, bool) {
	if a.Operation != apiserver.OpCreate || a.Subresource != "" || a.Resource == nil ||
		a.Resource.Group != "" || a.Resource.Plural != "pods" {
		return nil, false
	}
	pod, ok := a.Object.(*corev1.Pod)
	return pod, ok
}

// Admit implements apiserver.AdmissionPlugin.
func (p *Plugin) Admit(ctx context.Context, a *apiserver.Attributes) error {
	pod, ok := isPodCreate(a)
	if !ok || pod.Annotations[mirrorAnnotation] != "" {
		return nil
	}
	if pod.Spec.ServiceAccountName == "" {
		pod.Spec.ServiceAccountName = DefaultName
	}
	sa, err := p.serviceAccount(ctx, a.Namespace, pod.Spec.ServiceAccountName)
	if err != nil {
		return forbidden(a, fmt.Errorf("error looking up service account %s/%s: %w", a.Namespace, pod.Spec.ServiceAccountName, err))
	}
	if automount(pod, sa) {
		mountToken(pod)
	}
	return nil
}

// Validate implements apiserver.AdmissionPlugin.
func (p *Plugin) Validate(ctx context.Context, a *apiserver.Attributes) error {
	pod, ok := isPodCreate(a)
	if !ok || pod.Annotations[mirrorAnnotation] != "" {
		return nil
	}
	if pod.Spec.ServiceAccountName == "" {
		return forbidden(a, errors.New("no service account name specified on pod"))
	}
	return nil
}

func forbidden(a *apiserver.Attributes, err error) error {
	return apierrors.NewForbidden(a.Resource.GVR().GroupResource(), a.Name, err)
}

// serviceAccount finds the account in the cache, then with live reads: the
// default account gets several tries, as its controller creates it right
// after the namespace.
func (p *Plugin) serviceAccount(ctx context.Context, ns, name string) (*corev1.ServiceAccount, error) {
	sa, err := objects.Get[corev1.ServiceAccount](p.r, "", "serviceaccounts", ns, name)
	if err == nil {
		return sa, nil
	}
	if !errors.Is(err, objects.ErrNotFound) {
		return nil, err
	}
	tries := 1
	if name == DefaultName {
		tries = p.lookups
	}
	wait := time.Duration(100+rand.IntN(100)) * time.Millisecond
	for i := 0; i < tries; i++ {
		if i > 0 {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(wait):
			}
		}
		sa, _, err := objects.GetFresh[corev1.ServiceAccount](ctx, p.r, "", "serviceaccounts", ns, name)
		if err == nil {
			return sa, nil
		}
		if !errors.Is(err, objects.ErrNotFound) {
			return nil, err
		}
	}
	return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "serviceaccount"}, name)
}

func automount(pod *corev1.Pod, sa *corev1.ServiceAccount) bool {
	if pod.Spec.AutomountServiceAccountToken != nil {
		return *pod.Spec.AutomountServiceAccountToken
	}
	if sa.AutomountServiceAccountToken != nil {
		return *sa.AutomountServiceAccountToken
	}
	return true
}

// mountToken adds the projected volume and mounts it into every init and
// regular container that has nothing mounted at MountPath yet.
func mountToken(pod *corev1.Pod) {
	volName := ""
	for _, v := range pod.Spec.Volumes {
		if strings.HasPrefix(v.Name, VolumePrefix) {
			volName = v.Name
			break
		}
	}
	hasVolume := volName != ""
	if !hasVolume {
		volName = VolumePrefix + utilrand.String(5)
	}
	mount := corev1.VolumeMount{Name: volName, ReadOnly: true, MountPath: MountPath}
	needed := false
	add := func(cs []corev1.Container) {
		for i := range cs {
			mounted := false
			for _, m := range cs[i].VolumeMounts {
				if m.MountPath == MountPath {
					mounted = true
					break
				}
			}
			if !mounted {
				cs[i].VolumeMounts = append(cs[i].VolumeMounts, mount)
				needed = true
			}
		}
	}
	add(pod.Spec.InitContainers)
	add(pod.Spec.Containers)
	if needed && !hasVolume {
		pod.Spec.Volumes = append(pod.Spec.Volumes, TokenVolume(volName))
	}
}

// TokenVolume is the projected volume upstream gives pods: a bound token,
// the cluster CA and the pod's namespace.
func TokenVolume(name string) corev1.Volume {
	exp := int64(TokenExpirationSeconds)
	mode := int32(0o644)
	return corev1.Volume{
		Name: name,
		VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
			DefaultMode: &mode,
			Sources: []corev1.VolumeProjection{
				{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token", ExpirationSeconds: &exp}},
				{ConfigMap: &corev1.ConfigMapProjection{
					LocalObjectReference: corev1.LocalObjectReference{Name: RootCAConfigMap},
					Items:                []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}},
				}},
				{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{{
					Path:     "namespace",
					FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.namespace"},
				}}}},
			},
		}},
	}
}
