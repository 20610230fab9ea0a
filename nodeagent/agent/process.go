package agent

import (
	"context"
	"log/slog"
	"os"
	goruntime "runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/skiffhq/skiff/internal/memtrim"
)

// agentGCPercent is the heap goal of a process that runs only the agent:
// it keeps ~15 MB live with 100 pods and allocates little, so a goal 50%
// over the live heap instead of Go's 100% saves several MiB of resident
// memory for a GC cost that stays under 1% of a core.
const agentGCPercent = 50

// TuneProcess sets up a process whose main work is the node agent
// (`skiff agent`, not a server that runs one): unless GOGC is set, the
// heap goal is agentGCPercent, and once start-up settled the executable
// pages it touched are given back and the executable's page cache that no
// process maps is dropped (memtrim.Evict), so that the code the agent
// runs from then on is resident a page at a time. It returns at once.
func TuneProcess(ctx context.Context, log *slog.Logger) {
	TuneProcessAfter(ctx, log, 10*time.Second)
}

// TuneProcessAfter is TuneProcess with the time start-up takes to settle
// before the release; with settle <= 0 the release is done before it
// returns (a process that finished its start-up, as the logs benchmark's
// shipper child once its shipper is set up).
func TuneProcessAfter(ctx context.Context, log *slog.Logger, settle time.Duration) {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(agentGCPercent)
	}
	if settle <= 0 {
		memtrim.ReleaseAfter(ctx, 0, log, true)
		return
	}
	go memtrim.ReleaseAfter(ctx, settle, log, true)
}

// QuietMemProfiler turns Go's heap profiler off (runtime.MemProfileRate
// 0) in a process whose main work is the node agent, unless GODEBUG sets
// memprofilerate (asking for heap profiles). Left on, it samples an
// allocation every 512 KiB for the life of the process and keeps a record
// per distinct allocating stack, in a hash table whose pages those
// records touch (1.5 MB resident in an agent with 100 pods); the agent
// serves no heap profile. Call it first thing: what was sampled before
// stays.
func QuietMemProfiler() {
	if !strings.Contains(os.Getenv("GODEBUG"), "memprofilerate=") {
		goruntime.MemProfileRate = 0
	}
}
