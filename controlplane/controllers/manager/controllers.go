package manager

import (
	"github.com/skiffhq/skiff/controlplane/controllers"
	"github.com/skiffhq/skiff/controlplane/controllers/deployment"
	"github.com/skiffhq/skiff/controlplane/controllers/garbagecollector"
	"github.com/skiffhq/skiff/controlplane/controllers/namespace"
	"github.com/skiffhq/skiff/controlplane/controllers/replicaset"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
)

// Specs is the table of controllers the manager knows, with upstream's
// canonical names and the short names older flags used.
func Specs() []Spec {
	return []Spec{
		{Name: replicaset.ReplicationControllerName, Aliases: []string{"replicationcontroller"}, Workers: 5, New: newReplicationController},
		{Name: replicaset.ReplicaSetName, Aliases: []string{"replicaset"}, Workers: 5, New: newReplicaSet},
		{Name: deployment.Name, Aliases: []string{"deployment"}, Workers: 5, New: newDeployment},
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

func replicaSetConfig(c *Context, component string) replicaset.Config {
	return replicaset.Config{Client: c.Client, Informers: c.Informers, Recorder: c.Recorder(component), Logger: c.Logger}
}

func newReplicaSet(c *Context) (controllers.Controller, error) {
	return replicaset.NewReplicaSet(replicaSetConfig(c, "replicaset-controller"))
}

func newReplicationController(c *Context) (controllers.Controller, error) {
	return replicaset.NewReplicationController(replicaSetConfig(c, "replication-controller"))
}

func newDeployment(c *Context) (controllers.Controller, error) {
	return deployment.New(deployment.Config{Client: c.Client, Informers: c.Informers, Recorder: c.Recorder("deployment-controller"), Logger: c.Logger})
}
