import { useEffect, useRef, useState } from "react";
import { logsError, logsQuery } from "./podlogs";

// Pod logs, streamed (follow) with fetch; lines are capped to keep the DOM small.
const MAX_LINES = 5000;

export function Logs({ ns, pod, containers }: { ns: string; pod: string; containers: string[] }) {
  // The pod may still be loading: until a container is picked, the first one (once known).
  const [picked, setContainer] = useState("");
  const container = picked || containers[0] || "";
  const [follow, setFollow] = useState(true);
  const [timestamps, setTimestamps] = useState(false);
  const [previous, setPrevious] = useState(false);
  const [search, setSearch] = useState("");
  const [lines, setLines] = useState<string[]>([]);
  const [error, setError] = useState("");
  const end = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const ac = new AbortController();
    setLines([]);
    setError("");
    const qs = logsQuery({ ns, pod, container, follow, timestamps, previous });
    (async () => {
      const r = await fetch(`/api/logs?${qs}`, { signal: ac.signal });
      if (!r.ok || !r.body) {
        setError(logsError(r.status, await r.text(), previous, container));
        return;
      }
      const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
      let rest = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        const parts = (rest + value).split("\n");
        rest = parts.pop() ?? "";
        setLines((l) => [...l, ...parts].slice(-MAX_LINES));
      }
    })().catch((e) => {
      if (!ac.signal.aborted) setError(String(e));
    });
    return () => ac.abort();
  }, [ns, pod, container, follow, timestamps, previous]);
  useEffect(() => {
    if (follow) end.current?.scrollIntoView({ block: "end" });
  }, [lines, follow]);
  const shown = search ? lines.filter((l) => l.includes(search)) : lines;
  return (
    <div className="logs">
      <div className="toolbar">
        {containers.length > 1 && (
          <select aria-label="container" value={container} onChange={(e) => setContainer(e.target.value)}>
            {containers.map((c) => (
              <option key={c}>{c}</option>
            ))}
          </select>
        )}
        <label>
          <input type="checkbox" checked={follow && !previous} disabled={previous} onChange={(e) => setFollow(e.target.checked)} /> follow
        </label>
        <label title="the log of the container's previous (terminated) instance, as kubectl logs --previous">
          <input type="checkbox" aria-label="previous" checked={previous} onChange={(e) => setPrevious(e.target.checked)} /> previous
        </label>
        <label>
          <input type="checkbox" checked={timestamps} onChange={(e) => setTimestamps(e.target.checked)} /> timestamps
        </label>
        <input aria-label="search logs" placeholder="search…" value={search} onChange={(e) => setSearch(e.target.value)} />
      </div>
      {error && (
        <p className="error" role="alert" data-testid="logs-error">
          {error}
        </p>
      )}
      <pre aria-label="log">
        {shown.join("\n")}
        <div ref={end} />
      </pre>
    </div>
  );
}
