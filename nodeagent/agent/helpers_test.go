package agent_test

import goruntime "runtime"

func goruntimeNumCPU() int { return goruntime.NumCPU() }
