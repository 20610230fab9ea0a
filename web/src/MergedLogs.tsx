import { useEffect, useRef, useState } from "react";
import { currentCluster } from "./api";
import { mergedLogsURL, NDJSONSplitter, podColor, prefix, type MergedLine } from "./workloadlogs";

// The logs of all pods of a workload, merged live (backend/workloadlogs.go),
// each line prefixed with its pod; pods that appear later are followed.
const MAX_LINES = 5000;

type Shown = MergedLine & { n: number };

export function MergedLogs({ r, containers }: { r: { group: string; version: string; resource: string; namespace: string; name: string }; containers: string[] }) {
  const [container, setContainer] = useState("");
  const [timestamps, setTimestamps] = useState(false);
  const [follow, setFollow] = useState(true);
  const [search, setSearch] = useState("");
  const [lines, setLines] = useState<Shown[]>([]);
  const [pods, setPods] = useState<Record<string, string>>({});
  const [error, setError] = useState("");
  const end = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const ac = new AbortController();
    setLines([]);
    setPods({});
    setError("");
    let n = 0;
    let ended = "the stream ended";
    (async () => {
      const headers: Record<string, string> = {};
      if (currentCluster()) headers["X-Skiff-Cluster"] = currentCluster();
      const resp = await fetch(mergedLogsURL(r, { container, timestamps, tailLines: 100 }), { signal: ac.signal, headers });
      if (!resp.ok || !resp.body) {
        const t = await resp.text();
        try {
          setError(JSON.parse(t).message ?? t);
        } catch {
          setError(t || resp.statusText);
        }
        return;
      }
      const split = new NDJSONSplitter();
      const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        const { lines: got } = split.push(value);
        const text = got.filter((l) => !l.event).map((l) => ({ ...l, n: n++ }));
        const revoked = got.find((l) => l.event === "revoked");
        if (revoked) ended = revoked.message ?? "session ended; log in again";
        const events = got.filter((l) => l.event && l.event !== "revoked");
        if (events.length)
          setPods((p) => {
            const q = { ...p };
            for (const e of events) q[`${e.pod}/${e.container}`] = e.event === "start" ? "following" : `ended: ${e.message ?? ""}`;
            return q;
          });
        if (text.length) setLines((l) => [...l, ...text].slice(-MAX_LINES));
      }
      setError(ended);
    })().catch((e) => {
      if (!ac.signal.aborted) setError(String(e));
    });
    return () => ac.abort();
  }, [r.group, r.version, r.resource, r.namespace, r.name, container, timestamps]); // eslint-disable-line react-hooks/exhaustive-deps
  useEffect(() => {
    if (follow) end.current?.scrollIntoView({ block: "end" });
  }, [lines, follow]);
  const multi = containers.length > 1 && !container;
  const shown = search ? lines.filter((l) => (l.line ?? "").includes(search) || l.pod.includes(search)) : lines;
  const following = Object.entries(pods).filter(([, s]) => s === "following").length;
  return (
    <div className="logs merged">
      <div className="toolbar">
        {containers.length > 1 && (
          <select aria-label="container" value={container} onChange={(e) => setContainer(e.target.value)}>
            <option value="">all containers</option>
            {containers.map((c) => (
              <option key={c}>{c}</option>
            ))}
          </select>
        )}
        <label>
          <input type="checkbox" checked={follow} onChange={(e) => setFollow(e.target.checked)} /> follow
        </label>
        <label>
          <input type="checkbox" checked={timestamps} onChange={(e) => setTimestamps(e.target.checked)} /> timestamps
        </label>
        <input aria-label="search logs" placeholder="search…" value={search} onChange={(e) => setSearch(e.target.value)} />
        <span className="count" data-testid="merged-following" title={Object.entries(pods).map(([k, v]) => `${k}: ${v}`).join("\n")}>
          {following} container{following === 1 ? "" : "s"} followed
        </span>
      </div>
      {error && <p className="error">{error}</p>}
      <pre aria-label="merged log" data-testid="merged-log">
        {shown.map((l) => (
          <div key={l.n} className="mline" data-pod={l.pod}>
            <span className={`podtag pc${podColor(l.pod)}`}>{prefix(l, multi)}</span> {l.line}
          </div>
        ))}
        <div ref={end} />
      </pre>
    </div>
  );
}
