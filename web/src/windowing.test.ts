import { describe, expect, it } from "vitest";
import { windowFor, pageFor } from "./windowing";

describe("windowFor", () => {
  it("renders a screenful of 30,000 rows", () => {
    const w = windowFor(30000, 28, 28 * 10000, 560, 8);
    expect(w.start).toBe(9992);
    expect(w.end).toBe(10000 + 21 + 8);
    expect(w.end - w.start).toBeLessThan(40);
    expect(w.padTop + (w.end - w.start) * 28 + w.padBottom).toBe(30000 * 28);
  });
  it("clamps at both ends", () => {
    expect(windowFor(5, 28, 0, 1000)).toEqual({ start: 0, end: 5, padTop: 0, padBottom: 0 });
    const w = windowFor(100, 28, 1e9, 560);
    expect(w.end).toBe(100);
    expect(w.padBottom).toBe(0);
    expect(windowFor(0, 28, 0, 500)).toEqual({ start: 0, end: 0, padTop: 0, padBottom: 0 });
  });
});

describe("pageFor", () => {
  it("covers the window", () => {
    const w = windowFor(30000, 28, 28 * 10000, 560);
    const p = pageFor(w);
    expect(p.offset).toBeLessThanOrEqual(w.start);
    expect(p.offset + p.limit).toBeGreaterThanOrEqual(w.end);
  });
});
