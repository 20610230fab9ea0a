package apiserver

import (
	"net/http"

	"k8s.io/apimachinery/pkg/runtime"
)

// DecodeRequest reads a request body (JSON, YAML or Kubernetes protobuf)
// into obj, for custom subresource handlers. Errors are API errors.
func DecodeRequest(r *http.Request, obj runtime.Object) ([]string, error) {
	data, err := readBody(r)
	if err != nil {
		return nil, err
	}
	if data, err = toJSON(r, data); err != nil {
		return nil, err
	}
	if !looksLikeObject(data) {
		return nil, badRequest("the body of the request must be a JSON or YAML object")
	}
	fv, err := fieldValidationFrom(r)
	if err != nil {
		return nil, err
	}
	return decodeInto(data, obj, fv)
}

// WriteError answers err as a Kubernetes Status (non-API errors are 500s
// with a generic message).
func WriteError(w http.ResponseWriter, err error) { writeStatus(w, statusFor(err)) }

// WriteObject answers obj as JSON (or YAML when asked) with code, adding
// warnings as Warning headers.
func WriteObject(w http.ResponseWriter, r *http.Request, code int, obj any, warnings ...string) {
	addWarnings(w, warnings)
	writeObj(w, r, code, obj)
}
