// Package v1alpha1 holds the Go types of the federation.skiff.io/v1alpha1
// API (MemberCluster, PropagationPolicy, ClusterPropagationPolicy and
// ResourceBinding). They are served as custom resources and read and
// written through the dynamic client: FromUnstructured and ToUnstructured
// convert, no generated clients exist.
package v1alpha1

import (
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Group and Version of the API.
const (
	Group   = "federation.skiff.io"
	Version = "v1alpha1"
)

// GroupVersion is federation.skiff.io/v1alpha1.
var GroupVersion = schema.GroupVersion{Group: Group, Version: Version}

// Resources of the API.
var (
	MemberClusterGVR            = GroupVersion.WithResource("memberclusters")
	PropagationPolicyGVR        = GroupVersion.WithResource("propagationpolicies")
	ClusterPropagationPolicyGVR = GroupVersion.WithResource("clusterpropagationpolicies")
	ResourceBindingGVR          = GroupVersion.WithResource("resourcebindings")
	// ClusterResourceBindingGVR holds the bindings of cluster-scoped
	// objects (same schema as ResourceBinding).
	ClusterResourceBindingGVR = GroupVersion.WithResource("clusterresourcebindings")
)

// Annotations, labels, finalizers and taints the add-on sets.
const (
	// ManagedByAnnotation marks an object on a member as made by
	// federation; its value is ManagedByValue.
	ManagedByAnnotation = Group + "/managed-by"
	ManagedByValue      = "skiff-federation"
	// SourceAnnotation names the host object a member object comes from
	// (<group>/<kind>/<namespace>/<name>).
	SourceAnnotation = Group + "/source"
	// RequiredByAnnotation lists (comma-separated) the sources a
	// dependency (ConfigMap, Secret) was propagated for.
	RequiredByAnnotation = Group + "/required-by"
	// AppliedHashAnnotation is the hash of the last applied desired state.
	AppliedHashAnnotation = Group + "/applied-hash"
	// CleanupFinalizer holds a host object until its copies are removed.
	CleanupFinalizer = Group + "/cleanup"
	// NotReadyTaintKey is set (NoExecute) on a member that fails its
	// health checks for the failure grace period.
	NotReadyTaintKey = Group + "/not-ready"
	// ZoneLabel and RegionLabel on a MemberCluster place it.
	ZoneLabel   = "topology.kubernetes.io/zone"
	RegionLabel = "topology.kubernetes.io/region"
)

// Condition types and values.
const (
	ConditionReady      = "Ready"
	ConditionScheduled  = "Scheduled"
	ConditionApplied    = "FullyApplied"
	ConditionConflict   = "Conflict"
	ConditionMatched    = "Matched"
	ReplicaDuplicated   = "Duplicated"
	ReplicaDivided      = "Divided"
	DynamicAvailable    = "AvailableReplicas"
	ConflictAbort       = "Abort"
	ConflictOverwrite   = "Overwrite"
	KindMemberCluster   = "MemberCluster"
	KindPropagation     = "PropagationPolicy"
	KindClusterPropagat = "ClusterPropagationPolicy"
	KindResourceBinding = "ResourceBinding"
	KindClusterBinding  = "ClusterResourceBinding"
)

// MemberCluster is a cluster federation places workloads on
// (cluster-scoped). Its zone and region are the labels ZoneLabel and
// RegionLabel.
type MemberCluster struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              MemberClusterSpec   `json:"spec,omitempty"`
	Status            MemberClusterStatus `json:"status,omitempty"`
}

// MemberClusterSpec says how to reach a member.
type MemberClusterSpec struct {
	// APIEndpoint is the member's API server URL; it overrides the server
	// of a kubeconfig in the Secret.
	APIEndpoint string `json:"apiEndpoint,omitempty"`
	// SecretRef names a Secret in the host cluster holding either
	// `kubeconfig`, or `token` and `ca.crt`.
	SecretRef *SecretReference `json:"secretRef,omitempty"`
	// Taints keep workloads off the member unless a policy tolerates them.
	// The add-on manages NotReadyTaintKey itself.
	Taints []corev1.Taint `json:"taints,omitempty"`
}

