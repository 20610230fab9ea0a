// Package integration holds the DNS add-on's tests against a real skiff
// server (internal/testserver) and a real pod. They live apart from
// addons/dns so that its fuzz target links only the add-on, not the server.
package integration
