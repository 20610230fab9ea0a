// Browser end-to-end test of the detail page's actions (run by
// e2e/dashboard_actions_test.go on a one-node cluster with a real agent:
// Deployment default/roll (busybox, 1 replica), DaemonSet default/agentd,
// bare pod default/restarter whose previous instance printed instance-1).
// Env: DASHBOARD_URL, ADMIN_TOKEN, VIEWER_TOKEN, KUBECONFIG, CHROMIUM,
// ARTIFACTS, NODE_NAME, BUSYBOX_IMAGE. Exits non-zero on any failure.
import { env, kubectl, launch, poll, shot, step } from "./lib.mjs";

const url = env("DASHBOARD_URL");
const nodeName = env("NODE_NAME");
const busybox = env("BUSYBOX_IMAGE");
const t0 = Date.now();

async function login(browser, token) {
  const ctx = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 900 } });
  const page = await ctx.newPage();
  page.on("pageerror", (e) => console.log("page error:", e.message));
  page.on("dialog", (d) => d.accept());
  await page.goto(url + "/");
  await page.fill("#token", token);
  await page.click("button[type=submit]");
  await page.waitForSelector("text=● live", { timeout: 15000 });
  return { ctx, page };
}

const browser = await launch();
const text = async (page, sel) => (await page.textContent(sel, { timeout: 1000 })) ?? "";
const revisions = async (page) => (await page.$$eval("[data-testid=history] tr[data-revision]", (rs) => rs.map((r) => Number(r.getAttribute("data-revision"))))).sort((a, b) => a - b).join(",");
const kubectlRevisions = () =>
  kubectl("rollout", "history", "deployment/roll", "-n", "default")
    .split("\n")
    .map((l) => l.trim().split(/\s+/)[0])
    .filter((x) => /^\d+$/.test(x))
    .map(Number)
    .sort((a, b) => a - b)
    .join(",");

