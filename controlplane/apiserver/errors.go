package apiserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/skiffhq/skiff/controlplane/storage"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// statusFor turns any error into a Kubernetes Status. A request whose
// deadline passed gets upstream's 504 Timeout, one cancelled a 503; other
// errors that are not API errors become 500s with a generic message,
// their details logged.
func statusFor(err error) *metav1.Status {
	var se apierrors.APIStatus
	if errors.As(err, &se) {
		st := se.Status()
		return &st
	}
	switch {
	case errors.Is(err, storage.ErrTooLarge):
		st := apierrors.NewRequestEntityTooLargeError("the object is too large to store").ErrStatus
		return &st
	case errors.Is(err, storage.ErrExpired):
		st := apierrors.NewResourceExpired(err.Error()).ErrStatus
		return &st
	case errors.Is(err, storage.ErrUnavailable):
		st := apierrors.NewServiceUnavailable("etcd has no quorum: the request was not stored (too few etcd members of the cluster are reachable)").ErrStatus
		return &st
	case errors.Is(err, storage.ErrNoSpace):
		// Upstream answers etcd's NOSPACE alarm with a 500; 507 says what
		// it is, and the message says how it ends.
		msg := err.Error()
		if i := strings.Index(msg, storage.ErrNoSpace.Error()); i >= 0 {
			msg = msg[i:] // without the storage key
		}
		return &metav1.Status{Code: http.StatusInsufficientStorage, Reason: "InsufficientStorage", Message: "the write was not stored: " + msg}
	case errors.Is(err, storage.ErrUncertain):
		st := apierrors.NewTimeoutError("etcd did not confirm the write in time (quorum lost?): it may or may not have been stored; read the object before retrying", 0).ErrStatus
		return &st
	case errors.Is(err, context.DeadlineExceeded):
		st := apierrors.NewTimeoutError("request did not complete within the allotted timeout", 0).ErrStatus
		return &st
	case errors.Is(err, context.Canceled):
		// The request's context ended: its client went away (nobody reads
		// the answer) or the server is stopping (the client should retry
		// elsewhere or later). Not an internal error, so not logged as one.
		st := apierrors.NewServiceUnavailable("the request was cancelled before it completed (the client went away or the server is stopping)").ErrStatus
		return &st
	}
	slog.Error("internal error answered with 500", "component", "apiserver", "err", err)
	st := apierrors.NewInternalError(errors.New("an error on the server prevented the request from succeeding")).ErrStatus
	return &st
}

func writeStatus(w http.ResponseWriter, st *metav1.Status) {
	st.Kind = "Status"
	st.APIVersion = "v1"
	if st.Status == "" {
		st.Status = metav1.StatusFailure
	}
	code := int(st.Code)
	if code == 0 {
		code = http.StatusInternalServerError
	}
	if _, ok := w.(*protoResponse); ok {
		if b, err := encodeProto(st); err == nil {
			w.Header().Set("X-Content-Type-Options", "nosniff")
			writeProtoBytes(w, code, b)
			return
		}
	}
	b, _ := json.Marshal(st)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = w.Write(b)
}

// storageErr maps storage sentinels to API errors for one object.
func storageErr(err error, gr schema.GroupResource, name string) error {
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return apierrors.NewNotFound(gr, name)
	case errors.Is(err, storage.ErrExists):
		return apierrors.NewAlreadyExists(gr, name)
	case errors.Is(err, storage.ErrConflict):
		return apierrors.NewConflict(gr, name, errors.New(conflictMsg))
	case errors.Is(err, storage.ErrTooLarge):
		return apierrors.NewRequestEntityTooLargeError("the object is too large to store")
	case errors.Is(err, storage.ErrExpired):
		return apierrors.NewResourceExpired(err.Error())
	}
	return err
}

const conflictMsg = "the object has been modified; please apply your changes to the latest version and try again"

func badRequest(format string, args ...any) error {
	return apierrors.NewBadRequest(fmt.Sprintf(format, args...))
}

func schemaGR(resource string) schema.GroupResource { return schema.GroupResource{Resource: resource} }

func schemaGK(group, kind string) schema.GroupKind { return schema.GroupKind{Group: group, Kind: kind} }
