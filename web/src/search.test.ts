import { describe, expect, it } from "vitest";
import { moveSelection, rememberKind, resultHref, searchNote, searchURL, type SearchResponse } from "./search";
import { mayCreate, splitDocs, createdHref } from "./create";
import { parseRoute } from "./route";

describe("search", () => {
  it("remembers custom kinds the user opened, not common ones", () => {
    let k: string[] = [];
    k = rememberKind(k, parseRoute("#/r/core/v1/pods?ns=default"));
    expect(k).toEqual([]);
    k = rememberKind(k, parseRoute("#/r/example.com/v1/widgets?ns=default"));
    k = rememberKind(k, parseRoute("#/o/rbac.authorization.k8s.io/v1/roles/default/r"));
    k = rememberKind(k, parseRoute("#/r/example.com/v1/widgets?ns=x"));
    expect(k).toEqual(["example.com/v1/widgets", "rbac.authorization.k8s.io/v1/roles"]);
    for (let i = 0; i < 20; i++) k = rememberKind(k, parseRoute(`#/r/g${i}.io/v1/things`));
    expect(k.length).toBe(10);
    expect(k[0]).toBe("g19.io/v1/things");
    expect(rememberKind(k, parseRoute("#/overview"))).toBe(k);
  });
  it("builds the request", () => {
    expect(searchURL(" web ", "default", [])).toBe("/api/search?q=web&ns=default&limit=20");
    expect(searchURL("a b", "", ["example.com/v1/widgets"])).toBe("/api/search?q=a+b&ns=&limit=20&kinds=example.com%2Fv1%2Fwidgets");
  });
  it("links results", () => {
    expect(resultHref({ group: "", version: "v1", resource: "configmaps", kind: "ConfigMap", namespaced: true, namespace: "default", name: "cfg", score: 1 })).toBe("#/o/core/v1/configmaps/default/cfg");
    expect(resultHref({ group: "", version: "v1", resource: "nodes", kind: "Node", namespaced: false, name: "n1", score: 1 })).toBe("#/o/core/v1/nodes/_/n1");
  });
  it("moves the selection around", () => {
    expect(moveSelection(0, -1, 3)).toBe(2);
    expect(moveSelection(2, 1, 3)).toBe(0);
    expect(moveSelection(1, 1, 0)).toBe(0);
  });
  it("explains what was not searched", () => {
    const r: SearchResponse = { results: [], matched: 0, searched: ["pods"], forbidden: ["secrets", "nodes"], pending: ["cronjobs"], tookMs: 1 };
    expect(searchNote(r)).toBe("not searched (no list permission): secrets, nodes; still loading: cronjobs");
  });
});

describe("create", () => {
  it("splits multi-document YAML", () => {
    const docs = splitDocs("# header\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n---   \n\n--- # c\nkind: Service\nmetadata: {name: b}\n---\n");
    expect(docs.map((d) => [d.index, d.label])).toEqual([
      [2, "ConfigMap a"],
      [4, "Service b"],
    ]);
    expect(docs[0].text).toBe("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n");
    expect(splitDocs("kind: Pod\nmetadata:\n  name: p\n  labels:\n    name: x\n").map((d) => d.label)).toEqual(["Pod p"]);
    expect(splitDocs("\n# only a comment\n")).toEqual([]);
    // "---" inside a value is not a separator.
    expect(splitDocs("kind: ConfigMap\ndata:\n  x: a---b\n").length).toBe(1);
  });
  it("may create: not for the self reviews every user has", () => {
    const basic = [{ verbs: ["create"], apiGroups: ["authorization.k8s.io"], resources: ["selfsubjectaccessreviews", "selfsubjectrulesreviews"] }];
    const view = [{ verbs: ["get", "list", "watch"], apiGroups: [""], resources: ["pods"] }];
    expect(mayCreate([...basic, ...view])).toBe(false);
    expect(mayCreate([...basic, { verbs: ["create"], apiGroups: [""], resources: ["configmaps"] }])).toBe(true);
    expect(mayCreate([{ verbs: ["*"], apiGroups: ["*"], resources: ["*"] }])).toBe(true);
  });
  it("links a created object through discovery", () => {
    const rs = [
      { group: "", version: "v1", resource: "configmaps", kind: "ConfigMap", namespaced: true, verbs: [] },
      { group: "apps", version: "v1", resource: "deployments", kind: "Deployment", namespaced: true, verbs: [] },
      { group: "", version: "v1", resource: "namespaces", kind: "Namespace", namespaced: false, verbs: [] },
    ];
    expect(createdHref({ apiVersion: "v1", kind: "ConfigMap", metadata: { name: "a", namespace: "default" } }, rs)).toBe("#/o/core/v1/configmaps/default/a");
    expect(createdHref({ apiVersion: "apps/v1", kind: "Deployment", metadata: { name: "w", namespace: "x" } }, rs)).toBe("#/o/apps/v1/deployments/x/w");
    expect(createdHref({ apiVersion: "v1", kind: "Namespace", metadata: { name: "n" } }, rs)).toBe("#/o/core/v1/namespaces/_/n");
    expect(createdHref({ apiVersion: "x/v1", kind: "Nope", metadata: { name: "n" } }, rs)).toBeNull();
  });
});