try {
  const { ctx, page } = await login(browser, env("ADMIN_TOKEN"));
  // The Deployment's running pods that are not terminating.
  const rollPods = () =>
    JSON.parse(kubectl("get", "pods", "-n", "default", "-l", "app=roll", "-o", "json"))
      .items.filter((p) => p.status.phase === "Running" && !p.metadata.deletionTimestamp)
      .map((p) => p.metadata.name);
  const rollPod = () => rollPods()[0] ?? "";
  const podsOnNode = () =>
    JSON.parse(kubectl("get", "pods", "-A", "--field-selector", `spec.nodeName=${nodeName}`, "-o", "json"))
      .items.map((p) => p.metadata.name)
      .sort()
      .join(",");

  step("the Deployment's page: revision history, owned ReplicaSet, its pods, its events");
  await page.goto(url + "/#/o/apps/v1/deployments/default/roll");
  await poll("revision 1 in the history, as kubectl rollout history", async () => (await revisions(page)) === "1" && kubectlRevisions() === "1");
  const rs1 = kubectl("get", "rs", "-n", "default", "-l", "app=roll", "-o", "jsonpath={.items[0].metadata.name}");
  await page.waitForSelector(`[data-testid=owned-replicasets] a[data-name="${rs1}"]`);
  const pod1 = rollPod();
  await page.waitForSelector(`[data-testid=workload-pods] a[data-name="${pod1}"]`);
  await poll("the Deployment's ScalingReplicaSet event", async () => (await text(page, "[data-testid=events]")).includes("ScalingReplicaSet"));
  if ((await text(page, "[data-testid=owned-replicasets]")).includes("more")) throw new Error("owned objects of other owners listed");

  step("rollout restart sets the template's restartedAt; a new revision appears live");
  await page.click("[data-testid=rollout] button:has-text('Restart')");
  await poll("restartedAt set", () => /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/.test(kubectl("get", "deployment", "roll", "-n", "default", "-o", "jsonpath={.spec.template.metadata.annotations.kubectl\\.kubernetes\\.io/restartedAt}")));
  await poll("revision 2 listed live", async () => (await revisions(page)) === "1,2");
  await shot(page, "actions-rollout");

  step("a broken image (revision 3), then Undo restores the previous revision's image");
  kubectl("set", "image", "deployment/roll", "main=registry.invalid/busybox:broken", "-n", "default");
  await poll("revision 3 listed live and current", async () => (await revisions(page)) === "1,2,3" && (await text(page, "[data-testid=history] tr[data-revision='3']")).includes("(current)"));
  await page.click("[data-testid=rollout] button:has-text('Undo')");
  await poll("the image rolled back", () => kubectl("get", "deployment", "roll", "-n", "default", "-o", "jsonpath={.spec.template.spec.containers[0].image}") === busybox);
  await page.waitForSelector("[data-testid=rollout] [role=status]:has-text('Rolled back to revision 2')");
  // The controller re-labels revision 2 as 4, as upstream.
  await poll("history 1,3,4 as kubectl", async () => (await revisions(page)) === "1,3,4" && kubectlRevisions() === "1,3,4");
  if (kubectl("get", "deployment", "roll", "-n", "default", "-o", "jsonpath={.spec.template.metadata.annotations.kubectl\\.kubernetes\\.io/restartedAt}") === "")
    throw new Error("the undo lost the restart's annotation (revision 2 had it)");
  await shot(page, "actions-undo");

  step("a Service: its pods by selector and its EndpointSlices; a pod lists the Services selecting it and its owner");
  kubectl("create", "service", "clusterip", "roll", "--tcp=80:80", "-n", "default");
  kubectl("set", "selector", "service/roll", "app=roll", "-n", "default");
  await poll("one pod of the Deployment running", () => rollPods().length === 1 && JSON.parse(kubectl("get", "pods", "-n", "default", "-l", "app=roll", "-o", "json")).items.length === 1, 60000);
  const pod2 = rollPod();
  await page.goto(url + "/#/o/core/v1/services/default/roll");
  await page.waitForSelector(`[data-testid=service-pods] a[data-name="${pod2}"]`, { timeout: 30000 });
  await poll("the Service's EndpointSlice", async () => (await page.locator("[data-testid=endpointslices] a.chip").count()) >= 1);
  await page.waitForSelector("[data-testid=owned-endpointslices] a.chip");
  await page.goto(url + `/#/o/core/v1/pods/default/${pod2}`);
  await page.waitForSelector('[data-testid=pod-services] a[data-name="roll"]');
  const owner = await text(page, "[data-testid=owners]");
  if (!owner.startsWith("ReplicaSet/roll-") || !owner.includes("(controller)")) throw new Error(`pod owners: ${owner}`);
  await page.click("[data-testid=owners] a");
  await page.waitForSelector(`[data-testid=owned-pods] a[data-name="${pod2}"]`);
  await shot(page, "actions-replicaset");

  step("previous logs: the restarted container's earlier instance; a clear message for one that never restarted");
  await page.goto(url + "/#/o/core/v1/pods/default/restarter/logs");
  await poll("the current instance's log", async () => (await text(page, "pre[aria-label=log]")).includes("instance-2"));
  await page.check("input[aria-label=previous]");
  await poll("the previous instance's log", async () => {
    const l = await text(page, "pre[aria-label=log]");
    return l.includes("instance-1") && !l.includes("instance-2") ? true : l;
  });
  if (kubectl("logs", "restarter", "-n", "default", "--previous") !== "instance-1") throw new Error("kubectl logs --previous disagrees");
  await shot(page, "actions-previous-logs");
  await page.goto(url + `/#/o/core/v1/pods/default/${pod2}/logs`);
  await page.check("input[aria-label=previous]");
  await poll("no previous instance", async () => {
    const m = await text(page, "[data-testid=logs-error]");
    return m.startsWith("No previous instance of container main") ? true : m;
  });

  step("cordon and uncordon the node, on its page and in the nodes table");
  const unsched = () => kubectl("get", "node", nodeName, "-o", "jsonpath={.spec.unschedulable}");
  await page.goto(url + `/#/o/core/v1/nodes/_/${nodeName}`);
  await page.click("[data-testid=node-actions] button:has-text('Cordon')");
  await poll("spec.unschedulable", () => unsched() === "true");
  await page.waitForSelector("[data-testid=schedulable]:has-text('SchedulingDisabled')");
  await page.click("[data-testid=node-actions] button:has-text('Uncordon')");
  await poll("schedulable again", () => unsched() !== "true");
  await page.waitForSelector("[data-testid=schedulable]:has-text('Schedulable')");
  await page.goto(url + "/#/r/core/v1/nodes");
  await page.click(`button[aria-label="cordon ${nodeName}"]`);
  await poll("cordoned from the nodes table", () => unsched() === "true");
  await page.waitForSelector(`tr[data-name="${nodeName}"]:has-text('Ready,SchedulingDisabled')`);
  await shot(page, "actions-nodes-table");
  await page.click(`button[aria-label="uncordon ${nodeName}"]`);
  await poll("uncordoned from the nodes table", () => unsched() !== "true");
  await page.click(`tr[data-name="${nodeName}"] a:has-text('Drain…')`);

  step("drain: the bare pod refused, the DaemonSet's skipped, a budget's 429 shown and retried, the rest evicted; then forced");
  let budget = 1;
  const evicts = [];
  await page.route("**/api/evict", async (route) => {
    const body = JSON.parse(route.request().postData() ?? "{}");
    evicts.push(body.name);
    // The API server enforces no PodDisruptionBudget; this answers the
    // first eviction of the Deployment's pod as the API does when one
    // refuses it.
    if (body.name === pod2 && budget-- > 0)
      return route.fulfill({ status: 429, contentType: "application/json", body: JSON.stringify({ code: 429, reason: "TooManyRequests", message: "Cannot evict pod as it would violate the pod's disruption budget." }) });
    return route.continue();
  });
  const agentd = kubectl("get", "pods", "-n", "default", "-l", "app=agentd", "-o", "jsonpath={.items[0].metadata.name}");
  await poll("the node holds the Deployment's pod, the DaemonSet's and restarter", () => podsOnNode() === [pod2, agentd, "restarter"].sort().join(","), 30000);
  await page.waitForSelector("[data-testid=node-actions] .note:has-text('3 pod(s) on this node')");
  await page.click("[data-testid=node-actions] button:has-text('Drain')");
  await page.waitForSelector(`[data-testid=drain-progress] tr[data-pod="default/${pod2}"][data-state=blocked]:has-text('disruption budget')`);
  await shot(page, "actions-drain-blocked");
  await page.waitForSelector(`[data-testid=drain-progress] tr[data-pod="default/${pod2}"][data-state=evicted]:has-text('after 2 attempts')`, { timeout: 15000 });
  await page.waitForSelector('[data-testid=drain-progress] tr[data-pod="default/restarter"][data-state=failed]:has-text("not managed by a controller")');
  await page.waitForSelector("[data-testid=drain-progress] tr[data-state=skipped]:has-text('DaemonSet-managed (agentd)')");
  await page.waitForSelector("[data-testid=drain-error]:has-text('Drain incomplete: 1 pod(s) not evicted')");
  if (unsched() !== "true") throw new Error("the drain did not cordon the node");
  await page.waitForSelector(`[data-testid=drain-progress] tr[data-pod="default/${pod2}"]:has-text('(gone)')`, { timeout: 30000 });
  if (kubectl("get", "pod", "restarter", "-n", "default", "-o", "name") !== "pod/restarter") throw new Error("the bare pod went without force");
  await page.check("[data-testid=node-actions] input[type=checkbox]");
  await page.click("[data-testid=node-actions] button:has-text('Drain')");
  await page.waitForSelector("[data-testid=drain-done]:has-text('Drained: 1 pod(s) evicted, 1 skipped')");
  await poll("restarter gone", () => kubectl("get", "pods", "-n", "default", "--field-selector=metadata.name=restarter", "-o", "name") === "", 30000);
  if (evicts.filter((n) => n === pod2).length !== 2 || evicts.includes(agentd))
    throw new Error(`evictions sent: ${evicts.join(", ")}`);
  await shot(page, "actions-drained");

  step("a DaemonSet's history from its ControllerRevisions; Undo restores the previous image");
  await page.goto(url + "/#/o/apps/v1/daemonsets/default/agentd");
  await poll("revision 1 of the DaemonSet", async () => (await revisions(page)) === "1");
  kubectl("set", "image", "daemonset/agentd", "main=registry.invalid/busybox:broken", "-n", "default");
  await poll("revision 2 listed live and current", async () => (await revisions(page)) === "1,2" && (await text(page, "[data-testid=history] tr[data-revision='2']")).includes("(current)"));
  await page.click("[data-testid=rollout] button:has-text('Undo')");
  await poll("the DaemonSet's image rolled back", () => kubectl("get", "daemonset", "agentd", "-n", "default", "-o", "jsonpath={.spec.template.spec.containers[0].image}") === busybox);
  await page.waitForSelector("[data-testid=rollout] [role=status]:has-text('Rolled back to revision 1')");
  await shot(page, "actions-daemonset-undo");
  await ctx.close();

  step("the view user: Restart, Undo and the history's roll-backs disabled");
  const v = await login(browser, env("VIEWER_TOKEN"));
  await v.page.goto(url + "/#/o/apps/v1/deployments/default/roll");
  await v.page.waitForSelector("[data-testid=history] tr[data-revision='1']");
  for (const b of ["Restart", "Undo", "Roll back to 1"])
    if (!(await v.page.locator(`[data-testid=rollout] button:has-text('${b}')`).isDisabled())) throw new Error(`${b} is enabled for a view user`);
  await shot(v.page, "actions-viewer");
  await v.ctx.close();
  console.log(JSON.stringify({ browserMs: Date.now() - t0 }));
} finally {
  await browser.close();
}
