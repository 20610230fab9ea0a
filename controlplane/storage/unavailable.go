package storage

import (
	"errors"
	"strings"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// noLeader are the etcd errors of a member that cannot get a request
// ordered: no leader, or a proposal that timed out waiting for a quorum.
var noLeader = []error{
	rpctypes.ErrNoLeader, rpctypes.ErrGRPCNoLeader,
	rpctypes.ErrTimeout, rpctypes.ErrGRPCTimeout,
	rpctypes.ErrTimeoutDueToLeaderFail, rpctypes.ErrGRPCTimeoutDueToLeaderFail,
	rpctypes.ErrTimeoutDueToConnectionLost, rpctypes.ErrGRPCTimeoutDueToConnectionLost,
	rpctypes.ErrLeaderChanged, rpctypes.ErrGRPCLeaderChanged,
	rpctypes.ErrNotCapable, rpctypes.ErrGRPCNotCapable,
}

// unavailable reports whether err is etcd saying it cannot order requests
// (the in-process client returns gRPC status errors, the network client
// rpctypes.EtcdError values; both carry etcd's message).
func unavailable(err error) bool {
	for _, e := range noLeader {
		if errors.Is(err, e) {
			return true
		}
	}
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		return ee.Code() == codes.Unavailable && strings.HasPrefix(ee.Error(), "etcdserver: ")
	}
	if st, ok := status.FromError(err); ok && st.Code() == codes.Unavailable {
		return strings.HasPrefix(st.Message(), "etcdserver: ")
	}
	return false
}
