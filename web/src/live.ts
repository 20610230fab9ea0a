// The websocket client: one socket per tab, subscriptions multiplexed by
// id, reconnect with backoff and resume (the rows held are sent as
// "known", so the backend sends only what changed).
//
// Revocation: the backend re-checks open subscriptions when RBAC changes.
// {"type":"revoked","id":...} ends one subscription: its rows are dropped
// (never shown stale), the listener gets the message with revoked set, and
// it is not re-sent on reconnect (an update re-asks). {"type":"revoked"}
// without id (code 401) ends the session: the socket stops reconnecting
// and "skiff:logout" is dispatched with the message, so the app goes back
// to the login.

import type { MetricsMsg, MetricsQuery } from "./metrics";

export type Obj = { metadata: { name: string; namespace?: string; resourceVersion?: string; [k: string]: unknown }; [k: string]: unknown };

export interface Query {
  group: string;
  version: string;
  resource: string;
  namespace: string;
  /** owner: a uid; only objects with an ownerReference to it */
  filter?: { text?: string; labels?: string; fields?: Record<string, string>; owner?: string };
  sort?: { by?: string; desc?: boolean };
  page?: { offset: number; limit: number };
}

export interface PageMsg {
  type: "page";
  id: string;
  seq: number;
  total: number;
  offset: number;
  order: string[];
  upsert: Obj[];
  remove: string[];
}

export const keyOf = (o: Obj) => (o.metadata.namespace ? `${o.metadata.namespace}/${o.metadata.name}` : o.metadata.name);

/** View is a subscription's rows as the backend last described them. */
export class View {
  rows = new Map<string, Obj>();
  order: string[] = [];
  total = 0;
  offset = 0;
  seq = 0;

  /** apply merges a page message; it ignores pages older than the last one. */
  apply(m: PageMsg): boolean {
    if (m.seq < this.seq) return false;
    this.seq = m.seq;
    for (const k of m.remove) this.rows.delete(k);
    for (const o of m.upsert) this.rows.set(keyOf(o), o);
    this.order = m.order;
    this.total = m.total;
    this.offset = m.offset;
    return true;
  }

  known(): Record<string, string> {
    const k: Record<string, string> = {};
    for (const [key, o] of this.rows) k[key] = String(o.metadata.resourceVersion ?? "");
    return k;
  }

  list(): Obj[] {
    return this.order.map((k) => this.rows.get(k)).filter((o): o is Obj => !!o);
  }
}

/** ServerMsg is a message from the backend other than a page. */
export interface ServerMsg {
  type: string;
  id?: string;
  code?: number;
  reason?: string;
  message?: string;
}

export type Listener = (v: View, err?: string, revoked?: boolean) => void;

interface Sub {
  query: Query;
  view: View;
  listener: Listener;
  revoked?: boolean;
}

/** MetricsListener gets each metrics message, or the error that ended the feed. */
export type MetricsListener = (m: MetricsMsg | undefined, err?: string) => void;

interface Feed {
  query: MetricsQuery;
  listener: MetricsListener;
  ended?: boolean;
}

/** LOGOUT is the window event that sends the app back to the login; its detail is the reason. */
export const LOGOUT = "skiff:logout";

export function logoutEvent(message = ""): Event {
  return new CustomEvent(LOGOUT, { detail: message });
}

export class Live {
  private ws?: WebSocket;
  private subs = new Map<string, Sub>();
  private feeds = new Map<string, Feed>();
  private next = 1;
  private backoff = 250;
  private closed = false;
  status: "connecting" | "open" | "closed" = "connecting";
  onStatus?: (s: Live["status"]) => void;

  /** cluster is the member cluster every subscription reads ("" = the host). */
  constructor(
    private url = defaultURL(),
    readonly cluster = "",
  ) {
    this.connect();
  }

  private connect() {
    this.setStatus("connecting");
    const ws = new WebSocket(this.url);
    this.ws = ws;
    ws.onopen = () => {
      this.backoff = 250;
      this.setStatus("open");
      for (const [id, s] of this.subs) if (!s.revoked) this.send(id, s);
      for (const [id, f] of this.feeds) if (!f.ended) this.sendFeed(id, f);
    };
    ws.onmessage = (ev) => {
      let m: ServerMsg;
      try {
        m = JSON.parse(ev.data);
      } catch {
        return;
      }
      this.handle(m);
    };
    ws.onclose = () => {
      this.setStatus("closed");
      if (this.closed) return;
      setTimeout(() => this.connect(), this.backoff);
      this.backoff = Math.min(this.backoff * 2, 10000);
    };
  }

  /** handle applies one message from the backend. */
  handle(m: ServerMsg) {
    const f = m.id ? this.feeds.get(m.id) : undefined;
    if (f) {
      if (m.type === "metrics") f.listener(m as unknown as MetricsMsg);
      else if (m.type === "error" || m.type === "revoked") {
        f.ended = true;
        f.listener(undefined, m.message || m.type);
      }
      return;
    }
    const s = m.id ? this.subs.get(m.id) : undefined;
    if (m.type === "page") {
      if (s && !s.revoked && s.view.apply(m as unknown as PageMsg)) s.listener(s.view);
    } else if (m.type === "revoked") {
      if (!m.id || m.code === 401) {
        // The session ended: stop reconnecting and go back to the login.
        this.close();
        window.dispatchEvent(logoutEvent(m.message));
        return;
      }
      if (!s) return;
      s.revoked = true;
      s.view = new View();
      s.listener(s.view, m.message || "access revoked", true);
    } else if (m.type === "error") {
      if (m.code === 401) window.dispatchEvent(logoutEvent(m.message));
      if (s) s.listener(s.view, m.message);
      else console.warn("dashboard:", m.message);
    }
  }

  private setStatus(s: Live["status"]) {
    this.status = s;
    this.onStatus?.(s);
  }

  private send(id: string, s: Sub) {
    if (this.ws?.readyState !== WebSocket.OPEN) return;
    this.ws.send(JSON.stringify({ type: "subscribe", id, ...s.query, ...(this.cluster ? { cluster: this.cluster } : {}), known: s.view.known() }));
  }

  /** subscribe returns a function that changes the query and one that ends it. */
  subscribe(query: Query, listener: Listener): { update: (q: Query) => void; close: () => void } {
    const id = `s${this.next++}`;
    const s: Sub = { query, view: new View(), listener };
    this.subs.set(id, s);
    this.send(id, s);
    return {
      update: (q) => {
        s.query = q;
        s.revoked = false;
        this.send(id, s);
      },
      close: () => {
        this.subs.delete(id);
        if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify({ type: "unsubscribe", id }));
      },
    };
  }

  private sendFeed(id: string, f: Feed) {
    if (this.ws?.readyState !== WebSocket.OPEN) return;
    this.ws.send(JSON.stringify({ type: "metrics", id, ...f.query, ...(this.cluster ? { cluster: this.cluster } : {}) }));
  }

  /** metrics opens a metrics feed (a message per scrape round); the result ends it. */
  metrics(query: MetricsQuery, listener: MetricsListener): () => void {
    const id = `m${this.next++}`;
    const f: Feed = { query, listener };
    this.feeds.set(id, f);
    this.sendFeed(id, f);
    return () => {
      this.feeds.delete(id);
      if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify({ type: "unsubscribe", id }));
    };
  }

  close() {
    this.closed = true;
    this.ws?.close();
  }
}

function defaultURL() {
  return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/api/ws`;
}
