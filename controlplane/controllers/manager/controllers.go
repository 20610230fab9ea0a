package manager

import (
	"github.com/skiffhq/skiff/controlplane/controllers"
	"github.com/skiffhq/skiff/controlplane/controllers/cronjob"
	"github.com/skiffhq/skiff/controlplane/controllers/daemonset"
	"github.com/skiffhq/skiff/controlplane/controllers/deployment"
	"github.com/skiffhq/skiff/controlplane/controllers/disruption"
	"github.com/skiffhq/skiff/controlplane/controllers/endpoints"
	"github.com/skiffhq/skiff/controlplane/controllers/garbagecollector"
	"github.com/skiffhq/skiff/controlplane/controllers/job"
	"github.com/skiffhq/skiff/controlplane/controllers/namespace"
	"github.com/skiffhq/skiff/controlplane/controllers/nodeipam"
	"github.com/skiffhq/skiff/controlplane/controllers/nodelifecycle"
	"github.com/skiffhq/skiff/controlplane/controllers/persistentvolume"
	"github.com/skiffhq/skiff/controlplane/controllers/persistentvolume/provisioner"
	"github.com/skiffhq/skiff/controlplane/controllers/persistentvolume/provisioner/localpath"
	"github.com/skiffhq/skiff/controlplane/controllers/podautoscaler"
	"github.com/skiffhq/skiff/controlplane/controllers/podgc"
	"github.com/skiffhq/skiff/controlplane/controllers/replicaset"
	"github.com/skiffhq/skiff/controlplane/controllers/serviceaccount"
	"github.com/skiffhq/skiff/controlplane/controllers/statefulset"
	"github.com/skiffhq/skiff/controlplane/controllers/ttlafterfinished"
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
		{Name: statefulset.Name, Aliases: []string{"statefulset"}, Workers: 5, New: newStatefulSet},
		{Name: daemonset.Name, Aliases: []string{"daemonset"}, Workers: 2, New: newDaemonSet},
		{Name: endpoints.Name, Aliases: []string{"endpoint"}, Workers: 5, New: newEndpoints},
		{Name: endpoints.SliceName, Aliases: []string{"endpointslice"}, Workers: 5, New: newEndpointSlices},
		{Name: serviceaccount.Name, Aliases: []string{"serviceaccount"}, Workers: 1, New: newServiceAccounts},
		{Name: serviceaccount.RootCAName, Aliases: []string{"root-ca-cert-publisher"}, Workers: 1, New: newRootCAPublisher},
		{Name: podgc.Name, Aliases: []string{"podgc"}, Workers: 1, New: newPodGC},
		{Name: nodelifecycle.Name, Aliases: []string{"nodelifecycle"}, Workers: 1, New: newNodeLifecycle},
		{Name: nodelifecycle.TaintEvictionName, Aliases: []string{"tainteviction"}, Workers: 4, New: newTaintEviction},
		{Name: nodeipam.Name, Aliases: []string{"nodeipam"}, Workers: 1, New: newNodeIPAM},
		{Name: "namespace-controller", Aliases: []string{"namespace"}, Workers: 2, New: newNamespace},
		{Name: "garbage-collector-controller", Aliases: []string{"garbagecollector", garbagecollector.Name}, Workers: 4, New: newGarbageCollector},
		{Name: job.Name, Aliases: []string{"job"}, Workers: 5, New: newJob},
		{Name: cronjob.Name, Aliases: []string{"cronjob"}, Workers: 5, New: newCronJob},
		{Name: disruption.Name, Aliases: []string{"disruption"}, Workers: 1, New: newDisruption},
		{Name: ttlafterfinished.Name, Aliases: []string{"ttl-after-finished"}, Workers: 5, New: newTTLAfterFinished},
		// Off by default for now: its status writes race with tests that
		// update HPAs without retrying on conflict (see its README).
		{Name: podautoscaler.Name, Aliases: []string{"horizontalpodautoscaling"}, Workers: 5, New: newHPA},
		{Name: persistentvolume.Name, Aliases: []string{"persistentvolume-binder"}, Workers: 1, New: newPVBinder},
		{Name: persistentvolume.PVCProtectionName, Aliases: []string{"pvc-protection"}, Workers: 1, New: newPVCProtection},
		{Name: persistentvolume.PVProtectionName, Aliases: []string{"pv-protection"}, Workers: 1, New: newPVProtection},
		{Name: persistentvolume.CapacityName, Aliases: []string{"local-path-capacity"}, Workers: 1, New: newLocalPathCapacity},
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

func newStatefulSet(c *Context) (controllers.Controller, error) {
	return statefulset.New(statefulset.Config{Client: c.Client, Informers: c.Informers, Recorder: c.Recorder(statefulset.Name), Logger: c.Logger})
}

func newDaemonSet(c *Context) (controllers.Controller, error) {
	return daemonset.New(daemonset.Config{Client: c.Client, Informers: c.Informers, Recorder: c.Recorder(daemonset.Name), Logger: c.Logger})
}

func newEndpoints(c *Context) (controllers.Controller, error) {
	return endpoints.New(endpoints.Config{Client: c.Client, Informers: c.Informers, Logger: c.Logger})
}

func newEndpointSlices(c *Context) (controllers.Controller, error) {
	return endpoints.NewSlices(endpoints.Config{Client: c.Client, Informers: c.Informers, Logger: c.Logger})
}

func newServiceAccounts(c *Context) (controllers.Controller, error) {
	return serviceaccount.New(serviceaccount.Config{Client: c.Client, Informers: c.Informers, Logger: c.Logger})
}

func newRootCAPublisher(c *Context) (controllers.Controller, error) {
	return serviceaccount.NewRootCAPublisher(serviceaccount.Config{Client: c.Client, Informers: c.Informers, Logger: c.Logger, RootCA: c.Config.RootCA})
}

func newPodGC(c *Context) (controllers.Controller, error) {
	return podgc.New(podgc.Config{Client: c.Client, Informers: c.Informers, Logger: c.Logger,
		Threshold: c.Config.TerminatedPodGCThreshold, Quarantine: c.Config.PodGCQuarantine, Period: c.Config.PodGCPeriod}), nil
}

func newJob(c *Context) (controllers.Controller, error) {
	return job.New(job.Config{Client: c.Client, Informers: c.Informers, Recorder: c.Recorder(job.Name), Logger: c.Logger})
}

func newCronJob(c *Context) (controllers.Controller, error) {
	return cronjob.New(cronjob.Config{Client: c.Client, Informers: c.Informers, Recorder: c.Recorder(cronjob.Name), Logger: c.Logger})
}

func newHPA(c *Context) (controllers.Controller, error) {
	return podautoscaler.New(podautoscaler.Config{Client: c.Client, Informers: c.Informers, Recorder: c.Recorder("horizontal-pod-autoscaler"), Logger: c.Logger})
}

func newDisruption(c *Context) (controllers.Controller, error) {
	return disruption.New(disruption.Config{Client: c.Client, Informers: c.Informers, Recorder: c.Recorder(disruption.Name), Logger: c.Logger})
}

func newTTLAfterFinished(c *Context) (controllers.Controller, error) {
	return ttlafterfinished.New(ttlafterfinished.Config{Client: c.Client, Informers: c.Informers, Logger: c.Logger})
}

func newPVBinder(c *Context) (controllers.Controller, error) {
	var provs []provisioner.Provisioner
	if c.Config.StorageDir != "" {
		lp := localpath.New(c.Config.StorageDir)
		lp.Client, lp.Nodes = c.Client, c.Informers.Core().V1().Nodes().Lister()
		provs = append(provs, lp)
	}
	return persistentvolume.New(persistentvolume.Config{Client: c.Client, Informers: c.Informers, Recorder: c.Recorder("persistentvolume-controller"), Logger: c.Logger, Provisioners: provs})
}

func newLocalPathCapacity(c *Context) (controllers.Controller, error) {
	return persistentvolume.NewCapacity(persistentvolume.CapacityConfig{Client: c.Client, Informers: c.Informers, Logger: c.Logger})
}

func newPVCProtection(c *Context) (controllers.Controller, error) {
	return persistentvolume.NewPVCProtection(persistentvolume.ProtectionConfig{Client: c.Client, Informers: c.Informers, Logger: c.Logger})
}

func newPVProtection(c *Context) (controllers.Controller, error) {
	return persistentvolume.NewPVProtection(persistentvolume.ProtectionConfig{Client: c.Client, Informers: c.Informers, Logger: c.Logger})
}
