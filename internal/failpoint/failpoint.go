// Package failpoint marks the crash-relevant points of Skiff (a storage
// write committed but not yet answered, a log batch acknowledged but not
// yet checkpointed) where fault-injection tests make the process die,
// fail or stall.
//
// In a normal build Inject is an empty function the compiler removes. In a
// build with the tag `failpoints` (`go build -tags failpoints`), the points
// named in the environment variable SKIFF_FAILPOINTS act when reached:
//
//	SKIFF_FAILPOINTS='storage/after-commit=after(100)2%kill@/configmaps/chaos/;shipper/before-checkpoint=kill'
//
// Each term is name=[after(N)][P%]action[@substring]: when the point's
// argument contains substring (if given), the first N such hits in the
// process pass (default 0), and after them the action runs with
// probability P (default 100%). Actions:
//
//	kill        SIGKILL the process (no deferred functions, no flushing)
//	panic       panic with the point's name
//	error       Inject returns an error (the caller fails its operation)
//	sleep(D)    sleep for the Go duration D, then go on
//
// A point that fires logs "failpoint: <name> <action> <arg>" to stderr first.
package failpoint

import "errors"

// Env is the environment variable naming the active failpoints.
const Env = "SKIFF_FAILPOINTS"

// ErrInjected is returned (wrapped) by Inject for the action "error".
var ErrInjected = errors.New("failpoint: injected error")
