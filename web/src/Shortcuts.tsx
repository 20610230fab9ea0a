// The search palette (/ or Ctrl/Cmd-K, the header's Search button) and the
// keyboard help overlay (?). Ranking is the backend's (GET /api/search).
import { useEffect, useRef, useState } from "react";
import * as api from "./api";
import { KEY_HELP } from "./keys";
import { moveSelection, resultHref, searchNote, searchURL, type SearchResponse } from "./search";

export function Palette({ ns, kinds, onClose }: { ns: string; kinds: string[]; onClose: () => void }) {
  const [q, setQ] = useState("");
  const [resp, setResp] = useState<SearchResponse | null>(null);
  const [error, setError] = useState("");
  const [sel, setSel] = useState(0);
  const seq = useRef(0);
  const input = useRef<HTMLInputElement>(null);
  useEffect(() => input.current?.focus(), []);
  useEffect(() => {
    const my = ++seq.current;
    if (!q.trim()) {
      setResp(null);
      setError("");
      return;
    }
    let retry: ReturnType<typeof setTimeout> | undefined;
    const ask = (tries: number) =>
      api.search<SearchResponse>(searchURL(q, ns, kinds)).then(
        (r) => {
          if (my !== seq.current) return;
          setResp(r);
          setError("");
          setSel(0);
          // Kinds whose cache was still loading: ask again (at most 5 times).
          if (tries < 5 && r.pending.length) retry = setTimeout(() => ask(tries + 1), 1000);
        },
        (e: Error) => my === seq.current && setError(e.message),
      );
    const t = setTimeout(() => ask(0), 120);
    return () => {
      clearTimeout(t);
      if (retry) clearTimeout(retry);
    };
  }, [q, ns, kinds]);
  const results = resp?.results ?? [];
  const open = (i: number) => {
    const r = results[i];
    if (!r) return;
    location.hash = resultHref(r);
    onClose();
  };
  const note = resp ? searchNote(resp) : "";
  return (
    <div className="overlay" onMouseDown={(e) => e.target === e.currentTarget && onClose()}>
      <div className="palette" role="dialog" aria-modal="true" aria-label="Search objects">
        <input
          ref={input}
          aria-label="search objects"
          role="combobox"
          aria-expanded={results.length > 0}
          aria-controls="search-results"
          aria-activedescendant={results.length ? `search-result-${sel}` : undefined}
          placeholder={`Search by name in ${ns ? `namespace ${ns}` : "all namespaces"} (fuzzy: "pyapcfg" finds payments-api-config)`}
          value={q}
          onChange={(e) => setQ(e.target.value)}
          onKeyDown={(e) => {
            if (e.key === "ArrowDown" || e.key === "ArrowUp") {
              e.preventDefault();
              setSel((s) => moveSelection(s, e.key === "ArrowDown" ? 1 : -1, results.length));
            } else if (e.key === "Enter") {
              e.preventDefault();
              open(sel);
            }
          }}
        />
        {error && (
          <p role="alert" className="error">
            {error}
          </p>
        )}
        <ul id="search-results" role="listbox" aria-label="search results">
          {results.map((r, i) => (
            <li
              key={`${r.resource}/${r.namespace}/${r.name}`}
              id={`search-result-${i}`}
              role="option"
              aria-selected={i === sel}
              className={i === sel ? "sel" : ""}
              data-testid="search-result"
              onMouseEnter={() => setSel(i)}
              onClick={() => open(i)}
            >
              <span className="kind">{r.kind}</span>
              <span className="ns">{r.namespaced ? r.namespace : ""}</span>
              <span className="name">{r.name}</span>
            </li>
          ))}
        </ul>
        {resp && results.length === 0 && <p className="note" data-testid="search-empty">No object matches “{q.trim()}”.</p>}
        {note && (
          <p className="note" data-testid="search-note">
            {note}
          </p>
        )}
        <p className="note">↑ ↓ to choose, Enter to open, Escape to close</p>
      </div>
    </div>
  );
}

export function Help({ onClose }: { onClose: () => void }) {
  const close = useRef<HTMLButtonElement>(null);
  useEffect(() => close.current?.focus(), []);
  return (
    <div className="overlay" onMouseDown={(e) => e.target === e.currentTarget && onClose()}>
      <div className="help" role="dialog" aria-modal="true" aria-label="Keyboard shortcuts">
        <h2>Keyboard shortcuts</h2>
        <table>
          <tbody>
            {KEY_HELP.map(([k, what]) => (
              <tr key={k}>
                <td>
                  <kbd>{k}</kbd>
                </td>
                <td>{what}</td>
              </tr>
            ))}
          </tbody>
        </table>
        <p className="note">Keys are ignored while typing in a field or the YAML editor.</p>
        <button ref={close} onClick={onClose}>
          Close
        </button>
      </div>
    </div>
  );
}
