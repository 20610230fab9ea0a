package federation

import (
	"context"
	"fmt"
	"time"

	"github.com/skiffhq/skiff/addons/federation/apis/v1alpha1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

// Schema helpers: small structural schemas, with preserved subtrees only
// where upstream's own types are open (label selectors, raw values).
func obj(props map[string]apiextensionsv1.JSONSchemaProps, required ...string) apiextensionsv1.JSONSchemaProps {
	return apiextensionsv1.JSONSchemaProps{Type: "object", Properties: props, Required: required}
}
func str() apiextensionsv1.JSONSchemaProps { return apiextensionsv1.JSONSchemaProps{Type: "string"} }
func enum(v ...string) apiextensionsv1.JSONSchemaProps {
	s := str()
	for _, e := range v {
		s.Enum = append(s.Enum, apiextensionsv1.JSON{Raw: []byte(`"` + e + `"`)})
	}
	return s
}
func integer() apiextensionsv1.JSONSchemaProps {
	return apiextensionsv1.JSONSchemaProps{Type: "integer", Format: "int64"}
}
func boolean() apiextensionsv1.JSONSchemaProps {
	return apiextensionsv1.JSONSchemaProps{Type: "boolean"}
}
func arr(items apiextensionsv1.JSONSchemaProps) apiextensionsv1.JSONSchemaProps {
	return apiextensionsv1.JSONSchemaProps{Type: "array", Items: &apiextensionsv1.JSONSchemaPropsOrArray{Schema: &items}}
}
func strMap() apiextensionsv1.JSONSchemaProps {
	s := str()
	return apiextensionsv1.JSONSchemaProps{Type: "object", AdditionalProperties: &apiextensionsv1.JSONSchemaPropsOrBool{Allows: true, Schema: &s}}
}
func open() apiextensionsv1.JSONSchemaProps {
	t := true
	return apiextensionsv1.JSONSchemaProps{Type: "object", XPreserveUnknownFields: &t}
}
func anyValue() apiextensionsv1.JSONSchemaProps {
	t := true
	return apiextensionsv1.JSONSchemaProps{XPreserveUnknownFields: &t}
}
func quantities() apiextensionsv1.JSONSchemaProps {
	q := apiextensionsv1.JSONSchemaProps{XIntOrString: true}
	return apiextensionsv1.JSONSchemaProps{Type: "object", AdditionalProperties: &apiextensionsv1.JSONSchemaPropsOrBool{Allows: true, Schema: &q}}
}

func conditions() apiextensionsv1.JSONSchemaProps {
	return arr(obj(map[string]apiextensionsv1.JSONSchemaProps{
		"type": str(), "status": str(), "reason": str(), "message": str(),
		"lastTransitionTime": str(), "observedGeneration": integer(),
	}, "type", "status"))
}

func taints() apiextensionsv1.JSONSchemaProps {
	return arr(obj(map[string]apiextensionsv1.JSONSchemaProps{
		"key": str(), "value": str(), "effect": enum("NoSchedule", "PreferNoSchedule", "NoExecute"), "timeAdded": str(),
	}, "key", "effect"))
}

func propagationSpec() apiextensionsv1.JSONSchemaProps {
	container := func(extra map[string]apiextensionsv1.JSONSchemaProps) apiextensionsv1.JSONSchemaProps {
		p := map[string]apiextensionsv1.JSONSchemaProps{"containerName": str()}
		for k, v := range extra {
			p[k] = v
		}
		return obj(p)
	}
	return obj(map[string]apiextensionsv1.JSONSchemaProps{
		"resourceSelectors": arr(obj(map[string]apiextensionsv1.JSONSchemaProps{
			"apiVersion": str(), "kind": str(), "namespace": str(), "name": str(), "labelSelector": open(),
		}, "apiVersion", "kind")),
		"placement": obj(map[string]apiextensionsv1.JSONSchemaProps{
			"clusterNames":    arr(str()),
			"clusterSelector": open(),
			"tolerations": arr(obj(map[string]apiextensionsv1.JSONSchemaProps{
				"key": str(), "operator": str(), "value": str(), "effect": str(), "tolerationSeconds": integer(),
			})),
		}),
		"replicaScheduling": obj(map[string]apiextensionsv1.JSONSchemaProps{
			"type": enum(v1alpha1.ReplicaDuplicated, v1alpha1.ReplicaDivided),
			"weightPreference": obj(map[string]apiextensionsv1.JSONSchemaProps{
				"staticWeights": arr(obj(map[string]apiextensionsv1.JSONSchemaProps{"cluster": str(), "weight": integer()}, "cluster", "weight")),
				"dynamic":       enum(v1alpha1.DynamicAvailable),
			}),
		}),
		"overrides": arr(obj(map[string]apiextensionsv1.JSONSchemaProps{
			"clusterNames":    arr(str()),
			"clusterSelector": open(),
			"imageOverrider":  arr(container(map[string]apiextensionsv1.JSONSchemaProps{"image": str()})),
			"argsOverrider":   arr(container(map[string]apiextensionsv1.JSONSchemaProps{"operator": enum("append", "replace"), "value": arr(str())})),
			"labelsOverrider": obj(map[string]apiextensionsv1.JSONSchemaProps{"set": strMap(), "remove": arr(str())}),
			"jsonPatch": arr(obj(map[string]apiextensionsv1.JSONSchemaProps{
				"op": enum("add", "remove", "replace", "move", "copy", "test"), "path": str(), "value": anyValue(),
			}, "op", "path")),
		})),
		"conflictResolution": enum(v1alpha1.ConflictAbort, v1alpha1.ConflictOverwrite),
	}, "resourceSelectors")
}

func propagationStatus() apiextensionsv1.JSONSchemaProps {
	return obj(map[string]apiextensionsv1.JSONSchemaProps{
		"observedGeneration": integer(), "conditions": conditions(), "matchedResources": integer(),
	})
}

func crd(plural, kind string, scope apiextensionsv1.ResourceScope, spec, status apiextensionsv1.JSONSchemaProps, cols []apiextensionsv1.CustomResourceColumnDefinition, short ...string) *apiextensionsv1.CustomResourceDefinition {
	return &apiextensionsv1.CustomResourceDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: plural + "." + v1alpha1.Group, Labels: map[string]string{v1alpha1.ManagedByAnnotation: v1alpha1.ManagedByValue}},
		Spec: apiextensionsv1.CustomResourceDefinitionSpec{
			Group: v1alpha1.Group,
			Scope: scope,
			Names: apiextensionsv1.CustomResourceDefinitionNames{
				Plural: plural, Kind: kind, ListKind: kind + "List", ShortNames: short, Categories: []string{"federation"},
			},
			Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{
				Name: v1alpha1.Version, Served: true, Storage: true,
				Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{
					Type: "object",
					Properties: map[string]apiextensionsv1.JSONSchemaProps{
						"apiVersion": str(), "kind": str(), "metadata": {Type: "object"},
						"spec": spec, "status": status,
					},
				}},
				Subresources:             &apiextensionsv1.CustomResourceSubresources{Status: &apiextensionsv1.CustomResourceSubresourceStatus{}},
				AdditionalPrinterColumns: cols,
			}},
		},
	}
}

