// Package version reports the build's version in Kubernetes' format.
package version

import (
	"runtime"

	apiversion "k8s.io/apimachinery/pkg/version"
)

// Set at build time with -ldflags "-X github.com/skiffhq/skiff/version.gitVersion=...".
var (
	gitVersion = "v1.32.0-skiff"
	gitCommit  = "unknown"
	buildDate  = "1970-01-01T00:00:00Z"
)

// Info returns what /version serves. The major/minor say which Kubernetes
// API level Skiff speaks.
func Info() apiversion.Info {
	return apiversion.Info{
		Major:        "1",
		Minor:        "32",
		GitVersion:   gitVersion,
		GitCommit:    gitCommit,
		GitTreeState: "clean",
		BuildDate:    buildDate,
		GoVersion:    runtime.Version(),
		Compiler:     runtime.Compiler,
		Platform:     runtime.GOOS + "/" + runtime.GOARCH,
	}
}
