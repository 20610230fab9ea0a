// Browser end-to-end test of the dashboard (run by e2e/dashboard_test.go,
// which starts bin/skiff server and passes DASHBOARD_URL, ADMIN_TOKEN,
// VIEWER_TOKEN, KUBECONFIG, CHROMIUM and ARTIFACTS). Exits non-zero on any
// failure; prints one JSON line of measurements.
import { env, kubectl, launch, poll, shot, step } from "./lib.mjs";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const url = env("DASHBOARD_URL");

// indexLogs posts _bulk NDJSON to the embedded log store through the API
// server as the admin (kubectl create --raw).
function indexLogs(ndjson) {
  const tmp = mkdtempSync(join(tmpdir(), "skiff-e2e-logs-"));
  try {
    writeFileSync(join(tmp, "bulk.ndjson"), ndjson);
    const out = JSON.parse(kubectl("create", "--raw", "/logs/_bulk", "-f", join(tmp, "bulk.ndjson")));
    if (out.errors) throw new Error(`bulk: ${JSON.stringify(out.items.find((x) => x.create?.error))}`);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

async function login(browser, token) {
  const ctx = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 800 } });
  const page = await ctx.newPage();
  page.on("pageerror", (e) => console.log("page error:", e.message));
  await page.goto(url + "/");
  await page.fill("#token", token);
  await page.click("button[type=submit]");
  await page.waitForSelector("text=● live", { timeout: 15000 });
  return { ctx, page };
}

const browser = await launch();
const results = {};

// E2E_PART=exec (e2e/dashboard_exec_test.go: a cluster with a real node
// agent, pod default/shell running sleep, Deployment default/logger with
// 2 replicas printing "tick-N from <pod>"): the exec terminal and the
// merged workload logs.
async function execPart() {
  step("exec: the admin opens a shell in pod shell, types a command and sees its output");
  const { ctx, page } = await login(browser, env("ADMIN_TOKEN"));
  await page.goto(url + "/#/o/core/v1/pods/default/shell/exec");
  await page.waitForSelector("input[aria-label=command]");
  if ((await page.inputValue("input[aria-label=command]")) !== "/bin/sh") throw new Error("the command does not default to /bin/sh");
  await page.click("button:has-text('Connect')");
  await page.waitForSelector("[data-testid=exec-state]:has-text('connected')", { timeout: 20000 });
  const screen = () => page.textContent("[data-testid=terminal] .xterm-rows");
  const n = Math.floor(Math.random() * 1e6);
  await page.click("[data-testid=terminal]");
  await page.keyboard.type(`echo hello-$((${n}+1))`);
  await page.keyboard.press("Enter");
  await poll("the command's output in the terminal", async () => (await screen()).includes(`hello-${n + 1}`));
  // The typed line shows the expression, the output its value: the value
  // can only come from the shell.
  await page.keyboard.type("stty size");
  await page.keyboard.press("Enter");
  await poll("a terminal size from the browser's resize", async () => /\b\d+ \d+\b/.test((await screen()).split("stty size")[1] ?? ""));
  await shot(page, "exec-terminal");
  await page.keyboard.type("exit 4");
  await page.keyboard.press("Enter");
  await poll("the exit code shown", async () => ((await page.textContent("[data-testid=exec-ended]", { timeout: 1000 })) ?? "").includes("exited (code 4)"));

  step("merged logs: the Deployment's Logs tab shows lines of both pods, each named, and of a third pod after scaling");
  const podsOf = () => kubectl("get", "pods", "-n", "default", "-l", "app=logger", "--field-selector=status.phase=Running", "-o", "jsonpath={.items[*].metadata.name}").split(" ").filter(Boolean);
  await page.goto(url + "/#/o/apps/v1/deployments/default/logger/logs");
  const shownPods = () => page.$$eval(".mline", (ls) => [...new Set(ls.map((l) => l.getAttribute("data-pod")))].sort());
  await poll("lines of both pods", async () => (await shownPods()).length === 2, 30000);
  const two = podsOf();
  if (JSON.stringify(await shownPods()) !== JSON.stringify([...two].sort())) throw new Error(`pods in the merged log ${await shownPods()}, running ${two}`);
  for (const p of two) {
    const line = await page.textContent(`.mline[data-pod="${p}"] >> nth=-1`);
    if (!line.startsWith(p + " tick-") || !line.includes(`from ${p}`)) throw new Error(`line of ${p}: ${line}`);
  }
  await shot(page, "merged-logs");
  kubectl("scale", "deployment", "logger", "-n", "default", "--replicas=3");
  await poll("lines of the third pod, without reload", async () => (await shownPods()).length === 3, 90000);
  await ctx.close();

  step("exec: the view user is refused with the RBAC message in the terminal");
  const v = await login(browser, env("VIEWER_TOKEN"));
  await v.page.goto(url + "/#/o/core/v1/pods/default/shell/exec");
  await v.page.click("button:has-text('Connect')");
  await v.page.waitForSelector("[data-testid=exec-ended]", { timeout: 20000 });
  const refused = await v.page.textContent("[data-testid=exec-ended]");
  if (refused !== "viewer cannot create pods/exec in namespace default") throw new Error(`viewer exec: ${refused}`);
  await shot(v.page, "exec-denied");
  await v.ctx.close();
}

