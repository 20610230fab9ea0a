import { lazy, Suspense, useEffect, useState } from "react";
import * as api from "./api";
import type { Route } from "./route";
import { listHref, objectHref } from "./route";
import { Logs } from "./Logs";
import { MergedLogs } from "./MergedLogs";
import { mergedKinds } from "./workloadlogs";
import type { Live } from "./live";
import { ObjectExtras } from "./Extras";
import { searchLink } from "./logsearch";
import { NodeActions, Rollout } from "./Actions";
import { Related } from "./Related";
import { rolloutKinds } from "./rollout";

const Editor = lazy(() => import("./Editor"));
const Terminal = lazy(() => import("./Terminal"));

type ObjRoute = Extract<Route, { view: "object" }>;
type Any = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

export function ObjectView({
  route,
  rules,
  resource,
  resources = [],
  live = null,
}: {
  route: ObjRoute;
  rules: api.Rule[];
  resource?: api.Resource;
  resources?: api.Resource[];
  live?: Live | null;
}) {
  const ref: api.Ref = { group: route.group, version: route.version, resource: route.resource, namespace: route.ns, name: route.name };
  const [obj, setObj] = useState<Any | null>(null);
  const [error, setError] = useState("");
  const [note, setNote] = useState("");
  const [replicas, setReplicas] = useState("");
  const load = () =>
    api.getObject(ref).then(
      (o) => {
        setObj(o);
        setReplicas(String((o as Any).spec?.replicas ?? ""));
      },
      (e) => setError(e.message),
    );
  useEffect(() => {
    load();
  }, []); // eslint-disable-line react-hooks/exhaustive-deps

  const can = (verb: string, sub = "") => api.allowed(rules, verb, route.group, sub ? `${route.resource}/${sub}` : route.resource);
  const scalable = ["deployments", "replicasets", "statefulsets", "replicationcontrollers"].includes(route.resource);
  const base = objectHref(route.group, route.version, route.resource, route.ns, route.name);
  const tab = route.tab;
  const merged = mergedKinds.includes(route.resource) && (route.group === "apps" || route.group === "batch");
  const containers: string[] = (obj?.spec?.containers ?? obj?.spec?.template?.spec?.containers ?? []).map((c: Any) => c.name);

  return (
    <section className="object">
      <h2 className="crumbs">
        <a href={listHref(route.group, route.version, route.resource, route.ns || "default")}>{resource?.kind ?? route.resource}</a> / {route.ns && `${route.ns} / `}
        <strong>{route.name}</strong>
      </h2>
      <div className="tabbar">
        <div className="tabs" role="tablist">
          <a role="tab" aria-selected={tab === "summary"} href={base}>
            Summary
          </a>
          <a role="tab" aria-selected={tab === "yaml"} href={`${base}/yaml`}>
            YAML
          </a>
          {route.resource === "pods" && (
            <a role="tab" aria-selected={tab === "logs"} href={`${base}/logs`}>
              Logs
            </a>
          )}
          {route.resource === "pods" && (
            <a role="tab" aria-selected={tab === "exec"} href={`${base}/exec`} title={can("create", "exec") ? "" : "You may not exec into this pod"}>
              Terminal
            </a>
          )}
          {merged && (
            <a role="tab" aria-selected={tab === "logs"} href={`${base}/logs`}>
              Logs (all pods)
            </a>
          )}
        </div>
        {obj && searchLink(route.resource, obj) && (
          <a className="searchlogs" href={searchLink(route.resource, obj)!}>
            Search logs
          </a>
        )}
      </div>
      {error && (
        <p role="alert" className="error">
          {error}
        </p>
      )}
      {note && <p className="note">{note}</p>}
      {tab === "summary" && obj && (
        <div>
          <div className="actions">
            {scalable && (
              <form
                onSubmit={async (e) => {
                  e.preventDefault();
                  setError("");
                  try {
                    await api.scale(ref, Number(replicas));
                    setNote(`Scaled to ${replicas}.`);
                    load();
                  } catch (err) {
                    setError((err as Error).message);
                  }
                }}
              >
                <label>
                  Replicas <input aria-label="replicas" type="number" min={0} value={replicas} onChange={(e) => setReplicas(e.target.value)} />
                </label>
                <button type="submit" disabled={!can("patch", "scale") && !can("update", "scale")}>
                  Scale
                </button>
              </form>
            )}
            {can("delete") ? (
              <button
                className="danger"
                onClick={async () => {
                  if (!confirm(`Delete ${route.resource} ${route.name}?`)) return;
                  try {
                    await api.deleteObject(ref);
                    location.hash = listHref(route.group, route.version, route.resource, route.ns || "default");
                  } catch (err) {
                    setError((err as Error).message);
                  }
                }}
              >
                Delete
              </button>
            ) : (
              <button className="danger" disabled title="You may not delete this object">
                Delete
              </button>
            )}
          </div>
          {route.resource === "nodes" && route.group === "" && <NodeActions live={live} r={ref} obj={obj} rules={rules} reload={load} />}
          <Summary obj={obj} />
          {rolloutKinds.includes(route.resource) && route.group === "apps" && <Rollout live={live} r={ref} obj={obj} rules={rules} reload={load} />}
          <ObjectExtras live={live} route={route} obj={obj} />
          <Related live={live} resource={route.resource} obj={obj} resources={resources} />
        </div>
      )}
      {tab === "yaml" && (
        <Suspense fallback={<p>Loading editor…</p>}>
          <Editor refObj={ref} canEdit={can("update")} />
        </Suspense>
      )}
      {tab === "logs" && route.resource === "pods" && <Logs ns={route.ns} pod={route.name} containers={containers} />}
      {tab === "logs" && merged && <MergedLogs r={ref} containers={containers} />}
      {tab === "exec" && route.resource === "pods" && obj && (
        <Suspense fallback={<p>Loading terminal…</p>}>
          <Terminal ns={route.ns} pod={route.name} containers={containers} />
        </Suspense>
      )}
    </section>
  );
}

function Summary({ obj }: { obj: Any }) {
  const md = obj.metadata ?? {};
  const conds: Any[] = obj.status?.conditions ?? [];
  return (
    <dl className="summary">
      <dt>Created</dt>
      <dd>{md.creationTimestamp}</dd>
      <dt>Labels</dt>
      <dd>
        {Object.entries(md.labels ?? {}).map(([k, v]) => (
          <code key={k} className="chip">
            {k}={String(v)}
          </code>
        ))}
      </dd>
      {obj.spec?.replicas !== undefined && (
        <>
          <dt>Replicas</dt>
          <dd data-testid="replicas">
            {obj.status?.readyReplicas ?? 0} ready / {obj.spec.replicas} desired
          </dd>
        </>
      )}
      {conds.length > 0 && (
        <>
          <dt>Conditions</dt>
          <dd>
            <table className="plain">
              <tbody>
                {conds.map((c) => (
                  <tr key={c.type}>
                    <td>{c.type}</td>
                    <td>{c.status}</td>
                    <td>{c.reason}</td>
                    <td>{c.message}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </dd>
        </>
      )}
    </dl>
  );
}
