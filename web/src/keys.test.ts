import { describe, expect, it } from "vitest";
import { G_TIMEOUT, KeySequence, moveFocus, scrollFor, targetKind } from "./keys";

const feed = (ks: KeySequence, key: string, extra: Partial<Parameters<KeySequence["feed"]>[0]> = {}) => ks.feed({ key, time: 1000, ...extra });

describe("KeySequence", () => {
  it("maps single keys", () => {
    const ks = new KeySequence();
    expect(feed(ks, "/")).toEqual({ type: "search" });
    expect(feed(ks, "?")).toEqual({ type: "help" });
    expect(feed(ks, "Escape")).toEqual({ type: "escape" });
    expect(feed(ks, "j")).toEqual({ type: "down" });
    expect(feed(ks, "k")).toEqual({ type: "up" });
    expect(feed(ks, "Enter")).toEqual({ type: "open" });
    expect(feed(ks, "x")).toBeNull();
  });
  it("Ctrl-K and Cmd-K search, even while typing", () => {
    const ks = new KeySequence();
    expect(feed(ks, "k", { ctrlKey: true })).toEqual({ type: "search" });
    expect(feed(ks, "K", { metaKey: true, target: "typing" })).toEqual({ type: "search" });
    expect(feed(ks, "k", { ctrlKey: true, altKey: true })).toBeNull();
  });
  it("g sequences go places within the timeout", () => {
    const ks = new KeySequence();
    for (const [k, to] of [["o", "overview"], ["p", "pods"], ["d", "deployments"], ["s", "services"], ["n", "nodes"], ["l", "logs"]]) {
      expect(ks.feed({ key: "g", time: 0 })).toBeNull();
      expect(ks.feed({ key: k, time: 500 })).toEqual({ type: "go", to });
    }
    // Too late: the second key is a key of its own.
    ks.feed({ key: "g", time: 0 });
    expect(ks.feed({ key: "k", time: G_TIMEOUT + 1 })).toEqual({ type: "up" });
    // g then an unknown key does nothing, and the next key is fresh.
    ks.feed({ key: "g", time: 0 });
    expect(ks.feed({ key: "x", time: 10 })).toBeNull();
    expect(ks.feed({ key: "p", time: 20 })).toBeNull();
    // Shift (for ?) does not break a sequence; g g p is still g p.
    ks.feed({ key: "g", time: 0 });
    expect(ks.feed({ key: "Shift", time: 5 })).toBeNull();
    expect(ks.feed({ key: "p", time: 10 })).toEqual({ type: "go", to: "pods" });
  });
  it("ignores keys while typing, but not Escape", () => {
    const ks = new KeySequence();
    for (const k of ["/", "?", "j", "k", "Enter", "g"]) expect(feed(ks, k, { target: "typing" })).toBeNull();
    expect(feed(ks, "p", { target: "typing" })).toBeNull();
    expect(feed(ks, "Escape", { target: "typing" })).toEqual({ type: "escape" });
    // Typing cancels a pending g.
    ks.feed({ key: "g", time: 0 });
    ks.feed({ key: "a", time: 1, target: "typing" });
    expect(ks.feed({ key: "p", time: 2 })).toBeNull();
  });
  it("leaves modified keys and Enter on links and buttons alone", () => {
    const ks = new KeySequence();
    expect(feed(ks, "j", { altKey: true })).toBeNull();
    expect(feed(ks, "/", { ctrlKey: true })).toBeNull();
    expect(feed(ks, "Enter", { target: "control" })).toBeNull();
    expect(feed(ks, "j", { target: "control" })).toEqual({ type: "down" });
  });
});

describe("targetKind", () => {
  const el = (tag: string, attrs: Record<string, string> = {}, editable = false) =>
    ({ tagName: tag.toUpperCase(), type: attrs.type ?? "", isContentEditable: editable, getAttribute: (k: string) => attrs[k] ?? null }) as unknown as EventTarget;
  it("classifies", () => {
    expect(targetKind(el("input"))).toBe("typing");
    expect(targetKind(el("input", { type: "search" }))).toBe("typing");
    expect(targetKind(el("input", { type: "checkbox" }))).toBe("control");
    expect(targetKind(el("textarea"))).toBe("typing");
    expect(targetKind(el("select"))).toBe("typing");
    expect(targetKind(el("div", {}, true))).toBe("typing");
    expect(targetKind(el("div", { role: "textbox" }))).toBe("typing");
    expect(targetKind(el("a"))).toBe("control");
    expect(targetKind(el("button"))).toBe("control");
    expect(targetKind(el("body"))).toBe("none");
    expect(targetKind(null)).toBe("none");
  });
});

describe("row focus", () => {
  it("moves within the rows", () => {
    expect(moveFocus(-1, 1, 5)).toBe(0);
    expect(moveFocus(-1, -1, 5)).toBe(4);
    expect(moveFocus(0, 1, 5)).toBe(1);
    expect(moveFocus(4, 1, 5)).toBe(4);
    expect(moveFocus(0, -1, 5)).toBe(0);
    expect(moveFocus(3, 1, 0)).toBe(-1);
  });
  it("scrolls a focused row into view", () => {
    expect(scrollFor(0, 28, 0, 280)).toBe(0);
    expect(scrollFor(20, 28, 0, 280)).toBe(21 * 28 - 280);
    expect(scrollFor(2, 28, 280, 280)).toBe(56);
    expect(scrollFor(12, 28, 280, 280)).toBe(280);
  });
});
