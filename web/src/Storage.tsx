// Detail sections of PersistentVolumeClaims, PersistentVolumes and
// StorageClasses: binding status linked both ways, the pods using a claim
// and its usage (the metrics feed's "volumes", reported by the agents).
import type { Live } from "./live";
import { useLive, useMetrics } from "./hooks";
import { objectHref } from "./route";
import { claimStatus, claimUsers, classInfo, usageView, volumeStatus } from "./storage";

type Any = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const pvHref = (name: string) => objectHref("", "v1", "persistentvolumes", "", name);
const pvcHref = (ns: string, name: string) => objectHref("", "v1", "persistentvolumeclaims", ns, name);
const scHref = (name: string) => objectHref("storage.k8s.io", "v1", "storageclasses", "", name);

function Link({ href, name }: { href: string; name: string }) {
  return name ? <a href={href}>{name}</a> : <>—</>;
}

function Usage({ live, ns, claim }: { live: Live | null; ns: string; claim: string }) {
  const { msg, error } = useMetrics(live, ns && claim ? { kind: "volumes", namespace: ns, name: claim } : null);
  let reason = "usage unavailable";
  if (error) reason = `usage unavailable: ${error}`;
  else if (msg && !msg.available) reason = "usage unavailable: no metrics add-on in this dashboard's process";
  else if (msg) reason = "usage unavailable: no pod using this claim has reported it yet";
  const u = usageView(msg?.volumes?.[`${ns}/${claim}`], reason);
  return (
    <span data-testid="usage">
      {u.fraction !== undefined && <meter min={0} max={1} value={u.fraction} aria-label="used" />} {u.text}
    </span>
  );
}

function Claim({ live, obj }: { live: Live | null; obj: Any }) {
  const ns = obj.metadata.namespace;
  const classes = useLive(live, { group: "storage.k8s.io", version: "v1", resource: "storageclasses", namespace: "", page: { offset: 0, limit: 200 } });
  const pods = useLive(live, { group: "", version: "v1", resource: "pods", namespace: ns, page: { offset: 0, limit: 500 } });
  const cls = classes.rows.find((c) => c.metadata.name === (obj.spec?.storageClassName ?? ""));
  const st = claimStatus(obj, cls);
  const users = claimUsers(pods.rows, obj.metadata.name);
  return (
    <dl className="summary storage" data-testid="claim-status">
      <dt>Status</dt>
      <dd>
        <strong data-testid="phase">{st.phase}</strong> {st.detail && <span className="note">{st.detail}</span>}
      </dd>
      <dt>Volume</dt>
      <dd data-testid="bound-volume">
        <Link href={pvHref(st.volume)} name={st.volume} />
      </dd>
      <dt>Storage class</dt>
      <dd>
        <Link href={scHref(st.storageClass)} name={st.storageClass} />
      </dd>
      <dt>Capacity</dt>
      <dd>
        {st.capacity || "—"} (requested {st.requested || "—"})
      </dd>
      <dt>Usage</dt>
      <dd>
        <Usage live={live} ns={ns} claim={obj.metadata.name} />
      </dd>
      <dt>Access modes</dt>
      <dd>
        {st.accessModes || "—"}, {st.volumeMode}
      </dd>
      <dt>Used by</dt>
      <dd data-testid="claim-pods">
        {users.length === 0
          ? pods.loaded
            ? "no pod"
            : "…"
          : users.map((p) => (
              <a key={p} className="chip" href={objectHref("", "v1", "pods", ns, p)}>
                {p}
              </a>
            ))}
      </dd>
    </dl>
  );
}

