import { useEffect, useRef, useState } from "react";
import type { Live } from "./live";
import type { Resource, Rule } from "./api";
import { NodeRowActions } from "./Actions";
import type { Route } from "./route";
import { useLive, useNow } from "./hooks";
import { columnsFor } from "./columns";
import { objectHref } from "./route";
import { windowFor, pageFor } from "./windowing";
import { moveFocus, scrollFor, ROWS_EVENT } from "./keys";

const ROW = 28;

type ListRoute = Extract<Route, { view: "list" }>;

export function ListView({ live, route, resource, rules = [] }: { live: Live | null; route: ListRoute; resource?: Resource; rules?: Rule[] }) {
  const now = useNow();
  const namespaced = resource?.namespaced ?? true;
  const [filter, setFilter] = useState(route.q);
  const [labels, setLabels] = useState("");
  const [sort, setSort] = useState<{ by: string; desc: boolean }>({ by: "name", desc: false });
  const [scroll, setScroll] = useState(0);
  const [height, setHeight] = useState(600);
  const box = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const ro = new ResizeObserver(() => setHeight(el.clientHeight));
    ro.observe(el);
    return () => ro.disconnect();
  }, []);

  // The backend pages; the browser windows the page it holds.
  const [page, setPage] = useState({ offset: 0, limit: 200 });
  const data = useLive(live, {
    group: route.group,
    version: route.version,
    resource: route.resource,
    namespace: namespaced ? route.ns : "",
    filter: { text: filter, labels },
    sort,
    page,
  });
  const total = data.total;
  const w = windowFor(total, ROW, scroll, height);
  useEffect(() => {
    const want = pageFor(w);
    if (w.start < page.offset || w.end > page.offset + page.limit) setPage(want);
  }, [w.start, w.end, page.offset, page.limit]); // eslint-disable-line react-hooks/exhaustive-deps

  // Keyboard row focus (j/k, Enter opens; keys.ts, App.tsx). The listener
  // reads refs, so keys arriving faster than React renders all count.
  const [focus, setFocus] = useState(-1);
  const cur = useRef({ focus: -1, total, data, route });
  cur.current = { ...cur.current, total, data, route };
  const shape = JSON.stringify([filter, labels, sort]);
  useEffect(() => {
    cur.current.focus = -1;
    setFocus(-1);
  }, [shape]);
  useEffect(() => {
    const onRows = (e: Event) => {
      const a = (e as CustomEvent<string>).detail;
      const c = cur.current;
      if (a === "open") {
        const o = c.data.rows[c.focus - c.data.offset];
        if (o) location.hash = objectHref(c.route.group, c.route.version, c.route.resource, o.metadata.namespace ?? "", o.metadata.name);
        return;
      }
      const next = moveFocus(c.focus, a === "down" ? 1 : -1, c.total);
      c.focus = next;
      setFocus(next);
      const el = box.current;
      if (el && next >= 0) el.scrollTop = scrollFor(next, ROW, el.scrollTop, el.clientHeight, ROW);
    };
    window.addEventListener(ROWS_EVENT, onRows);
    return () => window.removeEventListener(ROWS_EVENT, onRows);
  }, []);

  const cols = columnsFor(route.resource, namespaced, namespaced && route.ns === "");
  // Nodes get cordon/uncordon and a link to the node page's drain per row.
  const nodeRows = route.resource === "nodes" && route.group === "";
  // A revoked subscription shows why instead of rows (never stale ones).
  const revoked = !!data.revoked;
  const rows = [];
  for (let i = w.start; i < w.end && !revoked; i++) {
    const o = data.rows[i - data.offset];
    if (!o) {
      rows.push(
        <tr key={`p${i}`} style={{ height: ROW }}>
          <td colSpan={cols.length + (nodeRows ? 1 : 0)}>…</td>
        </tr>,
      );
      continue;
    }
    rows.push(
      <tr key={`${o.metadata.namespace}/${o.metadata.name}`} style={{ height: ROW }} data-name={o.metadata.name} className={i === focus ? "focused" : undefined} aria-current={i === focus ? "true" : undefined}>
        {cols.map((c, j) => (
          <td key={c.title}>
            {j === (namespaced && route.ns === "" ? 1 : 0) ? (
              <a href={objectHref(route.group, route.version, route.resource, o.metadata.namespace ?? "", o.metadata.name)}>{c.get(o, now)}</a>
            ) : (
              c.get(o, now)
            )}
          </td>
        ))}
        {nodeRows && (
          <td>
            <NodeRowActions node={o} rules={rules} />
          </td>
        )}
      </tr>,
    );
  }
  return (
    <section className="list">
      <div className="toolbar">
        <h2>{resource?.kind ?? route.resource}</h2>
        <input aria-label="filter" placeholder="filter by name…" value={filter} onChange={(e) => setFilter(e.target.value)} />
        <input aria-label="label selector" placeholder="label selector (app=web)" value={labels} onChange={(e) => setLabels(e.target.value)} />
        <span className="count">{revoked ? "access revoked" : data.loaded ? `${total} items` : "loading…"}</span>
      </div>
      {data.error && !revoked && (
        <p role="alert" className="error">
          {data.error}
        </p>
      )}
      <div className="scroller" ref={box} onScroll={(e) => setScroll(e.currentTarget.scrollTop)}>
        <table>
          <thead>
            <tr>
              {cols.map((c) => (
                <th
                  key={c.title}
                  className={c.sort ? "sortable" : ""}
                  aria-sort={sort.by === c.sort ? (sort.desc ? "descending" : "ascending") : undefined}
                  onClick={() => c.sort && setSort({ by: c.sort, desc: sort.by === c.sort ? !sort.desc : false })}
                >
                  {c.title}
                  {sort.by === c.sort ? (sort.desc ? " ▼" : " ▲") : ""}
                </th>
              ))}
              {nodeRows && <th>Actions</th>}
            </tr>
          </thead>
          <tbody>
            {revoked ? (
              <tr className="revoked">
                <td colSpan={cols.length + (nodeRows ? 1 : 0)} role="alert" className="error" style={{ whiteSpace: "normal" }}>
                  {data.error}. Your permissions changed while this view was open; its rows were removed.
                </td>
              </tr>
            ) : (
              <>
                {w.padTop > 0 && <tr style={{ height: w.padTop }} aria-hidden />}
                {rows}
                {w.padBottom > 0 && <tr style={{ height: w.padBottom }} aria-hidden />}
              </>
            )}
          </tbody>
        </table>
      </div>
    </section>
  );
}
