// Package integration holds the ingress add-on's tests against a real
// skiff server (internal/testserver): Go HTTP backends on loopback
// addresses written into EndpointSlices stand in for pods.
package integration