// SecretReference names a Secret.
type SecretReference struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

// MemberClusterStatus is the member's health and capacity. It never holds
// credentials.
type MemberClusterStatus struct {
	Conditions        []metav1.Condition  `json:"conditions,omitempty"`
	KubernetesVersion string              `json:"kubernetesVersion,omitempty"`
	Nodes             *NodeSummary        `json:"nodes,omitempty"`
	Allocatable       corev1.ResourceList `json:"allocatable,omitempty"`
	Allocated         corev1.ResourceList `json:"allocated,omitempty"`
	// LastHeartbeatTime is the time of the last successful health check.
	LastHeartbeatTime *metav1.Time `json:"lastHeartbeatTime,omitempty"`
}

// NodeSummary counts a member's nodes.
type NodeSummary struct {
	Total int32 `json:"total"`
	Ready int32 `json:"ready"`
}

// PropagationPolicy (namespaced) places resources of its namespace;
// ClusterPropagationPolicy (cluster-scoped, same spec) places resources of
// any namespace.
type PropagationPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              PropagationSpec   `json:"spec,omitempty"`
	Status            PropagationStatus `json:"status,omitempty"`
}

// PropagationSpec says which resources go where and how.
type PropagationSpec struct {
	ResourceSelectors []ResourceSelector `json:"resourceSelectors"`
	Placement         Placement          `json:"placement,omitempty"`
	ReplicaScheduling *ReplicaScheduling `json:"replicaScheduling,omitempty"`
	Overrides         []ClusterOverride  `json:"overrides,omitempty"`
	// ConflictResolution is Abort (default: objects on a member not made
	// by federation are reported, not touched) or Overwrite.
	ConflictResolution string `json:"conflictResolution,omitempty"`
}

// ResourceSelector selects host objects by apiVersion and kind, and by
// name or label selector. Namespace narrows a ClusterPropagationPolicy.
type ResourceSelector struct {
	APIVersion    string                `json:"apiVersion"`
	Kind          string                `json:"kind"`
	Namespace     string                `json:"namespace,omitempty"`
	Name          string                `json:"name,omitempty"`
	LabelSelector *metav1.LabelSelector `json:"labelSelector,omitempty"`
}

// Placement selects members: all of ClusterNames (when set) and
// ClusterSelector (when set) must hold, and the member's taints must be
// tolerated.
type Placement struct {
	ClusterNames    []string              `json:"clusterNames,omitempty"`
	ClusterSelector *metav1.LabelSelector `json:"clusterSelector,omitempty"`
	Tolerations     []corev1.Toleration   `json:"tolerations,omitempty"`
}

// ReplicaScheduling says how spec.replicas is spread.
type ReplicaScheduling struct {
	// Type is Duplicated (each member runs spec.replicas, the default) or
	// Divided (members share spec.replicas).
	Type string `json:"type,omitempty"`
	// WeightPreference applies to Divided; nil = equal weights.
	WeightPreference *WeightPreference `json:"weightPreference,omitempty"`
}

// WeightPreference: static weights per member, or Dynamic
// "AvailableReplicas" (weights = how many replicas fit in each member's
// free capacity).
type WeightPreference struct {
	StaticWeights []StaticWeight `json:"staticWeights,omitempty"`
	Dynamic       string         `json:"dynamic,omitempty"`
}

// StaticWeight is one member's weight. Members without one weigh 0.
type StaticWeight struct {
	Cluster string `json:"cluster"`
	Weight  int64  `json:"weight"`
}

