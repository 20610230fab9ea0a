// Browser end-to-end test of the search palette, keyboard navigation and
// the create-from-YAML page (run by e2e/dashboard_search_test.go, which
// starts a skiff server and passes DASHBOARD_URL, ADMIN_TOKEN,
// VIEWER_TOKEN, KUBECONFIG, CHROMIUM and ARTIFACTS). Exits non-zero on any
// failure; prints one JSON line of measurements.
import { env, kubectl, launch, poll, shot, step } from "./lib.mjs";

const url = env("DASHBOARD_URL");
const check = (ok, what) => {
  if (!ok) throw new Error(what);
};

async function login(browser, token) {
  const ctx = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 800 } });
  const page = await ctx.newPage();
  page.on("pageerror", (e) => console.log("page error:", e.message));
  await page.goto(url + "/#/overview?ns=default");
  await page.fill("#token", token);
  await page.click("button[type=submit]");
  await page.waitForSelector("text=● live", { timeout: 15000 });
  return { ctx, page };
}

const hash = (page) => page.evaluate(() => location.hash);
const results = (page) => page.$$eval("[data-testid=search-result]", (els) => els.map((e) => [...e.querySelectorAll("span")].map((s) => s.textContent).join(" ")));

const browser = await launch();
const measured = {};
try {
  const { page } = await login(browser, env("ADMIN_TOKEN"));

  step("/ opens the palette; a fuzzy query finds the ConfigMap first; Enter opens its page");
  await page.keyboard.press("/");
  await page.waitForSelector("[role=dialog][aria-label='Search objects'] input[aria-label='search objects']");
  check(await page.evaluate(() => document.activeElement?.getAttribute("aria-label") === "search objects"), "the palette's input is not focused");
  let t0 = Date.now();
  await page.keyboard.type("pyapcfg");
  await poll("results for pyapcfg", async () => {
    const r = await results(page);
    return r[0] === "ConfigMap default payments-api-config" || JSON.stringify(r);
  });
  measured.palette_result_ms = Date.now() - t0;
  await shot(page, "search-palette");
  await page.keyboard.press("Enter");
  await poll("object page", async () => (await hash(page)) === "#/o/core/v1/configmaps/default/payments-api-config" || (await hash(page)));
  await page.waitForSelector("text=payments-api-config");
  check((await page.$$("[role=dialog]")).length === 0, "the palette stayed open");

  step("Ctrl-K opens it too and finds objects of several kinds; Escape closes it");
  await page.keyboard.press("Control+k");
  await page.waitForSelector("input[aria-label='search objects']");
  await page.keyboard.type("pmtapi");
  await poll("results of two kinds", async () => {
    const r = await results(page);
    return (r.includes("ConfigMap default payments-api-config") && r.includes("Secret default payments-api-token")) || JSON.stringify(r);
  });
  await page.keyboard.press("Escape");
  await poll("palette closed", async () => (await page.$$("[role=dialog]")).length === 0);

  step("g p goes to pods, g o to the overview");
  await page.keyboard.press("g");
  await page.keyboard.press("p");
  await poll("pods", async () => (await hash(page)).startsWith("#/r/core/v1/pods?") || (await hash(page)));
  await page.waitForSelector("h2:has-text('Pod')");
  await page.keyboard.press("g");
  await page.keyboard.press("o");
  await poll("overview", async () => (await hash(page)).startsWith("#/overview") || (await hash(page)));

  step("? shows the keyboard help; Escape closes it");
  await page.keyboard.press("?");
  await page.waitForSelector("[role=dialog][aria-label='Keyboard shortcuts']");
  const helpText = await page.textContent("[role=dialog][aria-label='Keyboard shortcuts']");
  for (const k of ["g p", "g d", "g s", "g n", "g l", "j / k", "Ctrl-K"]) check(helpText.includes(k), `help lacks ${k}: ${helpText}`);
  await shot(page, "keyboard-help");
  await page.keyboard.press("Escape");
  await poll("help closed", async () => (await page.$$("[role=dialog]")).length === 0);

  step("in a table j/k move a visible focus and Enter opens the row; keys typed in the filter are text");
  await page.goto(url + "/#/r/core/v1/configmaps?ns=default");
  await page.waitForSelector("tr[data-name=payments-api-config]");
  await page.click("h2");
  await page.keyboard.press("j");
  await page.keyboard.press("j");
  await page.keyboard.press("k");
  await page.keyboard.press("j");
  await poll("second row focused", async () => {
    const f = await page.$$eval("tr.focused", (els) => els.map((e) => e.getAttribute("data-name")));
    const names = await page.$$eval("tbody tr[data-name]", (els) => els.map((e) => e.getAttribute("data-name")));
    return (f.length === 1 && f[0] === names[1]) || JSON.stringify({ f, names });
  });
  const focused = await page.getAttribute("tr.focused", "data-name");
  await page.keyboard.press("Enter");
  await poll("focused row opened", async () => (await hash(page)) === `#/o/core/v1/configmaps/default/${focused}` || (await hash(page)));
  await page.goto(url + "/#/r/core/v1/configmaps?ns=default");
  await page.waitForSelector("tr[data-name=payments-api-config]");
  await page.click("input[aria-label=filter]");
  await page.keyboard.type("gp");
  check((await page.inputValue("input[aria-label=filter]")) === "gp", "typing in the filter lost keys");
  check((await hash(page)).startsWith("#/r/core/v1/configmaps"), "g p while typing navigated");
  await page.fill("input[aria-label=filter]", "");

  step("create two objects from one multi-document YAML; an existing one is refused with the API's message");
  await page.click("[data-testid=create-button]");
  await poll("create page", async () => (await hash(page)) === "#/create?ns=default" || (await hash(page)));
  check((await page.textContent("[data-testid=create-ns]")) === "default", "create page namespace is not the switcher's");
  await page.fill(
    "textarea[aria-label='YAML to create']",
    [
      "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: e2e-created-config\ndata:\n  from: the-create-page\n",
      "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: e2e-created-sa\n",
      "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: payments-api-config\n",
    ].join("---\n"),
  );
  await page.click("button:has-text('Create 3 objects')");
  await poll("three results", async () => (await page.$$("[data-testid=create-result]")).length === 3);
  const created = await page.$$eval("[data-testid=create-result]", (els) => els.map((e) => ({ ok: e.dataset.ok, text: e.textContent, href: e.querySelector("a")?.getAttribute("href") })));
  check(created[0].ok === "true" && created[0].href === "#/o/core/v1/configmaps/default/e2e-created-config", `first document: ${JSON.stringify(created[0])}`);
  check(created[1].ok === "true" && created[1].href === "#/o/core/v1/serviceaccounts/default/e2e-created-sa", `second document: ${JSON.stringify(created[1])}`);
  check(created[2].ok === "false" && created[2].text.includes("409") && created[2].text.includes("already exists"), `third document: ${JSON.stringify(created[2])}`);
  check(kubectl("get", "configmap", "e2e-created-config", "-n", "default", "-o", "jsonpath={.data.from}") === "the-create-page", "kubectl does not see the created ConfigMap");
  check(kubectl("get", "serviceaccount", "e2e-created-sa", "-n", "default", "-o", "name") === "serviceaccount/e2e-created-sa", "kubectl does not see the created ServiceAccount");
  await shot(page, "create-yaml");
  await page.click("a[href='#/o/core/v1/configmaps/default/e2e-created-config']");
  await page.waitForSelector("text=e2e-created-config");

  step("the view user: no Create button; the palette finds ConfigMaps but not Secrets, nothing in a namespace it may not list");
  const v = await login(browser, env("VIEWER_TOKEN"));
  await v.page.waitForSelector("button[aria-label=search]");
  await new Promise((r) => setTimeout(r, 1500)); // the rules review has answered (the admin saw Create by then)
  check((await v.page.$$("[data-testid=create-button]")).length === 0, "the view user sees Create");
  await v.page.click("button[aria-label=search]");
  await v.page.waitForSelector("input[aria-label='search objects']");
  await v.page.keyboard.type("pmtapi");
  await poll("viewer results", async () => {
    const r = await results(v.page);
    const note = (await v.page.$("[data-testid=search-note]")) ? await v.page.textContent("[data-testid=search-note]") : "";
    return (r.length === 1 && r[0] === "ConfigMap default payments-api-config" && note.includes("secrets")) || JSON.stringify({ r, note });
  });
  await v.page.fill("input[aria-label='search objects']", "payments-api-token");
  await v.page.waitForSelector("[data-testid=search-empty]");
  await shot(v.page, "search-viewer");
  const api = await v.page.evaluate(async () => {
    const a = await (await fetch("/api/search?q=payments-api-token&ns=default")).json();
    const b = await (await fetch("/api/search?q=pmtapi&ns=kube-system")).json();
    return { a, b };
  });
  check(api.a.results.length === 0 && api.a.forbidden.includes("secrets"), `viewer API search for the secret: ${JSON.stringify(api.a)}`);
  check(api.b.results.length === 0 && api.b.searched.length === 0, `viewer search in kube-system: ${JSON.stringify(api.b)}`);
  measured.viewer_search_ms = api.a.tookMs;
  console.log(JSON.stringify(measured));
} catch (e) {
  console.log("FAILED:", e.message);
  process.exitCode = 1;
} finally {
  await browser.close();
}
