package node

import (
	"context"
	"testing"

	"github.com/skiffhq/skiff/controlplane/apiserver"
	"github.com/skiffhq/skiff/controlplane/authz"
	corev1 "k8s.io/api/core/v1"
)

// TestVolumeGet: a node may get the volume of a claim its pods use, and
// no other volume, and may not list volumes.
func TestVolumeGet(t *testing.T) {
	g := NewGraph()
	p := pod("db", "n1")
	p.Spec.Volumes = []corev1.Volume{{Name: "d", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}}}}
	g.SetPod(p)
	a := &Authorizer{Graph: g, ClaimVolume: func(ns, name string) string {
		if ns == "ns" && name == "data" {
			return "pv-data"
		}
		return ""
	}}
	ask := func(node, verb, name string) authz.Decision {
		u := &apiserver.UserInfo{Name: UserPrefix + node, Groups: []string{NodesGroup}}
		d, _, err := a.Decide(context.Background(), u, &apiserver.RequestInfo{IsResourceRequest: true, Verb: verb, APIVersion: "v1", Resource: "persistentvolumes", Name: name})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	if ask("n1", "get", "pv-data") != authz.Allow {
		t.Error("node cannot get the volume of its pod's claim")
	}
	if ask("n2", "get", "pv-data") == authz.Allow {
		t.Error("another node got the volume")
	}
	if ask("n1", "get", "pv-other") == authz.Allow {
		t.Error("node got an unrelated volume")
	}
	if ask("n1", "list", "") == authz.Allow {
		t.Error("node may list volumes")
	}
	if got := g.Claims("n1"); len(got) != 1 || got[0] != "ns/data" {
		t.Errorf("Claims = %v", got)
	}
}