if (process.env.E2E_PART === "exec") {
  try {
    await execPart();
    console.log(JSON.stringify(results));
  } finally {
    await browser.close();
  }
  process.exit(0);
}

try {
  step("a wrong token is refused with a message");
  {
    const ctx = await browser.newContext({ ignoreHTTPSErrors: true });
    const page = await ctx.newPage();
    const t0 = Date.now();
    await page.goto(url + "/");
    // The first page of the run also pays for the browser's cold start;
    // its time is reported (loginPageMs), not judged here.
    await page.waitForSelector("#token", { timeout: 90000 });
    results.loginPageMs = Date.now() - t0;
    await page.fill("#token", "not-a-token");
    await page.click("button[type=submit]");
    await page.waitForSelector("[role=alert]");
    await shot(page, "login-refused");
    await ctx.close();
  }

  step("admin logs in; the session cookie is HttpOnly and the token is not stored in the page");
  const { ctx, page } = await login(browser, env("ADMIN_TOKEN"));
  const cookies = await ctx.cookies();
  const sc = cookies.find((c) => c.name === "skiff_session");
  if (!sc || !sc.httpOnly || !sc.secure || sc.sameSite !== "Strict") throw new Error(`session cookie: ${JSON.stringify(sc)}`);
  const stored = await page.evaluate(() => JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }) + document.cookie);
  if (stored.includes(env("ADMIN_TOKEN"))) throw new Error("the token is readable by the page");
  await page.waitForSelector("text=Cluster overview");
  await shot(page, "overview");

  step("a Deployment created with kubectl appears without reload");
  await page.goto(url + "/#/r/apps/v1/deployments?ns=default");
  await page.waitForSelector("text=0 items");
  kubectl("create", "deployment", "web", "--image=busybox", "-n", "default");
  const t1 = Date.now();
  await page.waitForSelector('tr[data-name="web"]', { timeout: 10000 });
  results.kubectlToDomMs = Date.now() - t1;
  await shot(page, "deployments");

  step("scale from the UI; the API shows it");
  await page.click('tr[data-name="web"] a');
  await page.waitForSelector("input[aria-label=replicas]");
  await page.fill("input[aria-label=replicas]", "3");
  await page.click("button:has-text('Scale')");
  await poll("spec.replicas = 3", () => kubectl("get", "deployment", "web", "-n", "default", "-o", "jsonpath={.spec.replicas}") === "3");
  await shot(page, "deployment-detail");

  step("edit replicas in YAML, review the diff, apply");
  await page.click("a[role=tab]:has-text('YAML')");
  // The CodeMirror editor holds the whole text in yamlValue (the DOM has
  // only the visible lines).
  const yamlText = () => page.$eval("[data-testid=yaml-editor]", (el) => el.yamlValue);
  const setYaml = (v) => page.$eval("[data-testid=yaml-editor]", (el, v) => (el.yamlValue = v), v);
  // The deployment controller writes status meanwhile: a 409 shows the
  // conflict with a reload button, and the edit is redone on the reload.
  results.conflicts = 0;
  for (let attempt = 0; ; attempt++) {
    await poll("yaml loaded", async () => (await yamlText()).includes("replicas: 3"));
    await setYaml((await yamlText()).replace("replicas: 3", "replicas: 4"));
    await page.click("button:has-text('Review changes')");
    await page.waitForSelector(".diff .add:has-text('replicas: 4')");
    if (attempt === 0) await shot(page, "yaml-diff");
    await page.click("button:has-text('Apply')");
    const wait = (sel, v) => page.waitForSelector(sel).then(() => v, () => "timeout");
    const outcome = await Promise.race([wait("text=Applied", "applied"), wait("text=Conflict:", "conflict")]);
    if (outcome === "timeout") throw new Error("apply showed neither success nor a conflict");
    if (outcome === "applied") break;
    results.conflicts++;
    if (attempt === 0) await shot(page, "yaml-conflict");
    if (attempt >= 5) throw new Error("every apply conflicted");
    await page.click("button:has-text('Reload the current version')");
  }
  await poll("spec.replicas = 4", () => kubectl("get", "deployment", "web", "-n", "default", "-o", "jsonpath={.spec.replicas}") === "4");

  step("a pods table for the namespace shows the Deployment's pods live");
  await page.goto(url + "/#/r/core/v1/pods?ns=default");
  await poll("4 pods listed", async () => (await page.textContent(".count")) === "4 items");
  await shot(page, "pods");

  step("theme switch");
  await page.click("[data-testid=theme-toggle]");
  await shot(page, "pods-light");

  step("log search: lines indexed through /logs/_bulk are found, histogram, facets, context, highlight");
  // The e2e server runs without a node agent (--disable-agent), so no
  // container logs flow: the test indexes lines for two of the web pods
  // into the embedded store as the admin, as a shipper would.
  const pods = kubectl("get", "pods", "-n", "default", "-l", "app=web", "-o", "jsonpath={range .items[*]}{.metadata.name} {.metadata.uid}{'\\n'}{end}")
    .split("\n")
    .map((l) => l.trim().split(" "))
    .slice(0, 2);
  if (pods.length < 2) throw new Error(`want two web pods, have ${JSON.stringify(pods)}`);
  const t0 = Date.now() - 5 * 60_000;
  let bulk = "";
  for (const [i, [name, uid]] of pods.entries()) {
    for (let j = 0; j < 20; j++) {
      bulk += JSON.stringify({ create: { _index: "logs-kubernetes-default", _id: `e2e-${name}-${j}` } }) + "\n";
      bulk +=
        JSON.stringify({
          "@timestamp": new Date(t0 + j * 10_000 + i).toISOString(),
          message: `e2e line ${j} of ${name}${j % 5 === 0 ? " payment failed" : ""}`,
          stream: j % 2 ? "stderr" : "stdout",
          level: j % 5 === 0 ? "error" : "info",
          kubernetes: { namespace_name: "default", pod_name: name, pod_id: uid, container_name: "busybox", host: "e2e-node", labels: { app: "web" } },
        }) + "\n";
    }
  }
  indexLogs(bulk);
  const total = () => page.textContent("[data-testid=log-total]");
  const rowPods = () => page.$$eval(".lsrow", (rs) => rs.map((r) => r.getAttribute("data-pod")));
  const ls0 = Date.now();
  await page.goto(url + "/#/logs?q=e2e&range=1h");
  await poll("40 lines found", async () => (await total()) === "40 lines");
  results.logSearchMs = Date.now() - ls0;
  const barCount = await page.$$eval(".histogram rect.bar", (rs) => rs.filter((r) => Number(r.getAttribute("data-count")) > 0).length);
  if (barCount < 2) throw new Error(`histogram: ${barCount} non-empty bars, want the lines spread over several`);
  if ((await page.locator(".lsrow mark", { hasText: "e2e" }).count()) === 0) throw new Error("the matched word is not highlighted");
  await page.click(`[data-facet=pod] button[title="pod=${pods[0][0]}"]`);
  await poll("the pod facet narrows to 20 lines", async () => (await total()) === "20 lines");
  if ((await rowPods()).some((p) => p !== pods[0][0])) throw new Error("rows of another pod after the pod filter");
  if (!(await page.evaluate(() => location.hash)).includes(`f=pod%3A${pods[0][0]}`)) throw new Error("the filter is not in the URL");
  await page.fill("input[aria-label=query]", "payment AND failed");
  await page.press("input[aria-label=query]", "Enter");
  await poll("the query narrows to 4 lines", async () => (await total()) === "4 lines");
  await page.click(".lsrow >> nth=1");
  await page.click("button:has-text('Show context')");
  await poll("context lines around the hit", async () => (await page.locator(".lscontext li").count()) >= 10);
  if ((await page.locator(".lscontext li[aria-current=true]").count()) !== 1) throw new Error("the hit is not marked in its context");
  await shot(page, "logsearch");
  await page.fill("input[aria-label=query]", "payment AND (failed");
  await page.press("input[aria-label=query]", "Enter");
  await page.waitForSelector(".lserror[role=alert]");

  step("'Search logs' on a pod page and a Deployment page opens the search pre-filtered");
  await page.goto(url + `/#/o/core/v1/pods/default/${pods[1][0]}`);
  await page.click("a:has-text('Search logs')");
  await poll("the pod's 20 lines", async () => (await total()) === "20 lines");
  if ((await rowPods()).some((p) => p !== pods[1][0])) throw new Error("rows of another pod after the pod page's link");
  const [dl] = await Promise.all([page.waitForEvent("download"), page.click("button:has-text('Export CSV')")]);
  const csv = readFileSync(await dl.path(), "utf8").trim().split("\r\n");
  if (csv.length !== 21 || !csv[1].includes(pods[1][0])) throw new Error(`CSV export: ${csv.length} rows, first ${csv[1]}`);
  await page.click("[data-testid=theme-toggle]");
  await shot(page, "logsearch-from-pod");

  step("live tail shows new lines; after a pause it continues from where it stopped");
  const line = (msg) =>
    JSON.stringify({ create: { _index: "logs-kubernetes-default" } }) +
    "\n" +
    JSON.stringify({
      "@timestamp": new Date().toISOString(),
      message: msg,
      stream: "stdout",
      kubernetes: { namespace_name: "default", pod_name: pods[1][0], pod_id: pods[1][1], container_name: "busybox", host: "e2e-node", labels: { app: "web" } },
    }) +
    "\n";
  const firstRow = () => page.textContent(".lsrow >> nth=0");
  await page.click("button:has-text('Live tail')");
  await page.waitForSelector("text=● tailing");
  indexLogs(line("tailed line one"));
  await poll("the tailed line on top", async () => (await firstRow()).includes("tailed line one"));
  await page.click("button:has-text('Pause')");
  await page.waitForSelector("text=tail paused");
  indexLogs(line("written while paused"));
  await page.click("button:has-text('Resume')");
  await poll("the line written during the pause after resuming", async () => (await firstRow()).includes("written while paused"));
  await page.goto(url + "/#/o/apps/v1/deployments/default/web");
  await page.click("a:has-text('Search logs')");
  // 40 lines and the two tailed ones, all from pods the selector app=web picks.
  await poll("the Deployment's 42 lines (by its selector app=web)", async () => (await total()) === "42 lines");

  step("metrics: a pod's page draws CPU and memory charts with real points and adds one each scrape round; the overview ranks it");
  // e2e/dashboard_metrics_test.go's fake agent reports pod demo/metrics-demo
  // (0.25 cores, 64 MiB) to the real metrics add-on every 2 s.
  await page.goto(url + "/#/o/core/v1/pods/demo/metrics-demo");
  const chartPoints = async () => Number((await page.getAttribute("figure.chart >> nth=0", "data-points", { timeout: 1000 })) ?? 0);
  await poll("the pod's CPU chart with points", async () => (await chartPoints()) >= 2, 60000);
  const before = await chartPoints();
  const t2 = Date.now();
  await poll("a point from the next scrape round, without reload", async () => (await chartPoints()) > before, 30000);
  results.chartRoundMs = Date.now() - t2;
  const label = await page.getAttribute("figure.chart >> nth=0", "aria-label");
  if (!/^Pod metrics-demo CPU over the last \d+ min: latest 250m/.test(label)) throw new Error(`chart text alternative: ${label}`);
  await shot(page, "pod-metrics");
  await page.goto(url + "/#/overview?ns=demo");
  await poll("metrics-demo in the top pods", async () => ((await page.textContent("[data-testid=top-pods]", { timeout: 1000 })) ?? "").includes("demo/metrics-demo"), 30000);
  await page.waitForSelector("figure.chart");
  await shot(page, "overview-metrics");

  step("storage: the claims table, a claim's bound volume, usage and pod, and the volume linking back");
  await page.goto(url + "/#/r/core/v1/persistentvolumeclaims?ns=demo");
  await page.waitForSelector('tr[data-name="data"]');
  const pvcRow = await page.textContent('tr[data-name="data"]');
  if (!pvcRow.includes("Bound") || !pvcRow.includes("e2e-pv") || !pvcRow.includes("RWO")) throw new Error(`claims table row: ${pvcRow}`);
  await shot(page, "pvcs");
  await page.click('tr[data-name="data"] a');
  await page.waitForSelector("[data-testid=bound-volume] a:has-text('e2e-pv')");
  await poll("the claim's usage", async () => ((await page.textContent("[data-testid=usage]", { timeout: 1000 })) ?? "").includes("256 MiB of 1.0 GiB used (25%)"), 30000);
  await page.waitForSelector("[data-testid=claim-pods] a:has-text('metrics-demo')");
  await shot(page, "pvc-detail");
  await page.click("[data-testid=bound-volume] a");
  await page.waitForSelector("[data-testid=claim-ref] a:has-text('demo/data')");
  if ((await page.textContent("[data-testid=phase]")) !== "Bound") throw new Error("the volume is not shown Bound");
  await shot(page, "pv-detail");

  step("federation: the member's health and the policy's placement, live; the dashboard switched to the member and back");
  await page.goto(url + "/#/federation");
  await poll("m1 Ready", async () => ((await page.textContent("[data-testid=health-m1]", { timeout: 1000 })) ?? "").startsWith("Ready"), 60000);
  const m1Row = await page.textContent("[data-testid=member-m1]");
  if (!m1Row.includes("zone-a / e2e") || !/v1\.\d+/.test(m1Row)) throw new Error(`member row: ${m1Row}`);
  await poll("fed-web placed on m1 with 2 replicas", async () => /^m1: (\d+\/)?2$/.test(((await page.textContent("[data-testid=placement-fed-web-m1]", { timeout: 1000 })) ?? "").trim()), 60000);
  await shot(page, "federation");
  await page.click('button[aria-label="switch to m1"]');
  await page.waitForSelector("[data-testid=cluster-context]:has-text('m1')");
  // The member has no Deployment in default (the host has web) and the
  // propagated copy of fed-web in fed.
  await page.goto(url + "/#/r/apps/v1/deployments?ns=default");
  await page.waitForSelector("text=0 items");
  await page.goto(url + "/#/r/apps/v1/deployments?ns=fed");
  await page.waitForSelector('tr[data-name="fed-web"]');
  await page.click('tr[data-name="fed-web"] a');
  await page.click("a[role=tab]:has-text('YAML')");
  await poll("the member's copy", async () => (await page.$eval("[data-testid=yaml-editor]", (el) => el.yamlValue)).includes("federation.skiff.io/managed-by: skiff-federation"));
  await page.goto(url + "/#/r/apps/v1/deployments?ns=fed");
  await page.waitForSelector('tr[data-name="fed-web"]');
  await shot(page, "member-context");
  await page.click("button:has-text('Back to the host')");
  await poll("back on the host", async () => (await page.locator("[data-testid=cluster-context]").count()) === 0);
  await page.goto(url + "/#/r/apps/v1/deployments?ns=default");
  await page.waitForSelector('tr[data-name="web"]');
  await ctx.close();

  step("a view user sees the Deployment, the UI offers no delete, and the API refuses it");
  const v = await login(browser, env("VIEWER_TOKEN"));
  await v.page.goto(url + "/#/o/apps/v1/deployments/default/web");
  await v.page.waitForSelector("input[aria-label=replicas]");
  const del = v.page.locator("button:has-text('Delete')");
  if (!(await del.isDisabled())) throw new Error("the Delete button is enabled for a view user");
  await shot(v.page, "viewer-detail");
  const status = await v.page.evaluate(async () => {
    const s = await (await fetch("/api/session")).json();
    const r = await fetch("/api/object?group=apps&version=v1&resource=deployments&namespace=default&name=web", {
      method: "DELETE",
      headers: { "X-CSRF-Token": s.csrf },
    });
    return r.status;
  });
  if (status !== 403) throw new Error(`viewer DELETE answered ${status}, want 403`);
  if (kubectl("get", "deployment", "web", "-n", "default", "-o", "name") !== "deployment.apps/web") throw new Error("the deployment is gone");

  step("the view user, who may not read the member's credentials Secret, cannot switch to it: a clear 403 message");
  await v.page.goto(url + "/#/federation");
  await v.page.waitForSelector('button[aria-label="switch to m1"]');
  await v.page.click('button[aria-label="switch to m1"]');
  await v.page.waitForSelector("[data-testid=switch-error]");
  const switchErr = await v.page.textContent("[data-testid=switch-error]");
  if (!switchErr.includes("viewer cannot get secret federation-system/m1-credentials")) throw new Error(`switch error: ${switchErr}`);
  if ((await v.page.locator("[data-testid=cluster-context]").count()) !== 0) throw new Error("the viewer's dashboard switched anyway");
  await shot(v.page, "member-denied");

  step("the view user's open table is revoked when its RoleBinding is deleted: a message, no stale rows");
  await v.page.goto(url + "/#/r/apps/v1/deployments?ns=default");
  await poll("the viewer's deployments table", async () => (await v.page.locator("tbody tr[data-name=web]").count()) === 1);
  const revokeStart = Date.now();
  kubectl("delete", "rolebinding", "viewer-view", "-n", "default");
  await poll("the revocation in the table", async () => ((await v.page.textContent("tbody")) ?? "").includes("access revoked: viewer cannot"), 15000);
  results.rbacDeleteToRevokedMs = Date.now() - revokeStart;
  if ((await v.page.locator("tbody tr[data-name]").count()) !== 0) throw new Error("stale rows remain after the revocation");
  if ((await v.page.textContent(".count")) !== "access revoked") throw new Error("the count still shows items after the revocation");
  await shot(v.page, "viewer-revoked");
  await v.ctx.close();
  console.log(JSON.stringify(results));
} finally {
  await browser.close();
}
