// Package bench measures the Kubernetes API of Skiff (or of any
// Kubernetes-compatible server) through client-go and, for an in-process
// Skiff, the same operations as raw etcd requests, since raw etcd is the
// limit of Skiff's design. API runs every phase and returns one Result
// that the skiff-bench command prints as JSON.
package bench