// Definitions returns the CustomResourceDefinitions of the API.
func Definitions() []*apiextensionsv1.CustomResourceDefinition {
	age := apiextensionsv1.CustomResourceColumnDefinition{Name: "Age", Type: "date", JSONPath: ".metadata.creationTimestamp"}
	member := crd("memberclusters", v1alpha1.KindMemberCluster, apiextensionsv1.ClusterScoped,
		obj(map[string]apiextensionsv1.JSONSchemaProps{
			"apiEndpoint": str(),
			"secretRef":   obj(map[string]apiextensionsv1.JSONSchemaProps{"namespace": str(), "name": str()}, "namespace", "name"),
			"taints":      taints(),
		}),
		obj(map[string]apiextensionsv1.JSONSchemaProps{
			"conditions":        conditions(),
			"kubernetesVersion": str(),
			"nodes":             obj(map[string]apiextensionsv1.JSONSchemaProps{"total": integer(), "ready": integer()}),
			"allocatable":       quantities(),
			"allocated":         quantities(),
			"lastHeartbeatTime": str(),
		}),
		[]apiextensionsv1.CustomResourceColumnDefinition{
			{Name: "Ready", Type: "string", JSONPath: `.status.conditions[?(@.type=="Ready")].status`},
			{Name: "Version", Type: "string", JSONPath: ".status.kubernetesVersion"},
			{Name: "Endpoint", Type: "string", JSONPath: ".spec.apiEndpoint", Priority: 1},
			age,
		}, "mc")
	pp := crd("propagationpolicies", v1alpha1.KindPropagation, apiextensionsv1.NamespaceScoped, propagationSpec(), propagationStatus(),
		[]apiextensionsv1.CustomResourceColumnDefinition{{Name: "Matched", Type: "integer", JSONPath: ".status.matchedResources"}, age}, "pp")
	cpp := crd("clusterpropagationpolicies", v1alpha1.KindClusterPropagat, apiextensionsv1.ClusterScoped, propagationSpec(), propagationStatus(),
		[]apiextensionsv1.CustomResourceColumnDefinition{{Name: "Matched", Type: "integer", JSONPath: ".status.matchedResources"}, age}, "cpp")
	binding := func(plural, kind string, scope apiextensionsv1.ResourceScope, short string) *apiextensionsv1.CustomResourceDefinition {
		return crd(plural, kind, scope,
			obj(map[string]apiextensionsv1.JSONSchemaProps{
				"resource": obj(map[string]apiextensionsv1.JSONSchemaProps{"apiVersion": str(), "kind": str(), "namespace": str(), "name": str(), "uid": str()}, "apiVersion", "kind", "name"),
				"policy":   obj(map[string]apiextensionsv1.JSONSchemaProps{"kind": str(), "namespace": str(), "name": str()}, "kind", "name"),
				"clusters": arr(obj(map[string]apiextensionsv1.JSONSchemaProps{"name": str(), "replicas": integer()}, "name")),
			}, "resource", "policy"),
			obj(map[string]apiextensionsv1.JSONSchemaProps{
				"conditions": conditions(),
				"members": arr(obj(map[string]apiextensionsv1.JSONSchemaProps{
					"cluster": str(), "applied": boolean(), "reason": str(), "message": str(), "status": open(),
				}, "cluster")),
			}),
			[]apiextensionsv1.CustomResourceColumnDefinition{
				{Name: "Kind", Type: "string", JSONPath: ".spec.resource.kind"},
				{Name: "Applied", Type: "string", JSONPath: `.status.conditions[?(@.type=="FullyApplied")].status`},
				age,
			}, short)
	}
	rb := binding("resourcebindings", v1alpha1.KindResourceBinding, apiextensionsv1.NamespaceScoped, "rb")
	crb := binding("clusterresourcebindings", v1alpha1.KindClusterBinding, apiextensionsv1.ClusterScoped, "crb")
	return []*apiextensionsv1.CustomResourceDefinition{member, pp, cpp, rb, crb}
}

// InstallCRDs creates or updates the API's CRDs and waits until each is
// Established.
func InstallCRDs(ctx context.Context, cs apiextensionsclient.Interface) error {
	for _, want := range Definitions() {
		api := cs.ApiextensionsV1().CustomResourceDefinitions()
		cur, err := api.Get(ctx, want.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			if _, err := api.Create(ctx, want, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				return fmt.Errorf("create CRD %s: %w", want.Name, err)
			}
		case err != nil:
			return fmt.Errorf("get CRD %s: %w", want.Name, err)
		default:
			next := cur.DeepCopy()
			next.Spec = want.Spec
			if _, err := api.Update(ctx, next, metav1.UpdateOptions{}); err != nil {
				return fmt.Errorf("update CRD %s: %w", want.Name, err)
			}
		}
		err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			c, err := api.Get(ctx, want.Name, metav1.GetOptions{})
			if err != nil {
				return false, nil
			}
			for _, cond := range c.Status.Conditions {
				if cond.Type == apiextensionsv1.Established && cond.Status == apiextensionsv1.ConditionTrue {
					return true, nil
				}
			}
			return false, nil
		})
		if err != nil {
			return fmt.Errorf("CRD %s not established: %w", want.Name, err)
		}
	}
	return nil
}
