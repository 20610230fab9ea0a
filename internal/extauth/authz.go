package extauth

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/validation/path"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Attributes are what a request asks to do, as upstream's RequestInfo.
type Attributes struct {
	// IsResourceRequest: an /api or /apis path down to a resource. Else
	// Path and Verb (the lower-case method) are non-resource attributes.
	IsResourceRequest bool
	Path              string
	// Verb is get, list, watch, create, update, patch, delete,
	// deletecollection (or proxy) for resource requests.
	Verb                                                   string
	APIGroup, APIVersion, Namespace, Resource, Subresource string
	Name                                                   string
}

var namespaceSubresources = map[string]bool{"status": true, "finalize": true}

// RequestAttributes parses r's path and method as upstream's
// RequestInfoFactory does (prefixes api and apis; api is groupless).
func RequestAttributes(r *http.Request) Attributes {
	a := Attributes{Path: r.URL.Path, Verb: strings.ToLower(r.Method)}
	parts := splitPath(r.URL.Path)
	if len(parts) < 3 || parts[0] != "api" && parts[0] != "apis" {
		return a
	}
	prefix := parts[0]
	parts = parts[1:]
	if prefix == "apis" {
		if len(parts) < 3 {
			return a
		}
		a.APIGroup = parts[0]
		parts = parts[1:]
	}
	a.IsResourceRequest = true
	a.APIVersion = parts[0]
	parts = parts[1:]
	if parts[0] == "watch" || parts[0] == "proxy" {
		if len(parts) < 2 {
			// Upstream fails such a request; it is nothing to authorize.
			return Attributes{Path: r.URL.Path, Verb: strings.ToLower(r.Method)}
		}
		a.Verb = parts[0]
		parts = parts[1:]
	} else {
		switch r.Method {
		case http.MethodPost:
			a.Verb = "create"
		case http.MethodGet, http.MethodHead:
			a.Verb = "get"
		case http.MethodPut:
			a.Verb = "update"
		case http.MethodPatch:
			a.Verb = "patch"
		case http.MethodDelete:
			a.Verb = "delete"
		default:
			a.Verb = ""
		}
	}
	if parts[0] == "namespaces" && len(parts) > 1 {
		a.Namespace = parts[1]
		if len(parts) > 2 && !namespaceSubresources[parts[2]] {
			parts = parts[2:]
		}
	}
	if len(parts) >= 3 && a.Verb != "proxy" {
		a.Subresource = parts[2]
	}
	if len(parts) >= 2 {
		a.Name = parts[1]
	}
	a.Resource = parts[0]
	if a.Name == "" && a.Verb == "get" {
		a.Verb = "list"
		if w, _ := strconv.ParseBool(r.URL.Query().Get("watch")); w {
			a.Verb = "watch"
		}
		// A list or watch by a metadata.name field selector addresses
		// that object.
		if fs := r.URL.Query().Get("fieldSelector"); fs != "" {
			if sel, err := fields.ParseSelector(fs); err == nil {
				if n, ok := sel.RequiresExactMatch("metadata.name"); ok && len(path.IsValidPathSegmentName(n)) == 0 {
					a.Name = n
				}
			}
		}
	}
	if a.Name == "" && a.Verb == "delete" {
		a.Verb = "deletecollection"
	}
	return a
}

func splitPath(p string) []string {
	p = strings.Trim(p, "/")
	if p == "" {
		return nil
	}
	return strings.Split(p, "/")
}

// Authorize asks the API server whether u may do a (a
// SubjectAccessReview, cached). reason is the review's.
func (d *Delegator) Authorize(ctx context.Context, u *User, a Attributes) (allowed bool, reason string, err error) {
	spec := authorizationv1.SubjectAccessReviewSpec{User: u.Name, UID: u.UID, Groups: u.Groups}
	if len(u.Extra) > 0 {
		spec.Extra = make(map[string]authorizationv1.ExtraValue, len(u.Extra))
		for k, v := range u.Extra {
			spec.Extra[k] = v
		}
	}
	if a.IsResourceRequest {
		spec.ResourceAttributes = &authorizationv1.ResourceAttributes{
			Namespace: a.Namespace, Verb: a.Verb, Group: a.APIGroup, Version: a.APIVersion,
			Resource: a.Resource, Subresource: a.Subresource, Name: a.Name,
		}
	} else {
		spec.NonResourceAttributes = &authorizationv1.NonResourceAttributes{Path: a.Path, Verb: a.Verb}
	}
	keyb, err := json.Marshal(spec)
	if err != nil {
		return false, "", fmt.Errorf("subject access review key: %w", err)
	}
	key := string(keyb)
	if dec, ok := d.decisions.get(key); ok {
		return dec.allowed, dec.reason, nil
	}
	sar, err := d.client.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{Spec: spec}, metav1.CreateOptions{})
	if err != nil {
		return false, "", fmt.Errorf("subject access review: %w", err)
	}
	dec := decision{allowed: sar.Status.Allowed && !sar.Status.Denied, reason: sar.Status.Reason}
	ttl := d.opts.DeniedTTL
	if dec.allowed {
		ttl = d.opts.AllowedTTL
	}
	d.decisions.put(key, dec, ttl)
	return dec.allowed, dec.reason, nil
}

type decision struct {
	allowed bool
	reason  string
}

// Forbidden is upstream's 403 for a denied request: `User "u" cannot
// VERB resource "R" in API group "G" in the namespace "N"` (or "at the
// cluster scope", or `cannot VERB path "P"`), the reason appended.
func Forbidden(u *User, a Attributes, reason string) *apierrors.StatusError {
	name := ""
	if u != nil {
		name = u.Name
	}
	var msg string
	if a.IsResourceRequest {
		res := a.Resource
		if a.Subresource != "" {
			res += "/" + a.Subresource
		}
		if a.Namespace != "" {
			msg = fmt.Sprintf("User %q cannot %s resource %q in API group %q in the namespace %q", name, a.Verb, res, a.APIGroup, a.Namespace)
		} else {
			msg = fmt.Sprintf("User %q cannot %s resource %q in API group %q at the cluster scope", name, a.Verb, res, a.APIGroup)
		}
	} else {
		msg = fmt.Sprintf("User %q cannot %s path %q", name, a.Verb, a.Path)
	}
	if reason != "" {
		msg += ": " + reason
	}
	return apierrors.NewForbidden(schema.GroupResource{Group: a.APIGroup, Resource: a.Resource}, a.Name, fmt.Errorf("%s", msg))
}
