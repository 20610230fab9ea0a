// Package crd serves CustomResourceDefinitions (apiextensions.k8s.io/v1):
// validation and defaulting of the definitions themselves, a controller
// that accepts their names, marks them Established and registers one
// resource per served version with the API server, the structural-schema
// validation, defaulting and pruning of custom resources, their printer
// columns and scale subresource, and the cleanup of a deleted definition's
// objects.
package crd
