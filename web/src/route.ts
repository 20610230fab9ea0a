// Deep links: every view is a hash URL.
//   #/overview
//   #/r/<group|core>/<version>/<resource>?ns=<namespace>&q=<filter>
//   #/o/<group|core>/<version>/<resource>/<namespace|_>/<name>[/yaml|/logs|/exec] (logs of a workload: all its pods merged)
//   #/logs?q=&range=&f=... (log search; the state is parsed by logsearch.ts)
//   #/federation (member clusters and placement; the host's)
//   #/create?ns=<namespace> (create from YAML; ns: for documents without one)

export type Route =
  | { view: "overview"; ns: string }
  | { view: "list"; group: string; version: string; resource: string; ns: string; q: string }
  | { view: "object"; group: string; version: string; resource: string; ns: string; name: string; tab: string }
  | { view: "logsearch"; ns: string; query: string }
  | { view: "federation"; ns: string }
  | { view: "create"; ns: string };

export function parseRoute(hash: string): Route {
  const [path, query = ""] = hash.replace(/^#/, "").split("?");
  const params = new URLSearchParams(query);
  const ns = params.get("ns") ?? "default";
  const p = path.split("/").filter(Boolean).map(decodeURIComponent);
  const group = (g: string) => (g === "core" ? "" : g);
  if (p[0] === "logs") return { view: "logsearch", ns, query };
  if (p[0] === "federation") return { view: "federation", ns };
  if (p[0] === "create") return { view: "create", ns };
  if (p[0] === "r" && p.length >= 4) return { view: "list", group: group(p[1]), version: p[2], resource: p[3], ns, q: params.get("q") ?? "" };
  if (p[0] === "o" && p.length >= 6)
    return { view: "object", group: group(p[1]), version: p[2], resource: p[3], ns: p[4] === "_" ? "" : p[4], name: p[5], tab: p[6] ?? "summary" };
  return { view: "overview", ns };
}

export function listHref(group: string, version: string, resource: string, ns: string, q = ""): string {
  const qs = new URLSearchParams({ ns });
  if (q) qs.set("q", q);
  return `#/r/${group || "core"}/${version}/${resource}?${qs}`;
}

export function objectHref(group: string, version: string, resource: string, ns: string, name: string, tab = ""): string {
  const parts = ["o", group || "core", version, resource, ns || "_", name].map(encodeURIComponent);
  return "#/" + parts.join("/") + (tab ? "/" + tab : "");
}
