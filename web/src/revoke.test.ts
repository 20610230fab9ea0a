import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { Live, LOGOUT, type Obj, type View } from "./live";
import { FakeSocket } from "./fakesocket.test-util";

const obj = (name: string, rv: string): Obj => ({ metadata: { name, namespace: "team", resourceVersion: rv } });
const q = (resource: string) => ({ group: "", version: "v1", resource, namespace: "team" });

let events: Event[];
beforeEach(() => {
  FakeSocket.all = [];
  events = [];
  const win = new EventTarget();
  win.addEventListener(LOGOUT, (e) => events.push(e));
  vi.stubGlobal("window", win);
  vi.stubGlobal("WebSocket", FakeSocket);
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
  vi.unstubAllGlobals();
});

type Call = { rows: string[]; err?: string; revoked?: boolean };
const record = (calls: Call[]) => (v: View, err?: string, revoked?: boolean) =>
  calls.push({ rows: v.list().map((o) => o.metadata.name), err, revoked });

describe("Live revocation", () => {
  it("drops a revoked subscription's rows, ignores its later pages, keeps others and does not re-subscribe it", () => {
    const live = new Live("ws://test/api/ws");
    const ws = FakeSocket.all[0];
    ws.open();
    const cm: Call[] = [];
    const pods: Call[] = [];
    live.subscribe(q("configmaps"), record(cm));
    live.subscribe(q("pods"), record(pods));
    expect(ws.sent.map((m) => m.id)).toEqual(["s1", "s2"]);

    ws.receive({ type: "page", id: "s1", seq: 1, total: 1, offset: 0, order: ["team/a"], upsert: [obj("a", "1")], remove: [] });
    ws.receive({ type: "page", id: "s2", seq: 1, total: 1, offset: 0, order: ["team/p"], upsert: [obj("p", "1")], remove: [] });
    expect(cm.at(-1)).toEqual({ rows: ["a"], err: undefined, revoked: undefined });

    ws.receive({ type: "revoked", id: "s1", code: 403, reason: "Forbidden", message: "access revoked: dev cannot list configmaps in namespace team" });
    expect(cm.at(-1)).toEqual({ rows: [], err: "access revoked: dev cannot list configmaps in namespace team", revoked: true });

    // A late page of the revoked subscription changes nothing.
    const n = cm.length;
    ws.receive({ type: "page", id: "s1", seq: 2, total: 1, offset: 0, order: ["team/a"], upsert: [obj("a", "2")], remove: [] });
    expect(cm.length).toBe(n);
    // The other subscription goes on.
    ws.receive({ type: "page", id: "s2", seq: 2, total: 2, offset: 0, order: ["team/p", "team/q"], upsert: [obj("q", "1")], remove: [] });
    expect(pods.at(-1)?.rows).toEqual(["p", "q"]);
    expect(events).toHaveLength(0);

    // On reconnect only the still-allowed subscription is sent again.
    ws.close();
    vi.advanceTimersByTime(300);
    const ws2 = FakeSocket.all[1];
    ws2.open();
    expect(ws2.sent.map((m) => m.id)).toEqual(["s2"]);
    live.close();
  });

  it("re-asks a revoked subscription when its query changes", () => {
    const live = new Live("ws://test/api/ws");
    const ws = FakeSocket.all[0];
    ws.open();
    const cm: Call[] = [];
    const h = live.subscribe(q("configmaps"), record(cm));
    ws.receive({ type: "revoked", id: "s1", code: 403, message: "no" });
    h.update({ ...q("configmaps"), namespace: "other" });
    expect(ws.sent.at(-1)).toMatchObject({ type: "subscribe", id: "s1", namespace: "other" });
    ws.receive({ type: "page", id: "s1", seq: 3, total: 1, offset: 0, order: ["other/b"], upsert: [{ metadata: { name: "b", namespace: "other" } }], remove: [] });
    expect(cm.at(-1)).toEqual({ rows: ["b"], err: undefined, revoked: undefined });
    live.close();
  });

  it("ends the session on a session revocation: logout event with the reason, no reconnect", () => {
    const live = new Live("ws://test/api/ws");
    const ws = FakeSocket.all[0];
    ws.open();
    live.subscribe(q("configmaps"), () => undefined);
    ws.receive({ type: "revoked", code: 401, reason: "SessionRevoked", message: "session revoked: token refused; log in again" });
    expect(events).toHaveLength(1);
    expect((events[0] as CustomEvent).detail).toBe("session revoked: token refused; log in again");
    expect(live.status).toBe("closed");
    vi.advanceTimersByTime(20000);
    expect(FakeSocket.all).toHaveLength(1);
  });
});
