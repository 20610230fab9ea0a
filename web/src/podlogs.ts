// Pod log requests and their errors (pure; Logs.tsx streams them).

/** logsQuery is /api/logs's query: previous reads the last terminated instance and never follows. */
export function logsQuery(o: { ns: string; pod: string; container: string; follow: boolean; timestamps: boolean; previous: boolean }): URLSearchParams {
  const qs = new URLSearchParams({ namespace: o.ns, name: o.pod, tailLines: "1000" });
  if (o.container) qs.set("container", o.container);
  if (o.follow && !o.previous) qs.set("follow", "1");
  if (o.timestamps) qs.set("timestamps", "1");
  if (o.previous) qs.set("previous", "1");
  return qs;
}

/**
 * logsError turns a failed /api/logs answer (the API server's status as
 * JSON, or text) into the message shown; asking for the previous
 * instance of a container that never restarted says so plainly.
 */
export function logsError(status: number, body: string, previous: boolean, container: string): string {
  let msg = body;
  try {
    msg = JSON.parse(body).message ?? body;
  } catch {
    /* text */
  }
  if (previous && status >= 400 && status < 500 && /previous terminated container/i.test(msg))
    return `No previous instance of container ${container || "(default)"}: it has not restarted, or the earlier instance's log is gone. (${msg})`;
  return msg || `HTTP ${status}`;
}
