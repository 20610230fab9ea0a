package main

import "github.com/skiffhq/skiff/version"

func versionString() string {
	v := version.Info()
	return "skiff " + v.GitVersion + " (" + v.GitCommit + ", " + v.GoVersion + ")"
}
