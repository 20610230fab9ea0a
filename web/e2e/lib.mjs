// What the dashboard's browser tests share (web/e2e/*.e2e.mjs, run by
// e2e/*_test.go through browser.run, which sets CHROMIUM and ARTIFACTS).
import { chromium } from "playwright-core";
import { execFileSync } from "node:child_process";
import { join } from "node:path";

// env returns a required environment variable.
export const env = (k) => {
  if (!process.env[k]) throw new Error(`${k} is not set`);
  return process.env[k];
};

// kubectl runs kubectl with $KUBECONFIG and returns its trimmed output.
export const kubectl = (...args) => execFileSync("kubectl", ["--kubeconfig", env("KUBECONFIG"), ...args], { encoding: "utf8" }).trim();

// shot saves a full-page screenshot as $ARTIFACTS/<name>.png.
export const shot = (page, name) => page.screenshot({ path: join(env("ARTIFACTS"), `${name}.png`), fullPage: true });

export const step = (s) => console.log(`step: ${s}`);

// poll calls fn every 100 ms until it returns true; a throw counts as not
// yet. It throws with fn's last answer after timeout ms.
export async function poll(what, fn, timeout = 20000) {
  const end = Date.now() + timeout;
  let last;
  while (Date.now() < end) {
    try {
      last = await fn();
      if (last === true) return;
    } catch (e) {
      last = e.message;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what}: not met in ${timeout} ms (last: ${last})`);
}

// launch starts Debian's Chromium ($CHROMIUM) headless.
export const launch = () =>
  chromium.launch({
    executablePath: env("CHROMIUM"),
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
  });
