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
	// ErrUnavailable means etcd refused the request before ordering it:
	// its member has no leader, as when a minority of an HA cluster's
	// members is left. A write that fails so was not stored (HTTP 503).
	ErrUnavailable = errors.New("storage: etcd has no leader (quorum lost?)")
	// ErrUncertain means a write was handed to etcd but not confirmed: it
	// timed out waiting for a quorum, or the leader changed or was lost
	// meanwhile. It may still be committed later (a proposal queued to
	// the leader arrives once the network heals), so the caller must read
	// before retrying (HTTP 504).
	ErrUncertain = errors.New("storage: etcd did not confirm the write (quorum lost?); it may or may not be stored")
	// ErrNoSpace means a write was refused because storage is full: the
	// data directory's filesystem is below its reserve (SpaceGuard), or
	// etcd's backend reached its quota (its NOSPACE alarm). Nothing was
	// stored; reads still work (HTTP 507).
	ErrNoSpace = errors.New("storage: no space left for writes")
)
