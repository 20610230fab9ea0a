import { describe, expect, it } from "vitest";
import { logsError, logsQuery } from "./podlogs";

describe("pod logs", () => {
  it("asks for the previous instance without follow", () => {
    const q = logsQuery({ ns: "ns", pod: "p", container: "main", follow: true, timestamps: false, previous: true });
    expect(q.get("previous")).toBe("1");
    expect(q.has("follow")).toBe(false);
    expect(q.get("container")).toBe("main");
    const cur = logsQuery({ ns: "ns", pod: "p", container: "", follow: true, timestamps: true, previous: false });
    expect([cur.get("follow"), cur.get("timestamps"), cur.has("previous"), cur.has("container")]).toEqual(["1", "1", false, false]);
  });
  it("says plainly that there is no previous instance", () => {
    const body = JSON.stringify({ code: 400, message: 'previous terminated container "main" in pod "p" not found', reason: "BadRequest" });
    expect(logsError(400, body, true, "main")).toMatch(/^No previous instance of container main: it has not restarted/);
    expect(logsError(400, body, false, "main")).toBe('previous terminated container "main" in pod "p" not found');
    expect(logsError(403, "forbidden text", true, "main")).toBe("forbidden text");
    expect(logsError(502, "", false, "")).toBe("HTTP 502");
  });
});
