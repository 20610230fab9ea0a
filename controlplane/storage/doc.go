// Package storage is the only package in Skiff that talks to etcd.
//
// It offers three things: an embedded etcd server (Embedded, whose Client
// is an in-process etcd client for the process that embeds it), a small
// key/value store with optimistic concurrency on etcd revisions (Store), and a
// watch cache (Cache) that mirrors everything under the registry prefix in
// memory, serves consistent lists from memory and fans watch events out to
// many watchers from a single etcd watch.
//
// Values are opaque bytes to this package; the API server decides what they
// mean. Keys follow Kubernetes' layout: /registry/<resource>/<namespace>/<name>.
package storage

import "errors"

// Sentinel errors; the API server translates them into Kubernetes Status codes.
var (
	// ErrNotFound means the key does not exist.
	ErrNotFound = errors.New("storage: key not found")
	// ErrExists means a create found the key already present.
	ErrExists = errors.New("storage: key already exists")
	// ErrConflict means the key changed since the revision the caller expected.
	ErrConflict = errors.New("storage: revision conflict")
	// ErrExpired means the requested revision has been compacted or has left
	// the watch cache window (HTTP 410 Gone).
	ErrExpired = errors.New("storage: revision expired")
	// ErrTooLarge means a value exceeds what etcd accepts in one request.
	ErrTooLarge = errors.New("storage: value too large")
	// ErrUnavailable means etcd could not order the request: its member
	// has no leader, as when a minority of an HA cluster's members is
	// left (HTTP 503).
	ErrUnavailable = errors.New("storage: etcd has no leader (quorum lost?)")
)
