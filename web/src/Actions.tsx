// Actions of workload and node pages: rollout restart, history and undo
// (Deployments, StatefulSets, DaemonSets) and cordon, uncordon and drain
// (nodes). Every call is made as the user through the backend; the
// buttons are disabled when the user's SelfSubjectRulesReview does not
// grant the verb. The logic is in rollout.ts and drain.ts.
import { useRef, useState } from "react";
import * as api from "./api";
import { useLive } from "./hooks";
import type { Live } from "./live";
import { objectHref } from "./route";
import { age } from "./columns";
import { deploymentHistory, restartPatch, revisionHistory, undoPatch, undoTarget, type Revision } from "./rollout";
import { cordonPatch, drainStatus, evictAll, planDrain, type Progress } from "./drain";

type Any = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** useLiveObject is the object as the live cache has it now (changes made elsewhere, e.g. kubectl, included); loaded until then. */
function useLiveObject(live: Live | null, r: api.Ref, loaded: Any): Any {
  const s = useLive(live, { group: r.group, version: r.version, resource: r.resource, namespace: r.namespace, filter: { fields: { "metadata.name": r.name } }, page: { offset: 0, limit: 1 } });
  return (s.rows[0] as Any) ?? loaded;
}

export function Rollout({ live, r, obj: loaded, rules, reload }: { live: Live | null; r: api.Ref; obj: Any; rules: api.Rule[]; reload: () => void }) {
  const obj = useLiveObject(live, r, loaded);
  const [msg, setMsg] = useState("");
  const [err, setErr] = useState("");
  const uid = obj.metadata?.uid;
  const deploy = r.resource === "deployments";
  const hq = deploy
    ? { group: "apps", version: "v1", resource: "replicasets", namespace: r.namespace, filter: { owner: uid }, page: { offset: 0, limit: 100 } }
    : { group: "apps", version: "v1", resource: "controllerrevisions", namespace: r.namespace, filter: { owner: uid }, page: { offset: 0, limit: 100 } };
  const hist = useLive(live, uid ? hq : null);
  const history: Revision[] = deploy ? deploymentHistory(obj, hist.rows) : revisionHistory(obj, hist.rows);
  const canPatch = api.allowed(rules, "patch", r.group, r.resource);
  const why = canPatch ? "" : `You may not patch ${r.resource}`;
  const act = async (what: () => Promise<string>) => {
    setErr("");
    setMsg("");
    try {
      setMsg(await what());
      reload();
    } catch (e) {
      setErr((e as Error).message);
    }
  };
  const restart = () =>
    act(async () => {
      await api.patch(r, restartPatch(new Date()));
      return `Restarted ${r.name}.`;
    });
  const undo = (to: number) =>
    act(async () => {
      // The newest object, so the patch's resourceVersion test holds.
      const cur = await api.getObject(r);
      const rev = undoTarget(history, to);
      await api.patch(r, undoPatch(r.resource, cur, rev));
      return `Rolled back to revision ${rev.revision}.`;
    });
  return (
    <section className="rollout" data-testid="rollout">
      <h3>Rollout</h3>
      <div className="actions">
        <button onClick={restart} disabled={!canPatch} title={why}>
          Restart
        </button>
        <button onClick={() => undo(0)} disabled={!canPatch || history.length < 2} title={why || (history.length < 2 ? "No earlier revision" : "Roll back to the previous revision")}>
          Undo
        </button>
        {msg && (
          <span className="note" role="status">
            {msg}
          </span>
        )}
        {err && (
          <span className="error" role="alert">
            {err}
          </span>
        )}
      </div>
      <table className="plain" data-testid="history">
        <caption>Revision history{hist.error ? `: ${hist.error}` : ""}</caption>
        <thead>
          <tr>
            <th>Revision</th>
            <th>{deploy ? "ReplicaSet" : "ControllerRevision"}</th>
            <th>Images</th>
            <th>Change cause</th>
            <th>Age</th>
            <th>
              <span className="visually-hidden">Action</span>
            </th>
          </tr>
        </thead>
        <tbody>
          {history.map((h) => (
            <tr key={h.name} data-revision={h.revision}>
              <td>
                {h.revision}
                {h.current && " (current)"}
              </td>
              <td>
                <a href={objectHref("apps", "v1", deploy ? "replicasets" : "controllerrevisions", r.namespace, h.name)}>{h.name}</a>
              </td>
              <td className="mono">{h.images.join(", ")}</td>
              <td>{h.changeCause || "—"}</td>
              <td>{age(h.created, Date.now())}</td>
              <td>
                {!h.current && (
                  <button disabled={!canPatch} title={why} onClick={() => undo(h.revision)}>
                    Roll back to {h.revision}
                  </button>
                )}
              </td>
            </tr>
          ))}
          {hist.loaded && history.length === 0 && (
            <tr>
              <td colSpan={6}>no revisions</td>
            </tr>
          )}
        </tbody>
      </table>
    </section>
  );
}

const stateText: Record<string, string> = { skipped: "skipped", waiting: "waiting", evicting: "evicting…", blocked: "blocked", evicted: "evicted", failed: "failed" };