// ClusterOverride changes the copy sent to the selected members, in this
// order: images, args, labels, JSON patch.
type ClusterOverride struct {
	ClusterNames    []string              `json:"clusterNames,omitempty"`
	ClusterSelector *metav1.LabelSelector `json:"clusterSelector,omitempty"`
	ImageOverrider  []ImageOverride       `json:"imageOverrider,omitempty"`
	ArgsOverrider   []ArgsOverride        `json:"argsOverrider,omitempty"`
	LabelsOverrider *LabelsOverride       `json:"labelsOverrider,omitempty"`
	JSONPatch       []JSONPatchOperation  `json:"jsonPatch,omitempty"`
}

// ImageOverride replaces the image of a pod template's container
// (ContainerName empty = every container).
type ImageOverride struct {
	ContainerName string `json:"containerName,omitempty"`
	Image         string `json:"image"`
}

// ArgsOverride appends to or replaces a container's args.
type ArgsOverride struct {
	ContainerName string   `json:"containerName,omitempty"`
	Operator      string   `json:"operator,omitempty"` // append (default) | replace
	Value         []string `json:"value,omitempty"`
}

// LabelsOverride sets and removes labels of the object.
type LabelsOverride struct {
	Set    map[string]string `json:"set,omitempty"`
	Remove []string          `json:"remove,omitempty"`
}

// JSONPatchOperation is one RFC 6902 operation.
type JSONPatchOperation struct {
	Op    string          `json:"op"`
	Path  string          `json:"path"`
	Value json.RawMessage `json:"value,omitempty"`
}

// PropagationStatus reports what a policy matches.
type PropagationStatus struct {
	ObservedGeneration int64              `json:"observedGeneration,omitempty"`
	Conditions         []metav1.Condition `json:"conditions,omitempty"`
	// MatchedResources counts host objects this policy places.
	MatchedResources int32 `json:"matchedResources,omitempty"`
}

// ResourceBinding (namespaced, named <name>-<kind>) is the per-member view
// of one propagated object: where it goes, with how many replicas, and each
// member's own status.
type ResourceBinding struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              ResourceBindingSpec   `json:"spec,omitempty"`
	Status            ResourceBindingStatus `json:"status,omitempty"`
}

// ResourceBindingSpec is the placement decision.
type ResourceBindingSpec struct {
	Resource ObjectReference `json:"resource"`
	Policy   PolicyReference `json:"policy"`
	Clusters []TargetCluster `json:"clusters,omitempty"`
}

// ObjectReference names a host object.
type ObjectReference struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Namespace  string `json:"namespace,omitempty"`
	Name       string `json:"name"`
	UID        string `json:"uid,omitempty"`
}

// PolicyReference names the policy that won.
type PolicyReference struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
}

// TargetCluster is one member and its replicas (nil when the object has
// none).
type TargetCluster struct {
	Name     string `json:"name"`
	Replicas *int32 `json:"replicas,omitempty"`
}

// ResourceBindingStatus aggregates the members' states.
type ResourceBindingStatus struct {
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	Members    []MemberStatus     `json:"members,omitempty"`
}

// MemberStatus is one member's copy.
type MemberStatus struct {
	Cluster string `json:"cluster"`
	// Applied is true when the member holds the desired state.
	Applied bool   `json:"applied"`
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
	// Status is the member object's own .status.
	Status map[string]any `json:"status,omitempty"`
}

// FromUnstructured decodes u into out (a pointer to one of the types).
func FromUnstructured(u *unstructured.Unstructured, out any) error {
	b, err := json.Marshal(u.Object)
	if err != nil {
		return fmt.Errorf("encode %s: %w", u.GetName(), err)
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("decode %s %s: %w", u.GetKind(), u.GetName(), err)
	}
	return nil
}

// ToUnstructured encodes in (one of the types) as unstructured content.
func ToUnstructured(in any) (*unstructured.Unstructured, error) {
	b, err := json.Marshal(in)
	if err != nil {
		return nil, err
	}
	u := &unstructured.Unstructured{}
	if err := json.Unmarshal(b, &u.Object); err != nil {
		return nil, err
	}
	return u, nil
}
