package agent

// ProbeWorkers is how many probe workers the agent tracks and how many of
// their goroutines still run (tests prove none leak).
func (a *Agent) ProbeWorkers() (tracked, running int) {
	return a.probes.count(), int(a.probes.running.Load())
}
