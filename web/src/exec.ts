// The exec terminal's websocket protocol (backend/exec.go): binary frames
// whose first byte is the channel, the channel numbers of
// v5.channel.k8s.io.
//   browser → backend: 0 stdin bytes; 4 resize {"Width":cols,"Height":rows}
//   backend → browser: 1 stdout; 2 stderr; 3 the end, once (JSON status);
//                      6 a notice (a refused frame; the session goes on)
// The backend opens the API server's pods/exec with the user's own
// credentials; closing the socket ends the exec.

export const STDIN = 0;
export const STDOUT = 1;
export const STDERR = 2;
export const STATUS = 3;
export const RESIZE = 4;
export const NOTICE = 6;

export interface ExecStatus {
  status: "Success" | "Failure";
  reason?: string;
  message?: string;
  exitCode: number;
}

export interface ExecTarget {
  namespace: string;
  pod: string;
  container?: string;
  command: string[];
  tty?: boolean;
  cluster?: string;
}

const enc = new TextEncoder();

export function frame(channel: number, payload: Uint8Array | string): Uint8Array {
  const p = typeof payload === "string" ? enc.encode(payload) : payload;
  const out = new Uint8Array(p.length + 1);
  out[0] = channel;
  out.set(p, 1);
  return out;
}

export const stdinFrame = (data: string | Uint8Array) => frame(STDIN, data);

export function resizeFrame(cols: number, rows: number): Uint8Array {
  const c = Math.max(1, Math.min(65535, Math.floor(cols)));
  const r = Math.max(1, Math.min(65535, Math.floor(rows)));
  return frame(RESIZE, JSON.stringify({ Width: c, Height: r }));
}

export type Decoded =
  | { channel: typeof STDOUT | typeof STDERR; data: Uint8Array }
  | { channel: typeof STATUS; status: ExecStatus }
  | { channel: typeof NOTICE; text: string }
  | { channel: "invalid"; text: string };

/** decode reads one backend frame; anything unexpected is "invalid", never a throw. */
export function decode(buf: ArrayBuffer | Uint8Array | string): Decoded {
  if (typeof buf === "string") return { channel: "invalid", text: "a text frame from the backend" };
  const b = buf instanceof Uint8Array ? buf : new Uint8Array(buf);
  if (b.length === 0) return { channel: "invalid", text: "an empty frame from the backend" };
  const body = b.subarray(1);
  switch (b[0]) {
    case STDOUT:
    case STDERR:
      return { channel: b[0], data: body };
    case STATUS:
      try {
        const s = JSON.parse(new TextDecoder().decode(body));
        if (s && (s.status === "Success" || s.status === "Failure")) return { channel: STATUS, status: { exitCode: 0, ...s } };
      } catch {
        /* below */
      }
      return { channel: "invalid", text: "a status frame that does not parse" };
    case NOTICE:
      return { channel: NOTICE, text: new TextDecoder().decode(body) };
    default:
      return { channel: "invalid", text: `a frame on unknown channel ${b[0]}` };
  }
}

export function execURL(loc: { protocol: string; host: string }, t: ExecTarget): string {
  const qs = new URLSearchParams({ namespace: t.namespace, pod: t.pod });
  if (t.container) qs.set("container", t.container);
  for (const c of t.command) qs.append("command", c);
  if (t.tty === false) qs.set("tty", "0");
  if (t.cluster) qs.set("cluster", t.cluster);
  return `${loc.protocol === "https:" ? "wss:" : "ws:"}//${loc.host}/api/exec?${qs}`;
}

/** splitCommand splits a command line on blanks, keeping quoted parts ("a b" or 'a b') together. */
export function splitCommand(s: string): string[] {
  const out: string[] = [];
  const re = /"([^"]*)"|'([^']*)'|(\S+)/g;
  let m: RegExpExecArray | null;
  while ((m = re.exec(s))) out.push(m[1] ?? m[2] ?? m[3]);
  return out;
}

interface SocketLike {
  binaryType: string;
  readyState: number;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: ArrayBuffer | string }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  send(data: Uint8Array): void;
  close(): void;
}

export interface ExecHandlers {
  output(data: Uint8Array, stderr: boolean): void;
  notice(text: string): void;
  /** end is called once: with the backend's status, or without when the socket closed first. */
  end(status: ExecStatus | null, why: string): void;
  open?(): void;
}

/** ExecSession is one terminal's socket; input before it opens is queued. */
export class ExecSession {
  private sock: SocketLike;
  private queue: Uint8Array[] = [];
  private ended = false;
  private status: ExecStatus | null = null;
  private lastSize = "";

  constructor(url: string, private h: ExecHandlers, make: (url: string) => SocketLike = (u) => new WebSocket(u) as unknown as SocketLike) {
    this.sock = make(url);
    this.sock.binaryType = "arraybuffer";
    this.sock.onopen = () => {
      for (const f of this.queue) this.sock.send(f);
      this.queue = [];
      h.open?.();
    };
    this.sock.onmessage = (ev) => {
      const d = decode(ev.data);
      switch (d.channel) {
        case STDOUT:
        case STDERR:
          h.output(d.data, d.channel === STDERR);
          break;
        case STATUS:
          this.status = d.status;
          break;
        case NOTICE:
          h.notice(d.text);
          break;
        default:
          h.notice(`ignored ${d.text}`);
      }
    };
    this.sock.onerror = () => {};
    this.sock.onclose = (ev) => this.finish(ev.reason || (ev.code === 1000 ? "" : `connection closed (${ev.code})`));
  }

  private finish(why: string) {
    if (this.ended) return;
    this.ended = true;
    this.h.end(this.status, this.status ? statusText(this.status) : why || "connection closed");
  }

  private send(f: Uint8Array) {
    if (this.ended) return;
    if (this.sock.readyState === 1) this.sock.send(f);
    else if (this.sock.readyState === 0) this.queue.push(f);
  }

  input(data: string | Uint8Array) {
    this.send(stdinFrame(data));
  }

  /** resize sends the size unless it is the one sent last. */
  resize(cols: number, rows: number) {
    const k = `${cols}x${rows}`;
    if (k === this.lastSize) return;
    this.lastSize = k;
    this.send(resizeFrame(cols, rows));
  }

  get done() {
    return this.ended;
  }

  /** close ends the exec: the backend cancels the API server's stream. */
  close() {
    this.sock.close();
    this.finish("terminal closed");
  }
}

export function statusText(s: ExecStatus): string {
  if (s.status === "Success") return "exited (code 0)";
  if (s.reason === "NonZeroExitCode") return `exited (code ${s.exitCode})`;
  return s.message || s.reason || "failed";
}
