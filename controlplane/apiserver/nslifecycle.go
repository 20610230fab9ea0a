package apiserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/skiffhq/skiff/controlplane/storage"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// NamespaceLifecycle is upstream's admission plugin of that name: no
// objects in a namespace that does not exist or is being terminated, and
// the system namespaces cannot be deleted.
type NamespaceLifecycle struct {
	store *storage.Store
	cache *storage.Cache
}

// NewNamespaceLifecycle returns the plugin.
func NewNamespaceLifecycle(store *storage.Store, cache *storage.Cache) *NamespaceLifecycle {
	return &NamespaceLifecycle{store: store, cache: cache}
}

var immortalNamespaces = map[string]bool{"default": true, "kube-system": true, "kube-public": true}

// Name implements AdmissionPlugin.
func (p *NamespaceLifecycle) Name() string { return "NamespaceLifecycle" }

// Admit implements AdmissionPlugin.
func (p *NamespaceLifecycle) Admit(ctx context.Context, a *Attributes) error { return nil }

// Validate implements AdmissionPlugin.
func (p *NamespaceLifecycle) Validate(ctx context.Context, a *Attributes) error {
	if a.Resource.Group == "" && a.Resource.Plural == "namespaces" {
		if a.Operation == OpDelete && immortalNamespaces[a.Name] {
			return apierrors.NewForbidden(schema.GroupResource{Resource: "namespaces"}, a.Name, errors.New("this namespace may not be deleted"))
		}
		return nil
	}
	if !a.Resource.Namespaced || a.Operation != OpCreate {
		return nil
	}
	ns := a.Namespace
	var phase corev1.NamespacePhase
	key := "/registry/namespaces/" + ns
	if o, _, ok := p.cache.Get(key); ok {
		phase = namespacePhase(o.Value)
	} else {
		kv, err := p.store.Get(ctx, key)
		if errors.Is(err, storage.ErrNotFound) {
			return apierrors.NewNotFound(schema.GroupResource{Resource: "namespaces"}, ns)
		}
		if err != nil {
			return err
		}
		phase = namespacePhase(kv.Value)
	}
	if phase == corev1.NamespaceTerminating {
		// Events may still be written while a namespace is cleaned up.
		if a.Resource.Plural == "events" {
			return nil
		}
		return apierrors.NewForbidden(a.Resource.GVR().GroupResource(), a.Name,
			fmt.Errorf("unable to create new content in namespace %s because it is being terminated", ns))
	}
	return nil
}

func namespacePhase(value []byte) corev1.NamespacePhase {
	var ns struct {
		Status struct {
			Phase corev1.NamespacePhase `json:"phase"`
		} `json:"status"`
	}
	_ = json.Unmarshal(value, &ns)
	return ns.Status.Phase
}
