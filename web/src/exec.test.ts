import { describe, expect, it } from "vitest";
import { decode, ExecSession, execURL, frame, resizeFrame, splitCommand, stdinFrame, type ExecStatus } from "./exec";

const text = (b: Uint8Array) => new TextDecoder().decode(b);

class FakeWS {
  binaryType = "blob";
  readyState = 0;
  sent: Uint8Array[] = [];
  closed = false;
  onopen: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: { data: ArrayBuffer | string }) => void) | null = null;
  onclose: ((ev: { code: number; reason: string }) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;
  constructor(public url: string) {}
  send(d: Uint8Array) {
    this.sent.push(d);
  }
  close() {
    this.closed = true;
    this.readyState = 3;
    this.onclose?.({ code: 1005, reason: "" });
  }
  open() {
    this.readyState = 1;
    this.onopen?.({});
  }
  receive(f: Uint8Array | string) {
    this.onmessage?.({ data: typeof f === "string" ? f : f.slice().buffer });
  }
}

function session() {
  let ws!: FakeWS;
  const out: string[] = [];
  const notices: string[] = [];
  const ends: [ExecStatus | null, string][] = [];
  const s = new ExecSession(
    "wss://x/api/exec",
    { output: (d, err) => out.push((err ? "E:" : "") + text(d)), notice: (t) => notices.push(t), end: (st, why) => ends.push([st, why]) },
    (u) => (ws = new FakeWS(u)),
  );
  return { s, ws, out, notices, ends };
}

describe("exec framing", () => {
  it("puts the channel first", () => {
    expect(Array.from(stdinFrame("ls\n"))).toEqual([0, 108, 115, 10]);
    expect(Array.from(frame(4, new Uint8Array([1, 2])))).toEqual([4, 1, 2]);
  });
  it("encodes resizes as the v5 TerminalSize JSON, clamped to whole positive cells", () => {
    const f = resizeFrame(80.7, 24);
    expect(f[0]).toBe(4);
    expect(JSON.parse(text(f.subarray(1)))).toEqual({ Width: 80, Height: 24 });
    expect(JSON.parse(text(resizeFrame(0, -3).subarray(1)))).toEqual({ Width: 1, Height: 1 });
  });
  it("decodes stdout, stderr, status and notices; bad frames are invalid, not thrown", () => {
    expect(decode(frame(1, "hi"))).toMatchObject({ channel: 1 });
    expect(text((decode(frame(2, "oops")) as { data: Uint8Array }).data)).toBe("oops");
    expect(decode(frame(3, '{"status":"Failure","reason":"NonZeroExitCode","exitCode":3}'))).toEqual({
      channel: 3,
      status: { status: "Failure", reason: "NonZeroExitCode", exitCode: 3 },
    });
    expect(decode(frame(6, "refused"))).toEqual({ channel: 6, text: "refused" });
    expect(decode(new Uint8Array())).toMatchObject({ channel: "invalid" });
    expect(decode("text")).toMatchObject({ channel: "invalid" });
    expect(decode(frame(3, "{not json"))).toMatchObject({ channel: "invalid" });
    expect(decode(frame(3, '{"status":"Maybe"}'))).toMatchObject({ channel: "invalid" });
    expect(decode(frame(9, "x"))).toEqual({ channel: "invalid", text: "a frame on unknown channel 9" });
  });
  it("builds the URL with repeated command arguments", () => {
    const u = new URL(execURL({ protocol: "https:", host: "h:8443" }, { namespace: "ns", pod: "p", container: "c", command: ["sh", "-c", "echo a b"], cluster: "m1" }));
    expect(u.protocol).toBe("wss:");
    expect(u.pathname).toBe("/api/exec");
    expect(u.searchParams.getAll("command")).toEqual(["sh", "-c", "echo a b"]);
    expect(u.searchParams.get("container")).toBe("c");
    expect(u.searchParams.get("cluster")).toBe("m1");
    expect(u.searchParams.has("tty")).toBe(false);
    expect(new URL(execURL({ protocol: "http:", host: "h" }, { namespace: "n", pod: "p", command: ["sh"], tty: false })).searchParams.get("tty")).toBe("0");
  });
  it("splits a command line, keeping quotes together", () => {
    expect(splitCommand("/bin/sh")).toEqual(["/bin/sh"]);
    expect(splitCommand(` sh -c "echo a  b" 'x y' `)).toEqual(["sh", "-c", "echo a  b", "x y"]);
    expect(splitCommand("   ")).toEqual([]);
  });
});

describe("ExecSession", () => {
  it("queues input and the size until the socket opens, then sends them in order", () => {
    const { s, ws } = session();
    expect(ws.binaryType).toBe("arraybuffer");
    s.resize(100, 30);
    s.input("a");
    expect(ws.sent).toEqual([]);
    ws.open();
    s.input("b");
    expect(ws.sent.map((f) => [f[0], text(f.subarray(1))])).toEqual([
      [4, '{"Width":100,"Height":30}'],
      [0, "a"],
      [0, "b"],
    ]);
  });
  it("sends a resize only when the size changed", () => {
    const { s, ws } = session();
    ws.open();
    s.resize(80, 24);
    s.resize(80, 24);
    s.resize(81, 24);
    expect(ws.sent.length).toBe(2);
  });
  it("passes output on and ends once with the backend's status", () => {
    const { ws, out, notices, ends } = session();
    ws.open();
    ws.receive(frame(1, "hello-1\r\n"));
    ws.receive(frame(2, "err"));
    ws.receive(frame(6, "refused: unknown channel 9"));
    ws.receive(frame(8, "?"));
    ws.receive(frame(3, '{"status":"Failure","reason":"Forbidden","message":"viewer cannot create pods/exec in namespace team","exitCode":-1}'));
    ws.close();
    ws.close();
    expect(out).toEqual(["hello-1\r\n", "E:err"]);
    expect(notices).toEqual(["refused: unknown channel 9", "ignored a frame on unknown channel 8"]);
    expect(ends).toEqual([[{ status: "Failure", reason: "Forbidden", message: "viewer cannot create pods/exec in namespace team", exitCode: -1 }, "viewer cannot create pods/exec in namespace team"]]);
  });
  it("reports exit codes", () => {
    const { ws, ends } = session();
    ws.open();
    ws.receive(frame(3, '{"status":"Failure","reason":"NonZeroExitCode","exitCode":3}'));
    ws.close();
    expect(ends[0][1]).toBe("exited (code 3)");
  });
  it("close ends the socket (the exec) and sends nothing after", () => {
    const { s, ws, ends } = session();
    ws.open();
    s.close();
    expect(ws.closed).toBe(true);
    expect(s.done).toBe(true);
    expect(ends).toEqual([[null, "connection closed (1005)"]]);
    s.input("late");
    expect(ws.sent).toEqual([]);
  });
});
