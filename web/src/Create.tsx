// Create from YAML (#/create): one or more documents separated by "---",
// each created as the user in order (kubectl create: an existing object is
// an error, not applied over); documents without a namespace go to the
// namespace switcher's (default when it shows all namespaces).
import { useState } from "react";
import * as api from "./api";
import { createdHref, splitDocs } from "./create";

type Result = { index: number; label: string; ok: boolean; text: string; href?: string | null };

const EXAMPLE = `apiVersion: v1
kind: ConfigMap
metadata:
  name: example
data:
  key: value
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: example
`;

export function Create({ ns, resources }: { ns: string; resources: api.Resource[] }) {
  const [text, setText] = useState("");
  const [busy, setBusy] = useState(false);
  const [results, setResults] = useState<Result[]>([]);
  const target = ns || "default";
  const docs = splitDocs(text);
  const run = async () => {
    setBusy(true);
    const out: Result[] = [];
    setResults([]);
    for (const d of docs) {
      try {
        const r = await api.create(d.text, target);
        const m = r.object.metadata ?? {};
        out.push({ index: d.index, label: d.label, ok: true, text: `created ${r.object.kind} ${m.namespace ? `${m.namespace}/` : ""}${m.name}`, href: createdHref(r.object, resources) });
      } catch (e) {
        const err = e as api.ApiError;
        out.push({ index: d.index, label: d.label, ok: false, text: `${err.code ? `${err.code}: ` : ""}${err.message}` });
      }
      setResults([...out]);
    }
    setBusy(false);
  };
  return (
    <section className="create">
      <h2>Create from YAML</h2>
      <p className="note">
        One or more documents separated by <code>---</code>, each created as you (an existing object is refused). Documents without a namespace go to namespace <strong data-testid="create-ns">{target}</strong>.
      </p>
      <textarea aria-label="YAML to create" spellCheck={false} rows={24} value={text} placeholder={EXAMPLE} onChange={(e) => setText(e.target.value)} />
      <div className="toolbar">
        <button className="primary" disabled={busy || docs.length === 0} onClick={run}>
          Create {docs.length > 1 ? `${docs.length} objects` : docs.length === 1 ? "1 object" : ""}
        </button>
        {busy && <span className="note">creating…</span>}
      </div>
      {results.length > 0 && (
        <ol className="create-results" aria-label="create results">
          {results.map((r) => (
            <li key={r.index} className={r.ok ? "ok" : "error"} data-testid="create-result" data-ok={r.ok}>
              document {r.index} ({r.label}): {r.ok && r.href ? <a href={r.href}>{r.text}</a> : r.text}
            </li>
          ))}
        </ol>
      )}
    </section>
  );
}
