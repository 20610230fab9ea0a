// Package integration holds the ingress add-on's tests against a real
// skiff server (internal/testserver): Go HTTP backends on loopback
// addresses written into EndpointSlices stand in for pods, except in
// TestRealPods (pods_test.go), where a real node agent runs Deployments of
// the test server image on containerd behind Services.
package integration
