import { useEffect, useRef, useState } from "react";
import type { Live, Obj, Query } from "./live";
import type { MetricsMsg, MetricsQuery } from "./metrics";

export interface LiveState {
  rows: Obj[];
  total: number;
  offset: number;
  error?: string;
  /** revoked: the backend ended the subscription (access revoked); rows is empty. */
  revoked?: boolean;
  loaded: boolean;
}

/** useLive keeps a subscription open while the component is mounted. */
export function useLive(live: Live | null, query: Query | null): LiveState {
  const [state, setState] = useState<LiveState>({ rows: [], total: 0, offset: 0, loaded: false });
  const sub = useRef<ReturnType<Live["subscribe"]> | null>(null);
  const key = query ? `${query.group}/${query.version}/${query.resource}/${query.namespace}` : "";
  useEffect(() => {
    if (!live || !query) return;
    setState({ rows: [], total: 0, offset: 0, loaded: false });
    sub.current = live.subscribe(query, (v, error, revoked) =>
      setState({ rows: v.list(), total: v.total, offset: v.offset, error, revoked, loaded: true }),
    );
    return () => {
      sub.current?.close();
      sub.current = null;
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [live, key]);
  const qs = JSON.stringify(query);
  useEffect(() => {
    if (query && sub.current) sub.current.update(query);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [qs]);
  return state;
}

export function useHash(): string {
  const [h, setH] = useState(location.hash);
  useEffect(() => {
    const f = () => setH(location.hash);
    window.addEventListener("hashchange", f);
    return () => window.removeEventListener("hashchange", f);
  }, []);
  return h;
}

export function useNow(ms = 5000): number {
  const [n, setN] = useState(Date.now());
  useEffect(() => {
    const t = setInterval(() => setN(Date.now()), ms);
    return () => clearInterval(t);
  }, [ms]);
  return n;
}

/** useMetrics keeps a metrics feed open while mounted (null query: none). */
export function useMetrics(live: Live | null, query: MetricsQuery | null): { msg?: MetricsMsg; error?: string } {
  const [state, setState] = useState<{ msg?: MetricsMsg; error?: string }>({});
  const key = JSON.stringify(query);
  useEffect(() => {
    setState({});
    if (!live || !query) return;
    return live.metrics(query, (msg, error) => setState(error ? { error } : { msg }));
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [live, key]);
  return state;
}
