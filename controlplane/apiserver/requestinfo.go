package apiserver

import (
	"context"
	"net/http"
	"strings"

	"k8s.io/apimachinery/pkg/fields"
)

// RequestInfo is what a request addresses, parsed from its path as
// kube-apiserver does. Authorization and auditing use it.
type RequestInfo struct {
	IsResourceRequest bool
	Path              string
	// Verb is the Kubernetes verb (get, list, watch, create, update, patch,
	// delete, deletecollection) or, for non-resource requests, the lower-case
	// HTTP method.
	Verb        string
	APIPrefix   string
	APIGroup    string
	APIVersion  string
	Namespace   string
	Resource    string
	Subresource string
	Name        string
	// Parts are the path parts after the version.
	Parts []string
}

type requestInfoKey struct{}

// WithRequestInfo stores info in ctx.
func WithRequestInfo(ctx context.Context, info *RequestInfo) context.Context {
	return context.WithValue(ctx, requestInfoKey{}, info)
}

// RequestInfoFrom returns the request info stored in ctx.
func RequestInfoFrom(ctx context.Context) (*RequestInfo, bool) {
	info, ok := ctx.Value(requestInfoKey{}).(*RequestInfo)
	return info, ok
}

var namespaceSubresources = map[string]bool{"status": true, "finalize": true}

// ParseRequestInfo parses a request the way upstream's RequestInfoFactory does.
func ParseRequestInfo(r *http.Request) *RequestInfo {
	info := &RequestInfo{Path: r.URL.Path, Verb: strings.ToLower(r.Method)}
	parts := splitPath(r.URL.Path)
	if len(parts) < 2 {
		return info
	}
	switch parts[0] {
	case "api":
		info.APIPrefix = "api"
		info.APIVersion = parts[1]
		parts = parts[2:]
	case "apis":
		if len(parts) < 3 {
			return info
		}
		info.APIPrefix = "apis"
		info.APIGroup = parts[1]
		info.APIVersion = parts[2]
		parts = parts[3:]
	default:
		return info
	}
	if len(parts) == 0 {
		return info
	}
	info.IsResourceRequest = true
	switch r.Method {
	case http.MethodPost:
		info.Verb = "create"
	case http.MethodGet, http.MethodHead:
		info.Verb = "get"
	case http.MethodPut:
		info.Verb = "update"
	case http.MethodPatch:
		info.Verb = "patch"
	case http.MethodDelete:
		info.Verb = "delete"
	default:
		info.Verb = ""
	}
	if parts[0] == "watch" {
		info.Verb = "watch"
		parts = parts[1:]
	}
	if len(parts) > 0 && parts[0] == "namespaces" {
		if len(parts) > 1 {
			info.Namespace = parts[1]
			if len(parts) > 2 && !namespaceSubresources[parts[2]] {
				parts = parts[2:]
			}
		}
	}
	info.Parts = parts
	if len(parts) >= 3 {
		info.Subresource = parts[2]
	}
	if len(parts) >= 2 {
		info.Name = parts[1]
	}
	if len(parts) >= 1 {
		info.Resource = parts[0]
	}
	if len(parts) < 2 && info.Verb == "get" {
		info.Verb = "list"
		if isWatch(r) {
			info.Verb = "watch"
		}
	}
	if info.Name == "" && (info.Verb == "list" || info.Verb == "watch") {
		// A list or watch of one object by a metadata.name field selector
		// (what the kubelet's configmap and secret watches send) addresses
		// that object, as upstream's RequestInfoFactory sets it: the node
		// authorizer and resourceNames rules then apply to it.
		info.Name = selectedName(r)
	}
	if len(parts) < 2 && info.Verb == "delete" {
		info.Verb = "deletecollection"
	}
	if info.Verb == "watch" && len(parts) >= 2 {
		// watch on a single named object (legacy /watch/ path)
		info.Verb = "watch"
	}
	return info
}

// selectedName is the name a request's fieldSelector requires exactly
// (metadata.name=x or ==x), or "" when it has none or does not parse.
func selectedName(r *http.Request) string {
	values := r.URL.Query()["fieldSelector"]
	if len(values) != 1 || values[0] == "" {
		return ""
	}
	sel, err := fields.ParseSelector(values[0])
	if err != nil {
		return ""
	}
	name, _ := sel.RequiresExactMatch("metadata.name")
	return name
}

// PathName is the object name in the request's path ("" for a
// collection). Unlike Name, it is never taken from a field selector, so
// handlers route on it.
func (i *RequestInfo) PathName() string {
	if len(i.Parts) >= 2 {
		return i.Parts[1]
	}
	return ""
}

func isWatch(r *http.Request) bool {
	v := r.URL.Query().Get("watch")
	return v == "true" || v == "1"
}

func splitPath(p string) []string {
	p = strings.Trim(p, "/")
	if p == "" {
		return nil
	}
	return strings.Split(p, "/")
}
