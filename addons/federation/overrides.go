package federation

import (
	"encoding/json"
	"fmt"
	"slices"

	"github.com/skiffhq/skiff/addons/federation/apis/v1alpha1"
	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
)

// podSpecPath is where a kind keeps its pod spec (nil = none).
func podSpecPath(kind string) []string {
	switch kind {
	case "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "ReplicationController":
		return []string{"spec", "template", "spec"}
	case "CronJob":
		return []string{"spec", "jobTemplate", "spec", "template", "spec"}
	case "Pod":
		return []string{"spec"}
	}
	return nil
}

// overrideApplies reports whether o selects member m.
func overrideApplies(o v1alpha1.ClusterOverride, m memberInfo) (bool, error) {
	if len(o.ClusterNames) > 0 && !slices.Contains(o.ClusterNames, m.Name) {
		return false, nil
	}
	if o.ClusterSelector != nil {
		sel, err := metav1.LabelSelectorAsSelector(o.ClusterSelector)
		if err != nil {
			return false, fmt.Errorf("override clusterSelector: %w", err)
		}
		if !sel.Matches(labels.Set(m.Labels)) {
			return false, nil
		}
	}
	return true, nil
}

// applyOverrides changes obj (a copy for member m) with every override of
// the policy that selects m, in order.
func applyOverrides(obj *unstructured.Unstructured, m memberInfo, overrides []v1alpha1.ClusterOverride) error {
	for i, o := range overrides {
		ok, err := overrideApplies(o, m)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		if err := applyOverride(obj, o); err != nil {
			return fmt.Errorf("overrides[%d]: %w", i, err)
		}
	}
	return nil
}

func applyOverride(obj *unstructured.Unstructured, o v1alpha1.ClusterOverride) error {
	if len(o.ImageOverrider) > 0 || len(o.ArgsOverrider) > 0 {
		path := podSpecPath(obj.GetKind())
		if path == nil {
			return fmt.Errorf("image and args overriders need a pod template; %s has none", obj.GetKind())
		}
		cpath := append(slices.Clone(path), "containers")
		cs, _, err := unstructured.NestedSlice(obj.Object, cpath...)
		if err != nil {
			return fmt.Errorf("containers: %w", err)
		}
		for i, c := range cs {
			cm, ok := c.(map[string]any)
			if !ok {
				continue
			}
			name, _ := cm["name"].(string)
			for _, io := range o.ImageOverrider {
				if io.ContainerName == "" || io.ContainerName == name {
					cm["image"] = io.Image
				}
			}
			for _, ao := range o.ArgsOverrider {
				if ao.ContainerName != "" && ao.ContainerName != name {
					continue
				}
				var args []any
				if ao.Operator != "replace" {
					args, _ = cm["args"].([]any)
				}
				for _, v := range ao.Value {
					args = append(args, v)
				}
				cm["args"] = args
			}
			cs[i] = cm
		}
		if err := unstructured.SetNestedSlice(obj.Object, cs, cpath...); err != nil {
			return err
		}
	}
	if lo := o.LabelsOverrider; lo != nil {
		l := obj.GetLabels()
		if l == nil {
			l = map[string]string{}
		}
		for k, v := range lo.Set {
			l[k] = v
		}
		for _, k := range lo.Remove {
			delete(l, k)
		}
		obj.SetLabels(l)
	}
	if len(o.JSONPatch) > 0 {
		patch, err := json.Marshal(o.JSONPatch)
		if err != nil {
			return err
		}
		p, err := jsonpatch.DecodePatch(patch)
		if err != nil {
			return fmt.Errorf("jsonPatch: %w", err)
		}
		doc, err := json.Marshal(obj.Object)
		if err != nil {
			return err
		}
		out, err := p.Apply(doc)
		if err != nil {
			return fmt.Errorf("jsonPatch: %w", err)
		}
		next := map[string]any{}
		if err := json.Unmarshal(out, &next); err != nil {
			return err
		}
		obj.Object = next
	}
	return nil
}
