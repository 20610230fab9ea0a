// The log search page (issue #12), loaded on demand (code-split like the
// editor): query bar (query_string syntax), time range, histogram (plain
// SVG), facet filters with counts, a virtualised result list with
// highlighting, context around a line, live tail with pause, export.
// Every search state is in the URL (logsearch.ts); the backend
// (/api/logsearch) searches the log store as the user.
import { useEffect, useMemo, useRef, useState } from "react";
import {
  bars,
  bounds,
  describe,
  FACETS,
  fillBuckets,
  hasFilter,
  k8s,
  mergeNewer,
  parseState,
  requestParams,
  searchHref,
  splitHighlight,
  toCSV,
  toggleFilter,
  toNDJSON,
  type Bucket,
  type Filter,
  type Hit,
  type SearchState,
} from "./logsearch";
import { windowFor } from "./windowing";

const ROW = 22;
const PAGE = 500;
const MAX_LINES = 5000;
const TAIL_MS = 2000;

interface Result {
  total: number;
  totalRelation: string;
  took: number;
  hits: Hit[];
  interval?: number;
  histogram?: Bucket[];
  facets?: Record<string, { value: string; count: number }[]>;
  facetOther?: Record<string, number>;
  namespaces?: string[];
}

class SearchError extends Error {
  constructor(
    public code: number,
    message: string,
  ) {
    super(message);
  }
}

async function getJSON<T>(path: string, signal?: AbortSignal): Promise<T> {
  const r = await fetch(path, { credentials: "same-origin", signal });
  const text = await r.text();
  if (!r.ok) {
    let msg = text;
    try {
      msg = JSON.parse(text).message ?? text;
    } catch {
      /* not JSON */
    }
    if (r.status === 401) window.dispatchEvent(new CustomEvent("skiff:logout", { detail: msg }));
    throw new SearchError(r.status, msg || r.statusText);
  }
  return JSON.parse(text) as T;
}

const go = (s: SearchState) => {
  location.hash = searchHref(s);
};

const pad = (n: number, w = 2) => String(n).padStart(w, "0");
function clock(ms: number): string {
  const d = new Date(ms);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}
