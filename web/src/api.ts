// HTTP calls to the dashboard backend. The session lives in an HttpOnly
// cookie; the CSRF token is kept in memory only.
let csrf = "";
// cluster is the member cluster requests act on ("" = the host); the
// backend checks the user may read its credentials Secret.
let cluster = "";

export const currentCluster = () => cluster;

export interface Session {
  user: string;
  groups: string[] | null;
  csrf: string;
}

export class ApiError extends Error {
  constructor(
    public code: number,
    message: string,
    public reason = "",
  ) {
    super(message);
  }
}

async function call<T>(method: string, path: string, body?: BodyInit, type = "application/json"): Promise<T> {
  const headers: Record<string, string> = {};
  if (method !== "GET") headers["X-CSRF-Token"] = csrf;
  if (body !== undefined) headers["Content-Type"] = type;
  if (cluster && path !== "/api/cluster") headers["X-Skiff-Cluster"] = cluster;
  const r = await fetch(path, { method, body, headers, credentials: "same-origin" });
  const text = await r.text();
  if (!r.ok) {
    let msg = text;
    let reason = "";
    try {
      const j = JSON.parse(text);
      msg = j.message ?? text;
      reason = j.reason ?? "";
    } catch {
      /* not JSON */
    }
    if (r.status === 401 && path !== "/api/login" && path !== "/api/session") window.dispatchEvent(new CustomEvent("skiff:logout", { detail: msg }));
    throw new ApiError(r.status, msg || r.statusText, reason);
  }
  if (!text) return undefined as T;
  return (r.headers.get("Content-Type") ?? "").includes("json") ? JSON.parse(text) : (text as T);
}

export async function login(token: string): Promise<Session> {
  const s = await call<Session>("POST", "/api/login", JSON.stringify({ method: "token", token }));
  csrf = s.csrf;
  return s;
}

// CertificateInfo is what the backend made of this connection's TLS
// client certificate: enabled when the dashboard accepts certificates;
// user and groups when the certificate is verified (CN and O); error when
// one was presented but cannot log in (expired, another CA).
export interface CertificateInfo {
  enabled: boolean;
  user?: string;
  groups?: string[];
  notAfter?: string;
  error?: string;
}

export const certificateInfo = () => call<CertificateInfo>("GET", "/api/login/certificate");

// loginWithCertificate logs in as the user of the connection's verified
// client certificate; the session ends at the certificate's expiry at the
// latest.
export async function loginWithCertificate(): Promise<Session> {
  const s = await call<Session>("POST", "/api/login", JSON.stringify({ method: "certificate" }));
  csrf = s.csrf;
  return s;
}

export async function session(): Promise<Session> {
  const s = await call<Session>("GET", "/api/session");
  csrf = s.csrf;
  return s;
}

export const logout = () => call<void>("POST", "/api/logout");

export interface Resource {
  group: string;
  version: string;
  resource: string;
  kind: string;
  namespaced: boolean;
  verbs: string[] | null;
  shortNames?: string[];
}

export const discovery = () => call<Resource[]>("GET", "/api/discovery");

export interface Rule {
  verbs: string[];
  apiGroups?: string[];
  resources?: string[];
  resourceNames?: string[];
}

export const rules = (namespace: string) =>
  call<{ resourceRules: Rule[] }>("GET", `/api/rules?namespace=${encodeURIComponent(namespace)}`);

export interface Ref {
  group: string;
  version: string;
  resource: string;
  namespace: string;
  name: string;
}

const q = (r: Ref) => new URLSearchParams({ ...r }).toString();

export const getYAML = (r: Ref) => call<string>("GET", `/api/object?${q(r)}&format=yaml`);
export const getObject = (r: Ref) => call<Record<string, unknown>>("GET", `/api/object?${q(r)}`);
export const deleteObject = (r: Ref) => call<void>("DELETE", `/api/object?${q(r)}`);
export const apply = (yaml: string, namespace: string) =>
  call<{ action: string }>("POST", `/api/apply?namespace=${encodeURIComponent(namespace)}`, yaml, "application/yaml");
// The API server's OpenAPI v3 documents, read as the user (the YAML
// editor's schemas): the discovery root, then a group version's document
// by the root's serverRelativeURL.
export const openAPIRoot = () => call<{ paths: Record<string, { serverRelativeURL: string }> }>("GET", "/api/openapi/v3");
export const openAPIDoc = (serverRelativeURL: string) => call<unknown>("GET", `/api${serverRelativeURL}`);
export const scale = (r: Ref, replicas: number) => call<unknown>("POST", "/api/scale", JSON.stringify({ ...r, replicas }));
/** patch applies a merge patch (an object) or a JSON patch (a list of operations) as the user. */
export const patch = (r: Ref, p: unknown) =>
  call<Record<string, unknown>>("POST", "/api/patch", JSON.stringify({ ...r, type: Array.isArray(p) ? "json" : "merge", patch: p }));
/** evict evicts a pod through pods/eviction as the user (a PodDisruptionBudget's refusal is an ApiError with code 429). */
export const evict = (namespace: string, name: string) => call<void>("POST", "/api/evict", JSON.stringify({ namespace, name }));

/** allowed reports whether a SelfSubjectRulesReview grants verb on group/resource. */
export function allowed(rs: Rule[], verb: string, group: string, resource: string): boolean {
  return rs.some(
    (r) =>
      (r.verbs.includes("*") || r.verbs.includes(verb)) &&
      (r.apiGroups ?? []).some((g) => g === "*" || g === group) &&
      (r.resources ?? []).some((x) => x === "*" || x === resource) &&
      !(r.resourceNames && r.resourceNames.length > 0),
  );
}

/** switchCluster asks the backend whether the user may use member name ("" = the host) and whether it answers; then every request names it. */
export async function switchCluster(name: string): Promise<{ cluster: string; version?: string }> {
  const r = await call<{ cluster: string; version?: string }>("POST", "/api/cluster", JSON.stringify({ cluster: name }));
  cluster = r.cluster;
  return r;
}

/** search asks GET /api/search (search.ts builds the URL). */
export const search = <T>(url: string) => call<T>("GET", url);

/** create creates one YAML document as the user (kubectl create: an existing object is a 409); namespace is for a document without one. */
export const create = (yaml: string, namespace: string) =>
  call<{ action: string; object: { apiVersion?: string; kind?: string; metadata?: { name?: string; namespace?: string } } }>(
    "POST",
    `/api/apply?create=1&namespace=${encodeURIComponent(namespace)}`,
    yaml,
    "application/yaml",
  );