function Volume({ live, obj }: { live: Live | null; obj: Any }) {
  const st = volumeStatus(obj);
  const [cns, cname] = st.claim.split("/");
  return (
    <dl className="summary storage" data-testid="volume-status">
      <dt>Status</dt>
      <dd>
        <strong data-testid="phase">{st.phase}</strong> {st.detail && <span className="note">{st.detail}</span>}
      </dd>
      <dt>Claim</dt>
      <dd data-testid="claim-ref">{st.claim ? <a href={pvcHref(cns, cname)}>{st.claim}</a> : "—"}</dd>
      <dt>Reclaim policy</dt>
      <dd>{st.reclaimPolicy}</dd>
      <dt>Storage class</dt>
      <dd>
        <Link href={scHref(st.storageClass)} name={st.storageClass} />
      </dd>
      <dt>Capacity</dt>
      <dd>{st.capacity || "—"}</dd>
      {st.phase === "Bound" && cname && (
        <>
          <dt>Usage</dt>
          <dd>
            <Usage live={live} ns={cns} claim={cname} />
          </dd>
        </>
      )}
      <dt>Access modes</dt>
      <dd>{st.accessModes || "—"}</dd>
      <dt>Source</dt>
      <dd>{st.source || "—"}</dd>
      <dt>Node</dt>
      <dd>{st.node ? <a href={objectHref("", "v1", "nodes", "", st.node)}>{st.node}</a> : "any"}</dd>
    </dl>
  );
}

function Class({ live, obj }: { live: Live | null; obj: Any }) {
  const c = classInfo(obj);
  const name = obj.metadata.name;
  const pvs = useLive(live, {
    group: "",
    version: "v1",
    resource: "persistentvolumes",
    namespace: "",
    filter: { fields: { "spec.storageClassName": name } },
    page: { offset: 0, limit: 200 },
  });
  const pvcs = useLive(live, {
    group: "",
    version: "v1",
    resource: "persistentvolumeclaims",
    namespace: "",
    filter: { fields: { "spec.storageClassName": name } },
    page: { offset: 0, limit: 200 },
  });
  return (
    <dl className="summary storage" data-testid="class-info">
      <dt>Provisioner</dt>
      <dd>{c.provisioner}</dd>
      <dt>Binding mode</dt>
      <dd>{c.bindingMode}</dd>
      <dt>Default class</dt>
      <dd>{c.isDefault ? "yes" : "no"}</dd>
      <dt>Volume expansion</dt>
      <dd>{c.expansion ? "allowed" : "not allowed"}</dd>
      <dt>Reclaim policy</dt>
      <dd>{c.reclaimPolicy}</dd>
      <dt>Parameters</dt>
      <dd>
        {Object.entries(c.parameters).map(([k, v]) => (
          <code key={k} className="chip">
            {k}={v}
          </code>
        ))}
        {Object.keys(c.parameters).length === 0 && "—"}
      </dd>
      <dt>Claims ({pvcs.total})</dt>
      <dd>
        {pvcs.error && <span className="error">{pvcs.error}</span>}
        {pvcs.rows.map((p) => (
          <a key={`${p.metadata.namespace}/${p.metadata.name}`} className="chip" href={pvcHref(p.metadata.namespace ?? "", p.metadata.name)}>
            {p.metadata.namespace}/{p.metadata.name}
          </a>
        ))}
      </dd>
      <dt>Volumes ({pvs.total})</dt>
      <dd>
        {pvs.error && <span className="error">{pvs.error}</span>}
        {pvs.rows.map((p) => (
          <a key={p.metadata.name} className="chip" href={pvHref(p.metadata.name)}>
            {p.metadata.name}
          </a>
        ))}
      </dd>
    </dl>
  );
}

/** StorageDetail is the storage section of a claim's, volume's or class's page (null for other kinds). */
export function StorageDetail({ live, resource, obj }: { live: Live | null; resource: string; obj: Any }) {
  if (resource === "persistentvolumeclaims") return <Claim live={live} obj={obj} />;
  if (resource === "persistentvolumes") return <Volume live={live} obj={obj} />;
  if (resource === "storageclasses") return <Class live={live} obj={obj} />;
  return null;
}
