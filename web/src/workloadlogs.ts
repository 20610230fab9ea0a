// Merged workload logs (backend/workloadlogs.go): an NDJSON stream of
// {"pod","container","line"} and {"event":"start"|"end",...}, all pods of
// a Deployment, StatefulSet, DaemonSet, ReplicaSet or Job; a last
// {"event":"revoked","message"} when the session ends (logout, revocation).

export interface MergedLine {
  event?: "start" | "end" | "revoked";
  pod: string;
  container: string;
  line?: string;
  message?: string;
}

export const mergedKinds = ["deployments", "statefulsets", "daemonsets", "replicasets", "jobs"];

/** NDJSONSplitter turns chunks of the stream into parsed lines; a broken line is reported, not thrown. */
export class NDJSONSplitter {
  private rest = "";
  push(chunk: string): { lines: MergedLine[]; bad: number } {
    const parts = (this.rest + chunk).split("\n");
    this.rest = parts.pop() ?? "";
    const lines: MergedLine[] = [];
    let bad = 0;
    for (const p of parts) {
      if (!p.trim()) continue;
      try {
        const l = JSON.parse(p);
        if (l && (typeof l.pod === "string" || l.event === "revoked")) lines.push(l);
        else bad++;
      } catch {
        bad++;
      }
    }
    return { lines, bad };
  }
}

/** podColor gives each pod a stable hue (one of 8 readable on both themes). */
export function podColor(pod: string): number {
  let h = 0;
  for (let i = 0; i < pod.length; i++) h = (h * 31 + pod.charCodeAt(i)) >>> 0;
  return h % 8;
}

/** prefix is the label shown before a line: the pod, and the container when the pods have several. */
export const prefix = (l: MergedLine, multi: boolean) => (multi ? `${l.pod}/${l.container}` : l.pod);

export function mergedLogsURL(r: { group: string; version: string; resource: string; namespace: string; name: string }, o: { container?: string; tailLines?: number; timestamps?: boolean }) {
  const qs = new URLSearchParams({ group: r.group, version: r.version, resource: r.resource, namespace: r.namespace, name: r.name });
  if (o.container) qs.set("container", o.container);
  if (o.tailLines !== undefined) qs.set("tailLines", String(o.tailLines));
  if (o.timestamps) qs.set("timestamps", "1");
  return `/api/workloadlogs?${qs}`;
}
