// The exec terminal (xterm.js), loaded on demand: a container picker, a
// command (default /bin/sh), and a tty to the container through the
// backend's /api/exec (exec.ts). Leaving the tab or the page closes the
// socket, which ends the exec.
import { useEffect, useRef, useState } from "react";
import { Terminal as XTerm } from "@xterm/xterm";
import { FitAddon } from "@xterm/addon-fit";
import "@xterm/xterm/css/xterm.css";
import { currentCluster } from "./api";
import { ExecSession, execURL, splitCommand } from "./exec";

export default function Terminal({ ns, pod, containers }: { ns: string; pod: string; containers: string[] }) {
  const [container, setContainer] = useState(containers[0] ?? "");
  const [command, setCommand] = useState("/bin/sh");
  // run counts connections: each new value opens a new session.
  const [run, setRun] = useState(0);
  const [state, setState] = useState<"idle" | "connecting" | "open" | "ended">("idle");
  const [ended, setEnded] = useState("");
  const [notice, setNotice] = useState("");
  const box = useRef<HTMLDivElement>(null);
  useEffect(() => {
    if (!container && containers[0]) setContainer(containers[0]);
  }, [containers]); // eslint-disable-line react-hooks/exhaustive-deps

  useEffect(() => {
    if (run === 0 || !box.current) return;
    const argv = splitCommand(command);
    const term = new XTerm({ cursorBlink: true, convertEol: false, fontSize: 13, scrollback: 5000 });
    const fit = new FitAddon();
    term.loadAddon(fit);
    term.open(box.current);
    setState("connecting");
    setEnded("");
    setNotice("");
    const s = new ExecSession(execURL(location, { namespace: ns, pod, container, command: argv.length ? argv : ["/bin/sh"], cluster: currentCluster() }), {
      open: () => setState("open"),
      output: (d) => term.write(d),
      notice: (t) => setNotice(t),
      end: (_st, why) => {
        setState("ended");
        setEnded(why);
        term.write(`\r\n\x1b[2m[${why}]\x1b[0m\r\n`);
      },
    });
    const resize = () => {
      try {
        fit.fit();
      } catch {
        /* not laid out yet */
      }
      s.resize(term.cols, term.rows);
    };
    resize();
    const data = term.onData((d) => s.input(d));
    const ro = new ResizeObserver(resize);
    ro.observe(box.current);
    term.focus();
    return () => {
      ro.disconnect();
      data.dispose();
      s.close();
      term.dispose();
    };
  }, [run]); // eslint-disable-line react-hooks/exhaustive-deps

  return (
    <div className="terminal">
      <form
        className="toolbar"
        onSubmit={(e) => {
          e.preventDefault();
          setRun((r) => r + 1);
        }}
      >
        {containers.length > 1 && (
          <select aria-label="container" value={container} onChange={(e) => setContainer(e.target.value)}>
            {containers.map((c) => (
              <option key={c}>{c}</option>
            ))}
          </select>
        )}
        <input aria-label="command" value={command} onChange={(e) => setCommand(e.target.value)} />
        <button type="submit">{state === "open" || state === "connecting" ? "Reconnect" : "Connect"}</button>
        <span className="count" data-testid="exec-state">
          {state === "idle" ? "" : state === "ended" ? "ended" : state === "open" ? "● connected" : "connecting…"}
        </span>
      </form>
      {ended && state === "ended" && (
        <p role="alert" className={ended.startsWith("exited (code 0)") ? "note" : "error"} data-testid="exec-ended">
          {ended}
        </p>
      )}
      {notice && <p className="note">{notice}</p>}
      <div ref={box} className="xterm-box" aria-label="terminal" data-testid="terminal" style={{ height: "60vh", display: run ? "block" : "none" }} />
    </div>
  );
}