export function NodeActions({ live, r, obj: loaded, rules, reload }: { live: Live | null; r: api.Ref; obj: Any; rules: api.Rule[]; reload: () => void }) {
  const obj = useLiveObject(live, r, loaded);
  const [err, setErr] = useState("");
  const [force, setForce] = useState(false);
  const [progress, setProgress] = useState<Record<string, Progress>>({});
  const [running, setRunning] = useState(false);
  // The last drain's result, reported once its evicted pods are gone.
  const [finished, setFinished] = useState<Progress[] | null>(null);
  const stop = useRef<AbortController | null>(null);
  const pods = useLive(live, { group: "", version: "v1", resource: "pods", namespace: "", filter: { fields: { "spec.nodeName": r.name } }, page: { offset: 0, limit: 500 } });
  const canPatch = api.allowed(rules, "patch", "", "nodes");
  const canEvict = api.allowed(rules, "create", "", "pods/eviction");
  const cordoned = !!obj.spec?.unschedulable;
  const cordon = async (on: boolean) => {
    setErr("");
    await api.patch(r, cordonPatch(on));
    reload();
  };
  const drain = async () => {
    if (!pods.loaded || pods.error) {
      setErr(`the node's pods are not listed${pods.error ? `: ${pods.error}` : " yet"}`);
      return;
    }
    if (!confirm(`Drain node ${r.name}? Its pods (except DaemonSet and mirror pods) are evicted.`)) return;
    setErr("");
    setProgress({});
    setFinished(null);
    setRunning(true);
    const ac = new AbortController();
    stop.current = ac;
    try {
      await cordon(true);
      const plan = planDrain(pods.rows as Any[], force);
      const res = await evictAll(plan, {
        evict: async (ns, name) => {
          try {
            await api.evict(ns, name);
          } catch (e) {
            const ae = e as api.ApiError;
            throw { code: ae.code ?? 0, message: ae.message };
          }
        },
        onProgress: (key, p) => setProgress((m) => ({ ...m, [key]: p })),
        signal: ac.signal,
      });
      setFinished(res);
    } catch (e) {
      setErr((e as Error).message);
    } finally {
      setRunning(false);
      stop.current = null;
    }
  };
  const present = new Set(pods.rows.map((p) => `${p.metadata.namespace}/${p.metadata.name}`));
  const outcome = finished && drainStatus(finished, present);
  return (
    <section className="nodeactions" data-testid="node-actions">
      <div className="actions">
        <span data-testid="schedulable">{cordoned ? "SchedulingDisabled" : "Schedulable"}</span>
        <button onClick={() => cordon(!cordoned).catch((e) => setErr(e.message))} disabled={!canPatch || running} title={canPatch ? "" : "You may not patch nodes"}>
          {cordoned ? "Uncordon" : "Cordon"}
        </button>
        <button className="danger" onClick={drain} disabled={!canPatch || !canEvict || running} title={canPatch && canEvict ? "" : "You may not patch nodes or evict pods"}>
          Drain
        </button>
        <label title="also delete pods no controller manages (kubectl drain --force)">
          <input type="checkbox" checked={force} onChange={(e) => setForce(e.target.checked)} /> force
        </label>
        {running && <button onClick={() => stop.current?.abort()}>Stop</button>}
        {outcome && outcome.state !== "incomplete" && (
          <span className="note" role="status" data-testid="drain-done">
            {outcome.text}
          </span>
        )}
        {outcome?.state === "incomplete" && (
          <span className="error" role="alert" data-testid="drain-error">
            {outcome.text}
          </span>
        )}
        {err && (
          <span className="error" role="alert" data-testid="node-error">
            {err}
          </span>
        )}
      </div>
      {Object.keys(progress).length > 0 && (
        <table className="plain" data-testid="drain-progress">
          <caption>Drain</caption>
          <tbody>
            {Object.values(progress).map((p) => (
              <tr key={p.key} data-pod={p.key} data-state={p.state}>
                <td>{p.key}</td>
                <td>
                  {stateText[p.state]}
                  {p.state === "evicted" && (present.has(p.key) ? " (terminating)" : " (gone)")}
                  {p.attempts > 1 && ` after ${p.attempts} attempts`}
                </td>
                <td className={p.state === "failed" || p.state === "blocked" ? "error" : "note"}>{p.message}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <p className="note">{pods.error ? `pods of this node: ${pods.error}` : pods.loaded ? `${pods.total} pod(s) on this node` : "…"}</p>
    </section>
  );
}

/** NodeRowActions is a nodes table row's cordon/uncordon and a link to the node page's drain. */
export function NodeRowActions({ node, rules }: { node: Any; rules: api.Rule[] }) {
  const [err, setErr] = useState("");
  const name = node.metadata.name;
  const cordoned = !!node.spec?.unschedulable;
  const canPatch = api.allowed(rules, "patch", "", "nodes");
  return (
    <span className="rowactions">
      <button
        className="small"
        disabled={!canPatch}
        title={canPatch ? err : "You may not patch nodes"}
        aria-label={`${cordoned ? "uncordon" : "cordon"} ${name}`}
        onClick={() =>
          api.patch({ group: "", version: "v1", resource: "nodes", namespace: "", name }, cordonPatch(!cordoned)).then(
            () => setErr(""),
            (e) => setErr((e as Error).message),
          )
        }
      >
        {cordoned ? "Uncordon" : "Cordon"}
      </button>{" "}
      <a href={objectHref("", "v1", "nodes", "", name)}>Drain…</a>
      {err && (
        <span className="error" role="alert">
          {" "}
          {err}
        </span>
      )}
    </span>
  );
}
