package apiserver

import (
	"context"

	"github.com/skiffhq/skiff/controlplane/apiserver/registry"
	"k8s.io/apimachinery/pkg/runtime"
)

// Operation is what an admission plugin is asked about.
type Operation string

// Admission operations, as upstream.
const (
	OpCreate  Operation = "CREATE"
	OpUpdate  Operation = "UPDATE"
	OpDelete  Operation = "DELETE"
	OpConnect Operation = "CONNECT"
)

// UserInfo is the authenticated identity of a request.
type UserInfo struct {
	Name   string
	UID    string
	Groups []string
	Extra  map[string][]string
}

type userKey struct{}

// WithUser stores the requesting user in ctx.
func WithUser(ctx context.Context, u *UserInfo) context.Context {
	return context.WithValue(ctx, userKey{}, u)
}

// UserFrom returns the requesting user, if any.
func UserFrom(ctx context.Context) (*UserInfo, bool) {
	u, ok := ctx.Value(userKey{}).(*UserInfo)
	return u, ok
}

// Attributes describe one write for admission.
type Attributes struct {
	Operation   Operation
	Resource    *registry.Resource
	Subresource string
	Namespace   string
	Name        string
	// Object is the new object (nil for delete); mutating plugins may change it.
	Object runtime.Object
	// OldObject is the current object (nil for create).
	OldObject runtime.Object
	DryRun    bool
	User      *UserInfo
	// Options is the create/update/delete options object, if any.
	Options runtime.Object
}

// AdmissionPlugin is one step of the admission chain. Admit may mutate
// attrs.Object; Validate may only reject. Either may be a no-op.
type AdmissionPlugin interface {
	Name() string
	Admit(ctx context.Context, a *Attributes) error
	Validate(ctx context.Context, a *Attributes) error
}

// StorageHook runs inside a resource's storage operations, for state the
// resource owns outside its object (service IPs and node ports).
type StorageHook interface {
	// BeforeCreate may fill fields and reserve resources; on a later
	// failure Release is called with the same object.
	BeforeCreate(ctx context.Context, obj runtime.Object, dryRun bool) error
	// BeforeUpdate does the same for updates.
	BeforeUpdate(ctx context.Context, obj, old runtime.Object, dryRun bool) error
	// Release gives back what BeforeCreate/BeforeUpdate reserved for obj
	// that the stored object no longer holds (old is nil after a failed create).
	Release(ctx context.Context, obj, kept runtime.Object)
	// AfterDelete frees what a deleted object held.
	AfterDelete(ctx context.Context, obj runtime.Object)
}