function stamp(ms: number): string {
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${clock(ms)}`;
}
const toLocalInput = (ms: number) => new Date(ms - new Date(ms).getTimezoneOffset() * 60_000).toISOString().slice(0, 16);
const fromLocalInput = (v: string) => new Date(v).getTime();

function download(name: string, type: string, text: string) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

function Highlighted({ hit }: { hit: Hit }) {
  const msg = String(hit.source?.message ?? "");
  if (!hit.highlight) return <>{msg}</>;
  return (
    <>
      {splitHighlight(hit.highlight).map((s, i) => (s.hit ? <mark key={i}>{s.text}</mark> : <span key={i}>{s.text}</span>))}
    </>
  );
}

export default function LogSearch({ query }: { query: string }) {
  const state = useMemo(() => parseState(query), [query]);
  const key = searchHref(state);
  const [draft, setDraft] = useState(state.q);
  const [result, setResult] = useState<Result | null>(null);
  const [hits, setHits] = useState<Hit[]>([]);
  const [window0, setWindow0] = useState({ from: 0, to: 0 });
  const [tailTimes, setTailTimes] = useState<number[]>([]);
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  const [paused, setPaused] = useState(false);
  const [more, setMore] = useState(true);
  const [selected, setSelected] = useState<Hit | null>(null);
  const [custom, setCustom] = useState<{ from: string; to: string } | null>(null);
  const [nonce, setNonce] = useState(0); // "Search" again with the same state
  const [scroll, setScroll] = useState(0);
  const [height, setHeight] = useState(400);
  const box = useRef<HTMLDivElement>(null);

  useEffect(() => setDraft(state.q), [state.q]);
  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const ro = new ResizeObserver(() => setHeight(el.clientHeight));
    ro.observe(el);
    return () => ro.disconnect();
  }, []);

  // The search: hits, histogram and facets in one request.
  useEffect(() => {
    const ac = new AbortController();
    const now = Date.now();
    setBusy(true);
    setError("");
    setSelected(null);
    getJSON<Result>(`/api/logsearch?${requestParams(state, now, { size: String(PAGE), histogram: "1", facets: "1" })}`, ac.signal).then(
      (r) => {
        setResult(r);
        setHits(r.hits);
        setTailTimes([]);
        setMore(r.hits.length === PAGE);
        setWindow0(bounds(state, now));
        setBusy(false);
        if (box.current) box.current.scrollTop = 0;
      },
      (e) => {
        if (ac.signal.aborted) return;
        setError(e.message);
        setResult(null);
        setHits([]);
        setBusy(false);
      },
    );
    return () => ac.abort();
  }, [key, nonce]); // eslint-disable-line react-hooks/exhaustive-deps

  // Live tail: every 2 s, the lines since the newest one shown (the same
  // millisecond again, deduplicated by id). Paused, nothing is fetched or
  // held; resuming continues from the newest line, 500 lines per fetch.
  const newest = hits[0]?.ts ?? window0.to;
  const newestRef = useRef(newest);
  newestRef.current = newest;
  useEffect(() => {
    if (!state.tail || paused || !result) return;
    let stop = false;
    let timer: ReturnType<typeof setTimeout>;
    const ac = new AbortController();
    const tick = async () => {
      const since = newestRef.current;
      const now = Date.now();
      const p = requestParams(state, now, { order: "asc", size: String(PAGE), after: String(since - 1) });
      p.set("from", String(since));
      p.set("to", String(Math.max(now, since + 1)));
      try {
        const r = await getJSON<Result>(`/api/logsearch?${p}`, ac.signal);
        if (stop) return;
        if (r.hits.length > 0) {
          setHits((old) => {
            const seen = new Set(old.map((h) => h.id));
            const fresh = r.hits.filter((h) => !seen.has(h.id));
            if (fresh.length > 0) setTailTimes((t) => [...t, ...fresh.map((h) => h.ts)].slice(-MAX_LINES));
            return mergeNewer(old, fresh, MAX_LINES);
          });
        }
        setWindow0((w) => ({ from: w.from, to: now }));
        setError("");
      } catch (e) {
        if (!stop) setError((e as Error).message);
      }
      if (!stop) timer = setTimeout(tick, TAIL_MS);
    };
    timer = setTimeout(tick, TAIL_MS);
    return () => {
      stop = true;
      ac.abort();
      clearTimeout(timer);
    };
  }, [state.tail, paused, result, key]); // eslint-disable-line react-hooks/exhaustive-deps

  const loadOlder = async () => {
    const oldest = hits[hits.length - 1];
    if (!oldest) return;
    const p = requestParams(state, Date.now(), { size: String(PAGE) });
    p.set("from", String(window0.from));
    p.set("to", String(oldest.ts));
    try {
      const r = await getJSON<Result>(`/api/logsearch?${p}`);
      const seen = new Set(hits.map((h) => h.id));
      const older = r.hits.filter((h) => !seen.has(h.id));
      setMore(older.length > 0 && r.hits.length === PAGE);
      setHits([...hits, ...older].slice(0, MAX_LINES * 2));
    } catch (e) {
      setError((e as Error).message);
    }
  };

  const buckets = useMemo(
    () => (result?.interval ? fillBuckets(result.histogram ?? [], result.interval, window0.from, window0.to, tailTimes) : []),
    [result, window0, tailTimes],
  );
  const w = windowFor(hits.length, ROW, scroll, height);
  const set = (patch: Partial<SearchState>) => go({ ...state, ...patch });
  const toggle = (f: Filter) => go(toggleFilter(state, f));
  const total = result ? `${result.total.toLocaleString()}${result.totalRelation === "gte" ? "+" : ""}` : "";

  return (
    <section className="logsearch">
      <form
        className="toolbar"
        role="search"
        onSubmit={(e) => {
          e.preventDefault();
          if (draft === state.q) setNonce(nonce + 1);
          else set({ q: draft });
        }}
      >
        <h2>Log search</h2>
        <input
          className="lsq"
          aria-label="query"
          placeholder='query_string, e.g. level:error AND "connection reset"'
          value={draft}
          onChange={(e) => setDraft(e.target.value)}
          autoFocus
        />
        <button type="submit">Search</button>
        <select
          aria-label="time range"
          value={state.range}
          onChange={(e) => {
            const v = e.target.value;
            if (v === "custom") {
              const b = bounds(state, Date.now());
              setCustom({ from: toLocalInput(b.from), to: toLocalInput(b.to) });
            } else set({ range: v, from: undefined, to: undefined });
          }}
        >
          <option value="15m">Last 15 minutes</option>
          <option value="1h">Last hour</option>
          <option value="24h">Last 24 hours</option>
          <option value="custom">Custom…</option>
        </select>
        {state.range !== "custom" && (
          <button type="button" aria-pressed={state.tail} onClick={() => set({ tail: !state.tail })}>
            {state.tail ? "■ Stop tail" : "▶ Live tail"}
          </button>
        )}
        {state.tail && (
          <button type="button" aria-pressed={paused} onClick={() => setPaused(!paused)}>
            {paused ? "Resume" : "Pause"}
          </button>
        )}
        <button type="button" disabled={hits.length === 0} onClick={() => download("logs.ndjson", "application/x-ndjson", toNDJSON(hits))}>
          Export NDJSON
        </button>
        <button type="button" disabled={hits.length === 0} onClick={() => download("logs.csv", "text/csv", toCSV(hits))}>
          Export CSV
        </button>
      </form>
      {custom && (
        <form
          className="toolbar"
          aria-label="custom time range"
          onSubmit={(e) => {
            e.preventDefault();
            const from = fromLocalInput(custom.from);
            const to = fromLocalInput(custom.to);
            if (!(from < to)) {
              setError("the start of the range must be before its end");
              return;
            }
            setCustom(null);
            set({ range: "custom", from, to, tail: false });
          }}
        >
          <label>
            From <input type="datetime-local" aria-label="from" value={custom.from} onChange={(e) => setCustom({ ...custom, from: e.target.value })} />
          </label>
          <label>
            To <input type="datetime-local" aria-label="to" value={custom.to} onChange={(e) => setCustom({ ...custom, to: e.target.value })} />
          </label>
          <button type="submit">Apply</button>
          <button type="button" onClick={() => setCustom(null)}>
            Cancel
          </button>
        </form>
      )}
      {error && (
        <p role="alert" className="error lserror">
          {error}
        </p>
      )}
      <div className="lsstatus">
        <span className="count" data-testid="log-total">
          {busy ? "searching…" : result ? `${total} lines` : ""}
        </span>
        {state.range === "custom" && <span className="note">{`${stamp(window0.from)} – ${stamp(window0.to)}`}</span>}
        {state.tail && <span className="note">{paused ? "tail paused" : "● tailing"}</span>}
        {result?.namespaces && <span className="note">only namespaces where you may read logs: {result.namespaces.join(", ")}</span>}
        {state.filters.map((f) => (
          <button type="button" key={`${f.field}:${f.value}`} className="chip" aria-label={`remove filter ${f.field}=${f.value}`} onClick={() => toggle(f)}>
            {f.field}={f.value} ×
          </button>
        ))}
        {state.filters.length > 1 && <span className="note">({describe(state.filters)})</span>}
      </div>
      <Histogram buckets={buckets} interval={result?.interval ?? 0} onPick={(b) => set({ range: "custom", from: b.key, to: b.key + (result?.interval ?? 0), tail: false })} />
      <div className="lsbody">
        <aside className="facets" aria-label="field filters">
          {FACETS.map((f) => {
            const vals = result?.facets?.[f] ?? [];
            return (
              <div key={f} className="facet" data-facet={f}>
                <h3>{f}</h3>
                {vals.length === 0 && <p className="note">—</p>}
                <ul>
                  {vals.map((v) => {
                    const on = hasFilter(state, { field: f, value: v.value });
                    return (
                      <li key={v.value}>
                        <button type="button" aria-pressed={on} className={on ? "on" : ""} onClick={() => toggle({ field: f, value: v.value })} title={`${f}=${v.value}`}>
                          <span className="fv">{v.value}</span> <span className="fc">{v.count.toLocaleString()}</span>
                        </button>
                      </li>
                    );
                  })}
                </ul>
                {(result?.facetOther?.[f] ?? 0) > 0 && <p className="note">+{result!.facetOther![f].toLocaleString()} in other values</p>}
              </div>
            );
          })}
        </aside>
        <div className="lsresults">
          <div className="scroller lslist" ref={box} onScroll={(e) => setScroll(e.currentTarget.scrollTop)} {...(hits.length > 0 ? { role: "list", "aria-label": "log lines" } : {})}>
            <div style={{ height: w.padTop }} aria-hidden />
            {hits.slice(w.start, w.end).map((h) => {
              const k = k8s(h);
              const level = String(h.source?.level ?? "");
              return (
                <div
                  role="listitem"
                  key={h.id}
                  className={`lsrow${selected?.id === h.id ? " sel" : ""}`}
                  style={{ height: ROW }}
                  data-pod={k.pod_name}
                  tabIndex={0}
                  onClick={() => setSelected(h)}
                  onKeyDown={(e) => e.key === "Enter" && setSelected(h)}
                >
                  <time dateTime={new Date(h.ts).toISOString()}>{clock(h.ts)}</time>
                  <span className="src" title={`${k.namespace_name}/${k.pod_name}/${k.container_name}`}>
                    {k.pod_name}/{k.container_name}
                  </span>
                  {level && <span className={`lvl lvl-${level.toLowerCase()}`}>{level}</span>}
                  <span className="msg">
                    <Highlighted hit={h} />
                  </span>
                </div>
              );
            })}
            <div style={{ height: w.padBottom }} aria-hidden />
            {result && hits.length === 0 && !busy && <p className="note">No log lines match.</p>}
          </div>
          {more && hits.length > 0 && !state.tail && (
            <button type="button" onClick={loadOlder}>
              Load older lines
            </button>
          )}
        </div>
        {selected && <Detail hit={selected} onClose={() => setSelected(null)} onFilter={toggle} />}
      </div>
    </section>
  );
}

function Histogram({ buckets, interval, onPick }: { buckets: Bucket[]; interval: number; onPick: (b: Bucket) => void }) {
  const W = 1000;
  const H = 60;
  const rs = bars(buckets, W, H);
  const sum = buckets.reduce((a, b) => a + b.count, 0);
  if (buckets.length === 0) return <div className="histogram empty" />;
  return (
    <figure className="histogram">
      <svg viewBox={`0 0 ${W} ${H}`} preserveAspectRatio="none" role="img" aria-label={`${sum} matching lines over time, ${buckets.length} bars of ${interval / 1000} s`}>
        {rs.map((r) => (
          <rect key={r.bucket.key} className="bar" x={r.x} y={r.y} width={r.w} height={Math.max(r.h, 0)} data-count={r.bucket.count} onClick={() => r.bucket.count > 0 && onPick(r.bucket)}>
            <title>{`${stamp(r.bucket.key)}: ${r.bucket.count} lines`}</title>
          </rect>
        ))}
        {/* Full-height hit areas so small bars are easy to click. */}
      </svg>
      <figcaption>
        <span>{stamp(buckets[0].key)}</span>
        <span>{stamp(buckets[buckets.length - 1].key + interval)}</span>
      </figcaption>
    </figure>
  );
}

interface Ctx {
  hits: Hit[];
}

function Detail({ hit, onClose, onFilter }: { hit: Hit; onClose: () => void; onFilter: (f: Filter) => void }) {
  const k = k8s(hit);
  const [n, setN] = useState(0);
  const [ctx, setCtx] = useState<Ctx | null>(null);
  const [error, setError] = useState("");
  useEffect(() => {
    setN(0);
    setCtx(null);
    setError("");
  }, [hit.id]);
  useEffect(() => {
    if (n === 0) return;
    const ac = new AbortController();
    const p = new URLSearchParams({ namespace: k.namespace_name ?? "", container: k.container_name ?? "", ts: String(hit.ts), n: String(n) });
    if (k.pod_id) p.set("podId", k.pod_id);
    else p.set("pod", k.pod_name ?? "");
    getJSON<Ctx>(`/api/logsearch/context?${p}`, ac.signal).then(setCtx, (e) => !ac.signal.aborted && setError(e.message));
    return () => ac.abort();
  }, [n, hit.id]); // eslint-disable-line react-hooks/exhaustive-deps
  const fields: [string, string, unknown][] = [
    ["namespace", "namespace", k.namespace_name],
    ["pod", "pod", k.pod_name],
    ["container", "container", k.container_name],
    ["host", "host", k.host],
    ["stream", "stream", hit.source?.stream],
    ["level", "level", hit.source?.level],
  ];
  return (
    <aside className="lsdetail" aria-label="log line">
      <div className="toolbar">
        <strong>{stamp(hit.ts)}</strong>
        <span className="spacer" />
        <button type="button" onClick={() => setN(n === 0 ? 20 : Math.min(200, n * 2))}>
          {n === 0 ? "Show context" : "More context"}
        </button>
        <button type="button" aria-label="close" onClick={onClose}>
          ×
        </button>
      </div>
      <dl className="summary">
        {fields
          .filter(([, , v]) => v !== undefined && v !== "")
          .map(([label, field, v]) => (
            <div key={label} style={{ display: "contents" }}>
              <dt>{label}</dt>
              <dd>
                {String(v)}{" "}
                <button type="button" className="small" aria-label={`filter ${field}=${v}`} onClick={() => onFilter({ field, value: String(v) })}>
                  filter
                </button>
              </dd>
            </div>
          ))}
        {Object.entries(k.labels ?? {}).map(([lk, lv]) => (
          <div key={lk} style={{ display: "contents" }}>
            <dt>label {lk}</dt>
            <dd>
              {String(lv)}{" "}
              <button type="button" className="small" aria-label={`filter label ${lk}=${lv}`} onClick={() => onFilter({ field: `label.${lk}`, value: String(lv) })}>
                filter
              </button>
            </dd>
          </div>
        ))}
      </dl>
      <pre className="lsmsg">{String(hit.source?.message ?? "")}</pre>
      {error && (
        <p role="alert" className="error">
          {error}
        </p>
      )}
      {ctx && (
        <ol className="lscontext" aria-label="context">
          {ctx.hits.map((c) => (
            <li key={c.id} className={c.id === hit.id ? "sel" : ""} aria-current={c.id === hit.id ? "true" : undefined}>
              <time>{clock(c.ts)}</time> {String(c.source?.message ?? "")}
            </li>
          ))}
        </ol>
      )}
      <details>
        <summary>Document</summary>
        <pre className="lsmsg">{JSON.stringify(hit.source, null, 2)}</pre>
      </details>
    </aside>
  );
}
