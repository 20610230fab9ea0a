// The detail page's context: the object's events (live, newest first),
// its owners and owned objects (by ownerReferences uid), and related
// objects (related.ts). Each list is a live subscription filtered in the
// backend and bounded by its page.
import type * as api from "./api";
import { useLive, useNow } from "./hooks";
import type { Live, Obj, Query } from "./live";
import { objectHref } from "./route";
import { age, podStatus } from "./columns";
import { eventTime, eventsQuery, ownedQueries, refTarget, relatedSections, sortEvents } from "./related";

type Any = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const hrefOf = (q: Query, o: Obj) => objectHref(q.group, q.version, q.resource, o.metadata.namespace ?? "", o.metadata.name);

/** Links is one live list of objects as links (pods with their status). */
function Links({ live, q, title, testid, keep }: { live: Live | null; q: Query; title: string; testid: string; keep?: (o: Any) => boolean }) {
  const s = useLive(live, q);
  const rows = keep ? s.rows.filter(keep) : s.rows;
  return (
    <>
      <dt>{title}</dt>
      <dd data-testid={testid}>
        {s.error
          ? <span className="error">{s.error}</span>
          : !s.loaded
            ? "…"
            : rows.length === 0
              ? "none"
              : rows.map((o) => (
                  <a key={`${o.metadata.namespace}/${o.metadata.name}`} className="chip" href={hrefOf(q, o)} data-name={o.metadata.name}>
                    {o.metadata.name}
                    {q.resource === "pods" && ` (${podStatus(o as Any)})`}
                  </a>
                ))}
        {s.loaded && !keep && s.total > rows.length && <span className="note"> and {s.total - rows.length} more</span>}
      </dd>
    </>
  );
}

const kindOf: Record<string, string> = { replicasets: "ReplicaSets", pods: "Pods", controllerrevisions: "ControllerRevisions", persistentvolumeclaims: "PersistentVolumeClaims", jobs: "Jobs", endpointslices: "EndpointSlices" };

export function Related({ live, resource, obj, resources }: { live: Live | null; resource: string; obj: Any; resources: api.Resource[] }) {
  const owners: Any[] = obj.metadata?.ownerReferences ?? [];
  const ns = obj.metadata?.namespace ?? "";
  return (
    <section className="related">
      <h3>Related</h3>
      <dl className="summary">
        <dt>Owners</dt>
        <dd data-testid="owners">
          {owners.length === 0
            ? "none"
            : owners.map((o) => {
                const t = refTarget(o as { apiVersion: string; kind: string }, resources);
                return (
                  <a key={o.uid} className="chip" href={objectHref(t.group, t.version, t.resource, t.namespaced ? ns : "", o.name)}>
                    {o.kind}/{o.name}
                    {o.controller && " (controller)"}
                  </a>
                );
              })}
        </dd>
        {ownedQueries(resource, obj).map((q) => (
          <Links key={q.resource} live={live} q={q} title={`Owned ${kindOf[q.resource] ?? q.resource}`} testid={`owned-${q.resource}`} />
        ))}
        {relatedSections(resource, obj).map((s) => (
          <Links key={s.id} live={live} q={s.query} title={s.title} testid={s.id} keep={s.keep} />
        ))}
      </dl>
      <Events live={live} obj={obj} />
    </section>
  );
}

function Events({ live, obj }: { live: Live | null; obj: Any }) {
  const s = useLive(live, obj.metadata?.uid ? eventsQuery(obj) : null);
  const now = useNow();
  const rows = sortEvents(s.rows as Any[]);
  return (
    <table className="plain events" data-testid="events">
      <caption>Events{s.error ? `: ${s.error}` : ""}</caption>
      <thead>
        <tr>
          <th>Type</th>
          <th>Reason</th>
          <th>Age</th>
          <th>From</th>
          <th>Message</th>
        </tr>
      </thead>
      <tbody>
        {rows.map((e) => (
          <tr key={e.metadata.name} className={e.type === "Warning" ? "warn" : ""}>
            <td>{e.type}</td>
            <td>{e.reason}</td>
            <td>
              {age(eventTime(e), now)}
              {(e.count ?? 0) > 1 && ` (x${e.count})`}
            </td>
            <td>{e.source?.component ?? e.reportingComponent ?? ""}</td>
            <td>{e.message}</td>
          </tr>
        ))}
        {s.loaded && rows.length === 0 && (
          <tr>
            <td colSpan={5}>no events</td>
          </tr>
        )}
      </tbody>
    </table>
  );
}
