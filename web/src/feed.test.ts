import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { Live } from "./live";
import type { MetricsMsg } from "./metrics";
import { FakeSocket } from "./fakesocket.test-util";

beforeEach(() => {
  FakeSocket.all = [];
  vi.stubGlobal("window", new EventTarget());
  vi.stubGlobal("WebSocket", FakeSocket);
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
  vi.unstubAllGlobals();
});

const round = (t: number[]): MetricsMsg => ({ type: "metrics", id: "m1", available: true, interval: 15, series: [{ name: "p", t, cpu: t.map(() => 0.5), memory: t.map(() => 1) }] });

describe("Live metrics feeds", () => {
  it("sends the feed, delivers each round, re-opens it after a reconnect and ends it", () => {
    const live = new Live("ws://test/api/ws");
    let ws = FakeSocket.all[0];
    ws.open();
    const got: { m?: MetricsMsg; err?: string }[] = [];
    const close = live.metrics({ kind: "pod", namespace: "team", name: "p" }, (m, err) => got.push({ m, err }));
    expect(ws.sent).toEqual([{ type: "metrics", id: "m1", kind: "pod", namespace: "team", name: "p" }]);
    ws.receive(round([0]));
    ws.receive(round([0, 15]));
    expect(got.map((g) => g.m?.series[0].t.length)).toEqual([1, 2]);

    ws.close();
    vi.advanceTimersByTime(300);
    ws = FakeSocket.all[1];
    ws.open();
    expect(ws.sent).toEqual([{ type: "metrics", id: "m1", kind: "pod", namespace: "team", name: "p" }]);

    close();
    expect(ws.sent.at(-1)).toEqual({ type: "unsubscribe", id: "m1" });
    ws.receive(round([0, 15, 30]));
    expect(got).toHaveLength(2);
  });

  it("a refused or revoked feed reports why, drops its data and is not re-sent", () => {
    const live = new Live("ws://test/api/ws");
    let ws = FakeSocket.all[0];
    ws.open();
    const got: { m?: MetricsMsg; err?: string }[] = [];
    live.metrics({ kind: "node", name: "n1" }, (m, err) => got.push({ m, err }));
    ws.receive(round([0]));
    ws.receive({ type: "revoked", id: "m1", code: 403, message: "access revoked: viewer cannot get nodes.metrics.k8s.io at cluster scope" });
    expect(got.at(-1)).toEqual({ m: undefined, err: "access revoked: viewer cannot get nodes.metrics.k8s.io at cluster scope" });
    ws.close();
    vi.advanceTimersByTime(300);
    ws = FakeSocket.all[1];
    ws.open();
    expect(ws.sent).toEqual([]);
  });
});
