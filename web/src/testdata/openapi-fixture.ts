// A small OpenAPI v3 fixture in the shape /openapi/v3/apis/apps/v1 and a
// CRD's group document have (references wrapped in allOf with a
// description, as the API server writes them).
import type { Spec } from "../schema";

const ref = (n: string, description?: string) => (description ? { allOf: [{ $ref: `#/components/schemas/${n}` }], description } : { $ref: `#/components/schemas/${n}` });

export const apps: Spec = {
  components: {
    schemas: {
      "io.k8s.api.apps.v1.Deployment": {
        type: "object",
        description: "Deployment enables declarative updates for Pods and ReplicaSets.",
        "x-kubernetes-group-version-kind": [{ group: "apps", version: "v1", kind: "Deployment" }],
        properties: {
          apiVersion: { type: "string", description: "APIVersion defines the versioned schema." },
          kind: { type: "string", description: "Kind is a string value." },
          metadata: ref("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "Standard object's metadata."),
          spec: ref("io.k8s.api.apps.v1.DeploymentSpec", "Specification of the desired behavior of the Deployment."),
        },
      },
      "io.k8s.api.apps.v1.DeploymentSpec": {
        type: "object",
        required: ["selector", "template"],
        properties: {
          replicas: { type: "integer", format: "int32", description: "Number of desired pods." },
          revisionHistoryLimit: { type: "integer", format: "int32", description: "The number of old ReplicaSets to retain." },
          paused: { type: "boolean", description: "Indicates that the deployment is paused." },
          strategy: ref("io.k8s.api.apps.v1.DeploymentStrategy", "The deployment strategy."),
          template: ref("io.k8s.api.core.v1.PodTemplateSpec", "Template describes the pods that will be created."),
        },
      },
      "io.k8s.api.apps.v1.DeploymentStrategy": {
        type: "object",
        properties: {
          type: { type: "string", enum: ["Recreate", "RollingUpdate"], description: "Type of deployment." },
          rollingUpdate: { type: "object", properties: { maxSurge: ref("io.k8s.apimachinery.pkg.util.intstr.IntOrString", "The maximum number of pods above the desired number.") } },
        },
      },
      "io.k8s.apimachinery.pkg.util.intstr.IntOrString": { type: "string", format: "int-or-string", "x-kubernetes-int-or-string": true },
      "io.k8s.api.core.v1.PodTemplateSpec": {
        type: "object",
        properties: {
          metadata: ref("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "Standard object's metadata."),
          spec: ref("io.k8s.api.core.v1.PodSpec", "Specification of the desired behavior of the pod."),
        },
      },
      "io.k8s.api.core.v1.PodSpec": {
        type: "object",
        properties: {
          containers: { type: "array", items: ref("io.k8s.api.core.v1.Container"), description: "List of containers belonging to the pod." },
          nodeSelector: { type: "object", additionalProperties: { type: "string" }, description: "NodeSelector is a selector." },
        },
      },
      "io.k8s.api.core.v1.Container": {
        type: "object",
        required: ["name"],
        properties: {
          name: { type: "string", description: "Name of the container." },
          image: { type: "string", description: "Container image name." },
          ports: { type: "array", items: ref("io.k8s.api.core.v1.ContainerPort") },
          resources: { type: "object", properties: { limits: { type: "object", additionalProperties: ref("io.k8s.apimachinery.pkg.api.resource.Quantity") } } },
        },
      },
      "io.k8s.api.core.v1.ContainerPort": {
        type: "object",
        properties: { containerPort: { type: "integer", format: "int32", description: "Number of port to expose." }, name: { type: "string" } },
      },
      "io.k8s.apimachinery.pkg.api.resource.Quantity": { oneOf: [{ type: "string" }, { type: "number" }] },
      "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta": {
        type: "object",
        properties: {
          name: { type: "string", description: "Name must be unique within a namespace." },
          namespace: { type: "string" },
          labels: { type: "object", additionalProperties: { type: "string", default: "" }, description: "Map of string keys and values." },
          annotations: { type: "object", additionalProperties: { type: "string" } },
          resourceVersion: { type: "string" },
        },
      },
    },
  },
};

export const crd: Spec = {
  components: {
    schemas: {
      "com.example.stable.v1.CronTab": {
        type: "object",
        "x-kubernetes-group-version-kind": [{ group: "stable.example.com", version: "v1", kind: "CronTab" }],
        properties: {
          apiVersion: { type: "string" },
          kind: { type: "string" },
          metadata: ref("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "Standard object's metadata."),
          spec: {
            type: "object",
            properties: {
              cronSpec: { type: "string", description: "When to run." },
              port: { "x-kubernetes-int-or-string": true, description: "A port by number or name." },
              config: { type: "object", "x-kubernetes-preserve-unknown-fields": true, properties: { mode: { type: "string" } } },
            },
          },
        },
      },
    },
  },
};
