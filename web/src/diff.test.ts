import { describe, expect, it } from "vitest";
import { diffLines, changed } from "./diff";

describe("diffLines", () => {
  it("shows an edited line as - then +", () => {
    const d = diffLines("a\nreplicas: 1\nb", "a\nreplicas: 3\nb");
    expect(d.map((l) => l.op + l.text)).toEqual([" a", "-replicas: 1", "+replicas: 3", " b"]);
    expect(changed(d)).toBe(true);
  });
  it("reports no change for equal texts", () => {
    expect(changed(diffLines("x\ny", "x\ny"))).toBe(false);
  });
  it("handles insertions and deletions", () => {
    const d = diffLines("a\nb\nc", "a\nc\nd");
    expect(d.filter((l) => l.op !== " ").map((l) => l.op + l.text)).toEqual(["-b", "+d"]);
  });
});
