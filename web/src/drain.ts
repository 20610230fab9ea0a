// Cordon and drain as kubectl does them (pure; the calls are made by the
// caller, as the user, through the backend).
//
// cordon: spec.unschedulable = true (uncordon: false).
// drain (kubectl drain --ignore-daemonsets --delete-emptydir-data):
// cordon, then evict every pod on the node through pods/eviction, except
// DaemonSet-managed and mirror pods (skipped). A pod no controller
// manages is refused unless forced (kubectl --force), unless it has
// finished. A PodDisruptionBudget's refusal (429) is retried.

type Any = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

export const cordonPatch = (on: boolean) => ({ spec: { unschedulable: on } });
export const mirrorKey = "kubernetes.io/config.mirror";

export type Plan = { ns: string; name: string; action: "evict" | "skip" | "refuse"; reason: string };

/** planDrain says what a drain does with each pod of the node. */
export function planDrain(pods: Any[], force = false): Plan[] {
  return pods.map((p) => {
    const ns = p.metadata.namespace ?? "";
    const name = p.metadata.name;
    const ctl = (p.metadata.ownerReferences ?? []).find((o: Any) => o.controller);
    if (p.metadata.annotations?.[mirrorKey] !== undefined) return { ns, name, action: "skip", reason: "mirror pod" };
    if (ctl?.kind === "DaemonSet") return { ns, name, action: "skip", reason: `DaemonSet-managed (${ctl.name})` };
    const phase = p.status?.phase;
    if (!ctl && phase !== "Succeeded" && phase !== "Failed" && !force)
      return { ns, name, action: "refuse", reason: "not managed by a controller (ReplicaSet, Job, …): tick force to delete it" };
    return { ns, name, action: "evict", reason: ctl ? `${ctl.kind} ${ctl.name}` : "no controller (forced)" };
  });
}

export type PodState = "skipped" | "waiting" | "evicting" | "blocked" | "evicted" | "failed";
export type Progress = { key: string; state: PodState; message: string; attempts: number };

/** EvictError is a failed eviction: the HTTP status and the API's message. */
export interface EvictError {
  code: number;
  message: string;
}

export interface DrainOptions {
  evict: (ns: string, name: string) => Promise<void>;
  onProgress: (key: string, p: Progress) => void;
  /** retry a 429 after this long (kubectl: 5 s) */
  retryMs?: number;
  /** give up on a pod blocked this long (0: never, as kubectl's default) */
  timeoutMs?: number;
  signal?: AbortSignal;
  sleep?: (ms: number) => Promise<void>;
  now?: () => number;
}

const defaultSleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * evictAll evicts the plan's pods in parallel (as kubectl), each retried
 * while a PodDisruptionBudget refuses it (429); a missing pod (404) counts
 * as evicted. It resolves with each pod's final progress; the drain
 * succeeded when every pod is evicted or skipped.
 */
export async function evictAll(plan: Plan[], o: DrainOptions): Promise<Progress[]> {
  const sleep = o.sleep ?? defaultSleep;
  const now = o.now ?? Date.now;
  const retry = o.retryMs ?? 5000;
  const one = async (p: Plan): Promise<Progress> => {
    const key = `${p.ns}/${p.name}`;
    const set = (state: PodState, message: string, attempts: number) => {
      const pr = { key, state, message, attempts };
      o.onProgress(key, pr);
      return pr;
    };
    if (p.action === "skip") return set("skipped", p.reason, 0);
    if (p.action === "refuse") return set("failed", p.reason, 0);
    const start = now();
    for (let attempt = 1; ; attempt++) {
      if (o.signal?.aborted) return set("failed", "stopped", attempt - 1);
      set("evicting", "", attempt);
      try {
        await o.evict(p.ns, p.name);
        return set("evicted", "", attempt);
      } catch (e) {
        const err = e as EvictError;
        if (err.code === 404) return set("evicted", "already gone", attempt);
        if (err.code !== 429) return set("failed", err.message, attempt);
        if (o.timeoutMs && now() - start >= o.timeoutMs) return set("failed", `gave up: ${err.message}`, attempt);
        set("blocked", `${err.message} (retrying in ${Math.round(retry / 1000)} s)`, attempt);
        await sleep(retry);
      }
    }
  };
  return Promise.all(plan.map(one));
}

/** drainDone reports whether every pod was evicted or skipped. */
export const drainDone = (ps: Progress[]) => ps.every((p) => p.state === "evicted" || p.state === "skipped");

/**
 * drainStatus is the drain's outcome as kubectl reports it: incomplete
 * when a pod was not evicted; otherwise it waits until every evicted pod
 * is gone from the node (present: the node's pods now) before "Drained".
 */
export function drainStatus(ps: Progress[], present: Set<string>): { state: "incomplete" | "terminating" | "drained"; text: string } {
  const failed = ps.filter((p) => p.state === "failed").length;
  if (failed > 0) return { state: "incomplete", text: `Drain incomplete: ${failed} pod(s) not evicted.` };
  const evicted = ps.filter((p) => p.state === "evicted");
  const left = evicted.filter((p) => present.has(p.key)).length;
  if (left > 0) return { state: "terminating", text: `Evictions accepted; waiting for ${left} pod(s) to terminate…` };
  return { state: "drained", text: `Drained: ${evicted.length} pod(s) evicted, ${ps.length - evicted.length} skipped.` };
}
