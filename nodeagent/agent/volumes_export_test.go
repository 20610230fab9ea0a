package agent

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
)

// PrepareVolume sets up one volume of pod as the agent's pod sync does,
// with client and the state folder stateDir but no running agent (tests
// of the volume code against a real API server, without containers).
func PrepareVolume(ctx context.Context, client kubernetes.Interface, stateDir string, pod *corev1.Pod, v corev1.Volume) (string, error) {
	a := &Agent{client: client, opts: Options{StateDir: stateDir, NodeIP: "192.0.2.1"}}
	return a.prepareVolume(ctx, pod, v)
}

// WatchedSources is how many ConfigMaps and Secrets the agent watches for
// its pods' volumes.
func (a *Agent) WatchedSources() int { return a.sources.count() }
