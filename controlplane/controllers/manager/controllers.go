package manager

import (
	"github.com/skiffhq/skiff/controlplane/controllers"
	"github.com/skiffhq/skiff/controlplane/controllers/garbagecollector"
	"github.com/skiffhq/skiff/controlplane/controllers/namespace"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
)

// Specs is the table of controllers the manager knows, with upstream's
// canonical names and the short names older flags used.
func Specs() []Spec {
	return []Spec{
		{Name: "namespace-controller", Aliases: []string{"namespace"}, Workers: 2, New: newNamespace},
		{Name: "garbage-collector-controller", Aliases: []string{"garbagecollector", garbagecollector.Name}, Workers: 4, New: newGarbageCollector},
	}
}

func metav1ObjectMeta(ns, name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Namespace: ns, Name: name}
}

func newNamespace(c *Context) (controllers.Controller, error) {
	cs, err := kubernetes.NewForConfig(c.RestConfig)
	if err != nil {
		return nil, err
	}
	md, err := metadata.NewForConfig(c.RestConfig)
	if err != nil {
		return nil, err
	}
	return namespace.New(namespace.Config{Client: cs, Metadata: md, Logger: c.Logger}), nil
}

func newGarbageCollector(c *Context) (controllers.Controller, error) {
	md, err := metadata.NewForConfig(c.RestConfig)
	if err != nil {
		return nil, err
	}
	return garbagecollector.New(garbagecollector.Config{Discovery: c.Client.Discovery(), Metadata: md, Logger: c.Logger}), nil
}
