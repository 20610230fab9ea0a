// Browser part of `skiff-bench dashboard` (cmd/skiff-bench/dashboard.go),
// which starts the API server with PODS pods in namespace NS and the
// dashboard backend, and passes DASHBOARD_URL, ADMIN_TOKEN, CHROMIUM,
// API_URL, API_CA, NS, PODS, FILTER, FILTER_ROWS and UPDATES.
//
// Prints progress as "step: ..." lines and the measurements as one line
// "RESULT {json}"; then keeps the browser open on the pods table until its
// stdin closes (the benchmark reads the backend's RSS meanwhile).
//
// Times are taken in the page: a MutationObserver notes Date.now() when
// the DOM first shows what is awaited, so neither Playwright's polling nor
// its round trips are counted.
import { chromium } from "playwright-core";
import { readFileSync } from "node:fs";
import { request } from "node:https";

const env = (k) => {
  if (!process.env[k]) throw new Error(`${k} is not set`);
  return process.env[k];
};
const url = env("DASHBOARD_URL");
const ns = env("NS");
const pods = Number(env("PODS"));
const filter = env("FILTER");
const filterRows = Number(env("FILTER_ROWS"));
const updates = Number(env("UPDATES"));
const apiURL = new URL(env("API_URL"));
const apiCA = readFileSync(env("API_CA"));
const step = (s) => console.log(`step: ${s}`);
const listURL = `${url}/#/r/core/v1/pods?ns=${encodeURIComponent(ns)}`;

// createPod POSTs a pod to the API server as the admin.
function createPod(name) {
  const body = JSON.stringify({
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name, namespace: ns, labels: { app: "bench-update" } },
    spec: { containers: [{ name: "c", image: "registry.k8s.io/pause:3.10" }] },
  });
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: apiURL.hostname,
        port: apiURL.port,
        method: "POST",
        path: `/api/v1/namespaces/${encodeURIComponent(ns)}/pods`,
        ca: apiCA,
        headers: { Authorization: `Bearer ${env("ADMIN_TOKEN")}`, "Content-Type": "application/json", "Content-Length": Buffer.byteLength(body) },
      },
      (res) => {
        let out = "";
        res.on("data", (d) => (out += d));
        res.on("end", () => (res.statusCode === 201 ? resolve() : reject(new Error(`create ${name}: ${res.statusCode} ${out}`))));
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

// arm installs, in the page, a watch for a DOM state; collect waits for
// it and returns the page's Date.now() when the state was first seen.
// Kinds: "table" (the total shows n items and a row is drawn), "filtered"
// (the total shows n items and every drawn row's name holds the text, n
// of them), "row" (a row named name is drawn).
async function arm(page, cond, timeout = 60000) {
  await page.evaluate(
    ({ cond, timeout }) => {
      const ok = () => {
        const count = document.querySelector(".count")?.textContent;
        const rows = [...document.querySelectorAll("tbody tr[data-name]")];
        switch (cond.kind) {
          case "table":
            return count === `${cond.n} items` && rows.length > 0;
          case "filtered":
            return count === `${cond.n} items` && rows.length === cond.n && rows.every((r) => r.dataset.name.includes(cond.text));
          case "row":
            return rows.some((r) => r.dataset.name === cond.name);
        }
        throw new Error(`unknown condition ${cond.kind}`);
      };
      window.__benchSeen = new Promise((resolve, reject) => {
        if (ok()) return resolve(Date.now());
        const mo = new MutationObserver(() => {
          if (ok()) {
            const t = Date.now();
            mo.disconnect();
            clearTimeout(timer);
            resolve(t);
          }
        });
        mo.observe(document, { subtree: true, childList: true, characterData: true, attributes: true });
        const timer = setTimeout(() => {
          mo.disconnect();
          reject(new Error(`${JSON.stringify(cond)} not seen in ${timeout} ms (count: ${document.querySelector(".count")?.textContent})`));
        }, timeout);
      });
    },
    { cond, timeout },
  );
}
const collect = (page) => page.evaluate(() => window.__benchSeen);

const browser = await chromium.launch({
  executablePath: env("CHROMIUM"),
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
});
const results = {};
try {
  step("log in");
  const ctx = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 800 } });
  const login = await ctx.newPage();
  login.on("pageerror", (e) => console.log("page error:", e.message));
  const l0 = Date.now();
  await login.goto(url + "/");
  await login.fill("#token", env("ADMIN_TOKEN"));
  await login.click("button[type=submit]");
  await login.waitForSelector("text=● live", { timeout: 60000 });
  results.login_ms = Date.now() - l0;

  // A new tab opening the pods table: the backend's pods cache is cold
  // (nothing subscribed to pods yet), so this includes its list of them.
  const openTable = async () => {
    const page = await ctx.newPage();
    page.on("pageerror", (e) => console.log("page error:", e.message));
    const t0 = Date.now();
    await page.goto(listURL, { waitUntil: "commit" });
    await arm(page, { kind: "table", n: pods }, 120000);
    const ms = (await collect(page)) - t0;
    // How much of it was loading the page (the app's script ran by DOMContentLoaded).
    const load = await page.evaluate(() => Math.round(performance.getEntriesByType("navigation")[0]?.domContentLoadedEventEnd ?? -1));
    return { page, ms, load };
  };
  step(`first render of the pods table (${pods} pods), cache cold`);
  const cold = await openTable();
  results.first_render_ms = cold.ms;
  results.first_render_page_load_ms = cold.load;
  await cold.page.close();
  step("first render again in a new tab, cache warm");
  const { page, ms, load } = await openTable();
  results.first_render_warm_ms = ms;
  results.first_render_warm_page_load_ms = load;
  await login.close();

  step(`filter "${filter}" (${filterRows} rows)`);
  await arm(page, { kind: "filtered", n: filterRows, text: filter });
  const f0 = Date.now();
  await page.fill("input[aria-label=filter]", filter);
  results.filter_ms = (await collect(page)) - f0;
  results.filter_rows = filterRows;
  await arm(page, { kind: "table", n: pods });
  await page.fill("input[aria-label=filter]", "");
  await collect(page);

  step(`${updates} pod creates until their row is drawn`);
  // Names sort before pod-*, so each new pod is the table's first row.
  const run = Date.now().toString(36);
  results.update_ms = [];
  for (let i = 0; i < updates; i++) {
    const name = `a-${run}-${String(i).padStart(3, "0")}`;
    await arm(page, { kind: "row", name });
    const t0 = Date.now();
    await createPod(name);
    results.update_ms.push((await collect(page)) - t0);
    await new Promise((r) => setTimeout(r, 250));
  }
  console.log("RESULT " + JSON.stringify(results));

  // Hold the one tab on the pods table until the benchmark is done.
  await new Promise((resolve) => {
    process.stdin.on("end", resolve);
    process.stdin.on("close", resolve);
    process.stdin.resume();
  });
} finally {
  await browser.close();
}
