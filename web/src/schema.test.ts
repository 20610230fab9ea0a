import { describe, expect, it } from "vitest";
import { Schemas, ANY } from "./schema";
import { lint, keyContext, completeKey, completeValue, kindOf, siblingKeys } from "./yamlschema";
import { apps, crd } from "./testdata/openapi-fixture";

const s = new Schemas([apps, crd]);
const deploy = s.forKind("apps/v1", "Deployment")!;
const cron = s.forKind("stable.example.com/v1", "CronTab")!;

describe("schema resolution", () => {
  it("finds kinds by x-kubernetes-group-version-kind", () => {
    expect(deploy).toBeDefined();
    expect(cron).toBeDefined();
    expect(s.forKind("v1", "Deployment")).toBeUndefined();
  });
  it("follows $ref wrapped in allOf, keeping the outer description", () => {
    const spec = s.at(deploy, ["spec"]);
    expect(s.resolve(spec).description).toBe("Specification of the desired behavior of the Deployment.");
    expect(s.fields(spec).map((f) => f.name)).toEqual(["paused", "replicas", "revisionHistoryLimit", "strategy", "template"]);
    expect(s.fields(spec).find((f) => f.name === "replicas")).toEqual({ name: "replicas", type: "integer", description: "Number of desired pods.", required: false });
    expect(s.fields(spec).find((f) => f.name === "template")!.required).toBe(true);
  });
  it("walks lists and maps", () => {
    const c = s.at(deploy, ["spec", "template", "spec", "containers", 0]);
    expect(s.fields(c).map((f) => f.name)).toContain("image");
    expect(s.typeName(s.at(deploy, ["spec", "template", "spec", "containers"]))).toBe("[]Container");
    expect(s.typeName(s.at(deploy, ["metadata", "labels"]))).toBe("map[string]string");
    expect(s.typeName(s.at(deploy, ["metadata", "labels", "app"]))).toBe("string");
    expect(s.at(deploy, ["spec", "replicaz"])).toBeUndefined();
    expect(s.at(deploy, ["spec", "replicaz", "x"])).toBeUndefined();
  });
  it("x-kubernetes-preserve-unknown-fields takes any field, and known fields keep their schema", () => {
    expect(s.at(cron, ["spec", "config", "anything", "deeper"])).toBe(ANY);
    expect(s.typeName(s.at(cron, ["spec", "config", "mode"]))).toBe("string");
    expect(s.validate(cron, { spec: { config: { whatever: [1, { a: 2 }] } } })).toEqual([]);
  });
  it("int-or-string takes integers and strings only", () => {
    const port = s.at(cron, ["spec", "port"]);
    expect(s.typeName(port)).toBe("int-or-string");
    expect(s.checkScalar(port, 8080)).toBe("");
    expect(s.checkScalar(port, "http")).toBe("");
    expect(s.checkScalar(port, true)).toBe("expected integer or string, got boolean");
    expect(s.checkScalar(s.at(deploy, ["spec", "strategy", "rollingUpdate", "maxSurge"]), "25%")).toBe("");
  });
  it("checks scalar types, oneOf and enums", () => {
    const replicas = s.at(deploy, ["spec", "replicas"]);
    expect(s.checkScalar(replicas, 3)).toBe("");
    expect(s.checkScalar(replicas, "3")).toBe("expected integer, got string");
    expect(s.checkScalar(replicas, 1.5)).toBe("expected integer, got number");
    expect(s.checkScalar(replicas, null)).toBe("");
    const q = s.at(deploy, ["spec", "template", "spec", "containers", 0, "resources", "limits", "cpu"]);
    expect(s.checkScalar(q, "500m")).toBe("");
    expect(s.checkScalar(q, 2)).toBe("");
    expect(s.checkScalar(q, false)).toBe("expected string or number, got boolean");
    expect(s.checkScalar(s.at(deploy, ["spec", "strategy", "type"]), "Sideways")).toMatch(/^unsupported value "Sideways"/);
  });
  it("validate reports unknown fields with their path and wrong types", () => {
    const issues = s.validate(deploy, { apiVersion: "apps/v1", kind: "Deployment", spec: { replicaz: 2, paused: "no", template: { spec: { containers: [{ name: "a", imag: "x" }] } } } });
    expect(issues).toEqual([
      { path: ["spec", "replicaz"], kind: "unknown", message: 'unknown field "spec.replicaz"' },
      { path: ["spec", "paused"], kind: "type", message: "expected boolean, got string" },
      { path: ["spec", "template", "spec", "containers", 0, "imag"], kind: "unknown", message: 'unknown field "spec.template.spec.containers[0].imag"' },
    ]);
    expect(s.validate(deploy, { spec: { template: { spec: { containers: { name: "a" } } } } })[0].message).toBe("expected []Container, got object");
  });
  it("an untyped schema (any JSON) and a named object type without properties (RawExtension) take anything", () => {
    const t = new Schemas([
      {
        components: {
          schemas: {
            A: { type: "object", "x-kubernetes-group-version-kind": [{ group: "", version: "v1", kind: "A" }], properties: { json: { description: "any JSON" }, raw: { $ref: "#/components/schemas/Raw" }, inline: { type: "object" } } },
            Raw: { type: "object", description: "An embedded object of any kind." },
          },
        },
      },
    ]);
    const a = t.forKind("v1", "A");
    expect(t.validate(a, { json: { x: [1] }, raw: { apiVersion: "v1", kind: "Pod", spec: {} } })).toEqual([]);
    expect(t.validate(a, { json: 3 })).toEqual([]);
    // An inline object without properties in a CRD schema is pruned by the API server: its fields are unknown.
    expect(t.validate(a, { inline: { x: 1 } })).toEqual([{ path: ["inline", "x"], kind: "unknown", message: 'unknown field "inline.x"' }]);
  });
  it("an unresolvable $ref lets anything through rather than inventing errors", () => {
    const t = new Schemas([{ components: { schemas: { A: { type: "object", "x-kubernetes-group-version-kind": [{ group: "", version: "v1", kind: "A" }], properties: { b: { $ref: "#/components/schemas/Missing" } } } } } }]);
    expect(t.validate(t.forKind("v1", "A"), { b: { c: 1 } })).toEqual([]);
  });
});

