package authn

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/skiffhq/skiff/controlplane/apiserver"
	"github.com/skiffhq/skiff/controlplane/apiserver/registry"
	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Token lifetimes of the TokenRequest API.
const (
	DefaultTokenExpiration = time.Hour
	MinTokenExpiration     = 10 * time.Minute
	// MaxTokenExpiration caps requested lifetimes, as upstream's
	// --service-account-max-token-expiration (longer requests are
	// shortened with a warning).
	MaxTokenExpiration = 48 * time.Hour
)

// TokenRequestHandler serves POST serviceaccounts/<name>/token.
func (t *ServiceAccountTokens) TokenRequestHandler(apiAudiences []string) apiserver.SubresourceHandler {
	return func(w http.ResponseWriter, r *http.Request, res *registry.Resource, ns, name string) {
		if r.Method != http.MethodPost {
			apiserver.WriteError(w, apierrors.NewMethodNotSupported(schema.GroupResource{Resource: "serviceaccounts/token"}, r.Method))
			return
		}
		var req authenticationv1.TokenRequest
		warns, err := apiserver.DecodeRequest(r, &req)
		if err != nil {
			apiserver.WriteError(w, err)
			return
		}
		out, moreWarns, err := t.tokenRequest(r, ns, name, &req, apiAudiences)
		if err != nil {
			apiserver.WriteError(w, err)
			return
		}
		apiserver.WriteObject(w, r, http.StatusCreated, out, append(warns, moreWarns...)...)
	}
}

var tokenRequestGK = schema.GroupKind{Group: "authentication.k8s.io", Kind: "TokenRequest"}

func (t *ServiceAccountTokens) tokenRequest(r *http.Request, ns, name string, req *authenticationv1.TokenRequest, apiAudiences []string) (*authenticationv1.TokenRequest, []string, error) {
	ctx := r.Context()
	if req.Name != "" && req.Name != name {
		return nil, nil, apierrors.NewInvalid(tokenRequestGK, name, field.ErrorList{
			field.Invalid(field.NewPath("metadata", "name"), req.Name, "must match the service account name if specified")})
	}
	if req.Namespace != "" && req.Namespace != ns {
		return nil, nil, apierrors.NewInvalid(tokenRequestGK, name, field.ErrorList{
			field.Invalid(field.NewPath("metadata", "namespace"), req.Namespace, "must match the service account namespace if specified")})
	}
	if req.Spec.ExpirationSeconds == nil {
		def := int64(DefaultTokenExpiration / time.Second)
		req.Spec.ExpirationSeconds = &def
	}
	secs := *req.Spec.ExpirationSeconds
	if secs < int64(MinTokenExpiration/time.Second) {
		return nil, nil, apierrors.NewInvalid(tokenRequestGK, name, field.ErrorList{
			field.Invalid(field.NewPath("spec", "expirationSeconds"), secs, "may not specify a duration less than 10 minutes")})
	}
	if secs > 1<<32 {
		return nil, nil, apierrors.NewInvalid(tokenRequestGK, name, field.ErrorList{
			field.Invalid(field.NewPath("spec", "expirationSeconds"), secs, "may not specify a duration larger than 2^32 seconds")})
	}
	var warns []string
	if max := int64(MaxTokenExpiration / time.Second); secs > max {
		warns = append(warns, fmt.Sprintf("requested expiration of %d seconds shortened to %d seconds", secs, max))
		secs = max
		req.Spec.ExpirationSeconds = &secs
	}
	sa, err := t.Objects.Get(ctx, "serviceaccounts", ns, name)
	if err != nil {
		return nil, nil, lookupErr(err, "", "serviceaccounts", name)
	}
	spec := TokenSpec{
		Namespace:      ns,
		ServiceAccount: ObjectRef{Name: name, UID: sa.UID},
		Audiences:      req.Spec.Audiences,
		Expiration:     time.Duration(secs) * time.Second,
	}
	if len(spec.Audiences) == 0 {
		spec.Audiences = apiAudiences
		req.Spec.Audiences = apiAudiences
	}
	if ref := req.Spec.BoundObjectRef; ref != nil {
		gvk := schema.FromAPIVersionAndKind(ref.APIVersion, ref.Kind)
		var obj *LiveObject
		switch {
		case gvk.Group == "" && gvk.Kind == "Pod":
			if obj, err = t.Objects.Get(ctx, "pods", ns, ref.Name); err != nil {
				return nil, nil, lookupErr(err, "", "pods", ref.Name)
			}
			if obj.ServiceAccountName != name {
				return nil, nil, apierrors.NewBadRequest(fmt.Sprintf("cannot bind token for serviceaccount %q to pod running with different serviceaccount name.", name))
			}
			spec.Pod = &ObjectRef{Name: ref.Name, UID: obj.UID}
			if obj.NodeName != "" {
				spec.Node = &ObjectRef{Name: obj.NodeName}
				if node, err := t.Objects.Get(ctx, "nodes", "", obj.NodeName); err == nil {
					spec.Node.UID = node.UID
				} else if !errors.Is(err, ErrNotFound) {
					return nil, nil, lookupErr(err, "", "nodes", obj.NodeName)
				}
			}
		case gvk.Group == "" && gvk.Kind == "Secret":
			if obj, err = t.Objects.Get(ctx, "secrets", ns, ref.Name); err != nil {
				return nil, nil, lookupErr(err, "", "secrets", ref.Name)
			}
			spec.Secret = &ObjectRef{Name: ref.Name, UID: obj.UID}
		case gvk.Group == "" && gvk.Kind == "Node":
			if obj, err = t.Objects.Get(ctx, "nodes", "", ref.Name); err != nil {
				return nil, nil, lookupErr(err, "", "nodes", ref.Name)
			}
			spec.Node = &ObjectRef{Name: ref.Name, UID: obj.UID}
		default:
			return nil, nil, apierrors.NewBadRequest(fmt.Sprintf("cannot bind token to object of type %s", gvk.String()))
		}
		if ref.UID != "" && string(ref.UID) != obj.UID {
			return nil, nil, apierrors.NewConflict(schema.GroupResource{Group: gvk.Group, Resource: gvk.Kind}, ref.Name,
				fmt.Errorf("the UID in the bound object reference (%s) does not match the UID in record. The object might have been deleted and then recreated", ref.UID))
		}
	}
	tok, exp, err := t.Issue(spec)
	if err != nil {
		return nil, nil, err
	}
	out := req.DeepCopy()
	out.TypeMeta = metav1.TypeMeta{APIVersion: "authentication.k8s.io/v1", Kind: "TokenRequest"}
	out.Name, out.Namespace = name, ns
	out.Status = authenticationv1.TokenRequestStatus{Token: tok, ExpirationTimestamp: metav1.NewTime(exp)}
	return out, warns, nil
}

// lookupErr maps a live lookup failure to the API error upstream answers.
func lookupErr(err error, group, resource, name string) error {
	if errors.Is(err, ErrNotFound) {
		return apierrors.NewNotFound(schema.GroupResource{Group: group, Resource: resource}, name)
	}
	return err
}
