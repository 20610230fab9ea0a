// The websocket client: one socket per tab, subscriptions multiplexed by
// id, reconnect with backoff and resume (the rows held are sent as
// "known", so the backend sends only what changed).

export type Obj = { metadata: { name: string; namespace?: string; resourceVersion?: string; [k: string]: unknown }; [k: string]: unknown };

export interface Query {
  group: string;
  version: string;
  resource: string;
  namespace: string;
  filter?: { text?: string; labels?: string; fields?: Record<string, string> };
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

type Listener = (v: View, err?: string) => void;

interface Sub {
  query: Query;
  view: View;
  listener: Listener;
}

export class Live {
  private ws?: WebSocket;
  private subs = new Map<string, Sub>();
  private next = 1;
  private backoff = 250;
  private closed = false;
  status: "connecting" | "open" | "closed" = "connecting";
  onStatus?: (s: Live["status"]) => void;

  constructor(private url = defaultURL()) {
    this.connect();
  }

  private connect() {
    this.setStatus("connecting");
    const ws = new WebSocket(this.url);
    this.ws = ws;
    ws.onopen = () => {
      this.backoff = 250;
      this.setStatus("open");
      for (const [id, s] of this.subs) this.send(id, s);
    };
    ws.onmessage = (ev) => {
      let m: { type: string; id?: string; code?: number; message?: string };
      try {
        m = JSON.parse(ev.data);
      } catch {
        return;
      }
      const s = m.id ? this.subs.get(m.id) : undefined;
      if (m.type === "page" && s) {
        if (s.view.apply(m as PageMsg)) s.listener(s.view);
      } else if (m.type === "error") {
        if (m.code === 401) window.dispatchEvent(new Event("skiff:logout"));
        if (s) s.listener(s.view, m.message);
        else console.warn("dashboard:", m.message);
      }
    };
    ws.onclose = () => {
      this.setStatus("closed");
      if (this.closed) return;
      setTimeout(() => this.connect(), this.backoff);
      this.backoff = Math.min(this.backoff * 2, 10000);
    };
  }

  private setStatus(s: Live["status"]) {
    this.status = s;
    this.onStatus?.(s);
  }

  private send(id: string, s: Sub) {
    if (this.ws?.readyState !== WebSocket.OPEN) return;
    this.ws.send(JSON.stringify({ type: "subscribe", id, ...s.query, known: s.view.known() }));
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
        this.send(id, s);
      },
      close: () => {
        this.subs.delete(id);
        if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify({ type: "unsubscribe", id }));
      },
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
