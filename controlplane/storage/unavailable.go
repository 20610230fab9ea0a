package storage

import (
	"context"
	"errors"
	"strings"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// refused are the etcd errors of a request turned away before it was
// proposed: the member has no leader (etcd's require-leader check) or
// cannot serve it. Nothing was stored.
var refused = []error{
	rpctypes.ErrNoLeader, rpctypes.ErrGRPCNoLeader,
	rpctypes.ErrNotCapable, rpctypes.ErrGRPCNotCapable,
}

// unconfirmed are the etcd errors of a request that was proposed but not
// confirmed: it timed out waiting for a quorum, or the leader failed or
// changed meanwhile. A write may still be committed later.
var unconfirmed = []error{
	rpctypes.ErrTimeout, rpctypes.ErrGRPCTimeout,
	rpctypes.ErrTimeoutDueToLeaderFail, rpctypes.ErrGRPCTimeoutDueToLeaderFail,
	rpctypes.ErrTimeoutDueToConnectionLost, rpctypes.ErrGRPCTimeoutDueToConnectionLost,
	rpctypes.ErrLeaderChanged, rpctypes.ErrGRPCLeaderChanged,
}

// quorumErr classifies err from an etcd call: ErrUnavailable when etcd
// could not serve it and nothing was written, ErrUncertain when a write
// was handed over but not confirmed (or its deadline passed first), nil
// for any other error.
func quorumErr(write bool, err error) error {
	if isAny(err, refused) {
		return ErrUnavailable
	}
	if isAny(err, unconfirmed) || etcdUnavailable(err) {
		if write {
			return ErrUncertain
		}
		return ErrUnavailable
	}
	if write && errors.Is(err, context.DeadlineExceeded) {
		return ErrUncertain
	}
	return nil
}

func isAny(err error, targets []error) bool {
	for _, e := range targets {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// etcdUnavailable reports whether err is another of etcd's Unavailable
// errors (the in-process client returns gRPC status errors, the network
// client rpctypes.EtcdError values; both carry etcd's message).
func etcdUnavailable(err error) bool {
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		return ee.Code() == codes.Unavailable && strings.HasPrefix(ee.Error(), "etcdserver: ")
	}
	if st, ok := status.FromError(err); ok && st.Code() == codes.Unavailable {
		return strings.HasPrefix(st.Message(), "etcdserver: ")
	}
	return false
}