const doc = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels:
    app: web
spec:
  replicas: 2
  template:
    spec:
      containers:
      - name: web
        image: nginx
        ports:
        - containerPort: 80
`;

describe("YAML lint", () => {
  it("a valid document has no diagnostics", () => {
    expect(lint(doc, s)).toEqual([]);
  });
  it("marks an unknown field on its key", () => {
    const t = doc.replace("replicas: 2", "replicaz: 2");
    const d = lint(t, s);
    expect(d).toHaveLength(1);
    expect(d[0].message).toBe('unknown field "spec.replicaz"');
    expect(t.slice(d[0].from, d[0].to)).toBe("replicaz");
  });
  it("marks wrong scalar types on the value, YAML 1.1 booleans included", () => {
    const t = doc.replace("replicas: 2", 'replicas: "2"').replace("image: nginx", "image: yes");
    const d = lint(t, s);
    expect(d.map((x) => [t.slice(x.from, x.to), x.message])).toEqual([
      ['"2"', "spec.replicas: expected integer, got string"],
      ["yes", "spec.template.spec.containers[0].image: expected string, got boolean"],
    ]);
  });
  it("reports YAML syntax errors with their place and skips the schema", () => {
    const t = doc.replace("  replicas: 2", "  replicas: 2\n bad: [");
    const d = lint(t, s);
    expect(d.length).toBeGreaterThan(0);
    expect(d.every((x) => x.message.startsWith("YAML syntax:"))).toBe(true);
    expect(d[0].from).toBeGreaterThan(t.indexOf("replicas"));
  });
  it("without a schema for the kind only syntax is checked", () => {
    expect(lint(doc.replace("Deployment", "Unknown").replace("replicas", "replicaz"), s)).toEqual([]);
    expect(kindOf(doc)).toEqual({ apiVersion: "apps/v1", kind: "Deployment" });
  });
});

describe("completion context", () => {
  const at = (t: string) => {
    const pos = t.indexOf("|");
    return { text: t.slice(0, pos) + t.slice(pos + 1), pos };
  };
  it("finds the path from indentation, through list items in both styles", () => {
    let { text, pos } = at(doc.replace("  replicas: 2", "  rep|"));
    expect(keyContext(text, pos)).toEqual({ path: ["spec"], prefix: "rep", from: text.indexOf("rep") });
    ({ text, pos } = at(doc.replace("        image: nginx", "        ima|")));
    expect(keyContext(text, pos)!.path).toEqual(["spec", "template", "spec", "containers", 0]);
    ({ text, pos } = at(doc + "          na|"));
    expect(keyContext(text, pos)!.path).toEqual(["spec", "template", "spec", "containers", 0, "ports", 0]);
    ({ text, pos } = at("kind: A\nspec:\n  items:\n    - a: 1\n      |"));
    expect(keyContext(text, pos)!.path).toEqual(["spec", "items", 0]);
    ({ text, pos } = at("kind: A\nspec:\n  items:\n  - |"));
    expect(keyContext(text, pos)!.path).toEqual(["spec", "items", 0]);
    ({ text, pos } = at("kind: A\n|"));
    expect(keyContext(text, pos)!.path).toEqual([]);
  });
  it("is null inside a value", () => {
    const { text, pos } = at(doc.replace("image: nginx", "image: ngi|nx"));
    expect(keyContext(text, pos)).toBeNull();
  });
  it("knows the keys already written in the same mapping and list item", () => {
    let { text, pos } = at(doc.replace("  replicas: 2", "  |"));
    expect([...siblingKeys(text, pos)].sort()).toEqual(["template"]);
    ({ text, pos } = at(doc.replace("        image: nginx", "        |\n        image: nginx")));
    expect([...siblingKeys(text, pos)].sort()).toEqual(["image", "name", "ports"]);
    ({ text, pos } = at(doc + "      - |"));
    expect([...siblingKeys(text, pos)]).toEqual([]);
  });
  it("offers the fields of the schema at the cursor with type and description, less those already there", () => {
    const r = at(doc.replace("  replicas: 2", "  replicas: 2\n  re|"));
    expect(completeKey(r.text, r.pos, s)!.fields.map((f) => f.name)).toEqual(["revisionHistoryLimit"]);
    const { text, pos } = at(doc.replace("  replicas: 2", "  rep|"));
    const c = completeKey(text, pos, s)!;
    expect(c.fields).toEqual([{ name: "replicas", type: "integer", description: "Number of desired pods.", required: false }]);
    const m = at(doc.replace("  name: web\n", "  |\n"));
    expect(completeKey(m.text, m.pos, s)!.fields.map((f) => f.name)).toEqual(["annotations", "name", "namespace", "resourceVersion"]);
  });
});

describe("value completion", () => {
  const at = (t: string) => {
    const pos = t.indexOf("|");
    return { text: t.slice(0, pos) + t.slice(pos + 1), pos };
  };
  it("offers an enum's values and booleans after the key", () => {
    let { text, pos } = at(doc.replace("  replicas: 2", "  replicas: 2\n  strategy:\n    type: R|"));
    expect(completeValue(text, pos, s)).toEqual({ from: pos - 1, values: ["Recreate", "RollingUpdate"], path: ["spec", "strategy", "type"] });
    ({ text, pos } = at(doc.replace("  replicas: 2", "  paused: |")));
    expect(completeValue(text, pos, s)!.values).toEqual(["true", "false"]);
    ({ text, pos } = at(doc.replace("  replicas: 2", "  replicas: |")));
    expect(completeValue(text, pos, s)).toBeNull();
  });
});
