// Browser test of the schema-aware YAML editor and the WCAG audit (run by
// e2e/dashboard_a11y_test.go, which starts skiff server --disable-agent
// with Deployment default/web and passes DASHBOARD_URL, ADMIN_TOKEN,
// KUBECONFIG, CHROMIUM and ARTIFACTS). Exits non-zero on any failure.
import { env, kubectl, launch, poll, shot, step } from "./lib.mjs";
import { createRequire } from "node:module";

const url = env("DASHBOARD_URL");
const axePath = createRequire(import.meta.url).resolve("axe-core/axe.min.js");

const browser = await launch();

// audit runs axe-core (WCAG 2.0/2.1 A and AA rules) on the page in both
// themes; serious and critical violations fail the test, the others are
// printed.
const failures = [];
async function audit(page, name) {
  for (const theme of ["dark", "light"]) {
    await page.evaluate((t) => {
      localStorage.setItem("skiff-theme", t);
      document.documentElement.dataset.theme = t;
    }, theme);
    await page.waitForTimeout(50);
    if (!(await page.evaluate(() => typeof window.axe === "object"))) await page.addScriptTag({ path: axePath });
    const r = await page.evaluate(() => window.axe.run(document, { runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"] }, resultTypes: ["violations"] }));
    for (const v of r.violations) {
      const line = `${name} (${theme}): ${v.impact} ${v.id}: ${v.help} — ${v.nodes
        .slice(0, 4)
        .map((n) => n.target.join(" ") + (n.failureSummary ? ` [${n.failureSummary.replace(/\s+/g, " ").slice(0, 160)}]` : ""))
        .join("; ")}`;
      console.log(line);
      if (v.impact === "serious" || v.impact === "critical") failures.push(line);
    }
    await shot(page, `a11y-${name}-${theme}`);
  }
}

const t0 = Date.now();
try {
  // bypassCSP: axe is injected as an inline script, which the dashboard's
  // CSP (script-src 'self') refuses otherwise.
  const ctx = await browser.newContext({ ignoreHTTPSErrors: true, bypassCSP: true, viewport: { width: 1280, height: 800 } });
  const page = await ctx.newPage();
  page.on("pageerror", (e) => console.log("page error:", e.message));

  step("login page");
  await page.goto(url + "/");
  await page.waitForSelector("#token", { timeout: 60000 });
  await audit(page, "login");
  await page.fill("#token", "not-a-token");
  await page.click("button[type=submit]");
  await page.waitForSelector("[role=alert]");
  await audit(page, "login-refused");
  await page.fill("#token", env("ADMIN_TOKEN"));
  await page.click("button[type=submit]");
  await page.waitForSelector("text=● live", { timeout: 15000 });

  step("overview");
  await page.waitForSelector("text=Cluster overview");
  await audit(page, "overview");

  step("pods table");
  await page.goto(url + "/#/r/core/v1/pods?ns=default");
  await page.waitForSelector(".count");
  await audit(page, "pods");

  step("the Deployment's page");
  await page.goto(url + "/#/o/apps/v1/deployments/default/web");
  await page.waitForSelector("input[aria-label=replicas]");
  await audit(page, "deployment");

  step("YAML tab: the schema is loaded and the object as served has no problems");
  await page.goto(url + "/#/o/apps/v1/deployments/default/web/yaml");
  await page.waitForSelector("[data-testid=yaml-editor] .cm-content[aria-label=YAML]");
  await poll("the schema note", async () => ((await page.textContent("[data-testid=schema-note]")) ?? "").includes("Checked against the API server's schema of Deployment (apps/v1)"));
  await page.waitForTimeout(500); // one lint pass after the schema arrived
  if ((await page.locator("[data-testid=problems]").count()) !== 0) throw new Error(`problems in the served object: ${await page.textContent("[data-testid=problems]")}`);
  await audit(page, "yaml");
  // No keyboard trap (WCAG 2.1.2): Tab indents in the editor, Escape then Tab leaves it.
  await page.click("[data-testid=yaml-editor] .cm-content");
  await page.keyboard.press("Escape");
  await page.keyboard.press("Tab");
  if (await page.evaluate(() => !!document.activeElement?.closest(".cm-editor"))) throw new Error("Escape then Tab did not leave the editor");
  const yamlText = () => page.$eval("[data-testid=yaml-editor]", (el) => el.yamlValue);
  const setYaml = (v) => page.$eval("[data-testid=yaml-editor]", (el, v) => (el.yamlValue = v), v);
  const served = await yamlText();

  step("retyping spec.replicas: completion offers replicas with its type, not the keys already there; an unknown field is marked");
  await page.locator(".cm-line", { hasText: /^\s*replicas: 1$/ }).first().click();
  await page.keyboard.press("Home");
  await page.keyboard.press("Shift+End");
  await page.keyboard.type("re", { delay: 30 });
  const options = page.locator(".cm-tooltip-autocomplete li");
  await poll("completion options for re", async () => (await options.allTextContents()).some((o) => o.startsWith("replicas")), 5000);
  const offered = await options.allTextContents();
  if (offered.some((o) => o.startsWith("revisionHistoryLimit"))) throw new Error(`revisionHistoryLimit is already in spec but offered: ${offered}`);
  await page.keyboard.type("p", { delay: 30 });
  const option = page.locator(".cm-tooltip-autocomplete li", { hasText: "replicas" });
  await option.first().waitFor({ timeout: 5000 });
  const optText = await option.first().textContent();
  if (!optText.includes("integer")) throw new Error(`the completion of replicas does not show its type: ${optText}`);
  const info = await page.textContent(".cm-completionInfo").catch(() => "");
  if (!/desired pods/i.test(info ?? "")) throw new Error(`the completion of replicas shows no description: ${info}`);
  await shot(page, "editor-completion");
  await page.keyboard.press("Escape");
  await page.keyboard.type("licaz: 2", { delay: 20 });
  await poll("a diagnostic for spec.replicaz", async () => ((await page.textContent("[data-testid=problems]", { timeout: 500 })) ?? "").includes('unknown field "spec.replicaz"'), 5000);
  if ((await page.locator(".cm-lint-marker-error").count()) === 0) throw new Error("no error marker in the gutter");
  if ((await page.locator(".cm-lintRange-error", { hasText: "replicaz" }).count()) === 0) throw new Error("replicaz is not underlined");
  await audit(page, "yaml-problems");

  step("after a boolean field's key, true and false are offered");
  await setYaml(served);
  await page.locator(".cm-line", { hasText: /^\s*replicas: 1$/ }).first().click();
  await page.keyboard.press("Home");
  await page.keyboard.press("Shift+End");
  await page.keyboard.type("paused: ", { delay: 30 });
  await poll("true and false offered", async () => JSON.stringify((await options.allTextContents()).sort()) === JSON.stringify(["false", "true"]), 5000);
  await page.keyboard.press("Escape");

  step("a wrong scalar type and a YAML syntax error are marked too");
  await setYaml(served.replace(/^(spec:\n(?:[ -].*\n)*?)  replicas: 1$/m, '$1  replicas: "one"'));
  await poll("a type diagnostic", async () => ((await page.textContent("[data-testid=problems]", { timeout: 500 })) ?? "").includes("spec.replicas: expected integer, got string"), 5000);
  await setYaml(served.replace("spec:\n", "spec:\n  bad: [\n"));
  await poll("a syntax diagnostic", async () => ((await page.textContent("[data-testid=problems]", { timeout: 500 })) ?? "").includes("YAML syntax"), 5000);

  step("a valid edit is reviewed as a diff and applied; a change made meanwhile (kubectl) gives a 409, reload and redo");
  kubectl("annotate", "deployment", "web", "-n", "default", "e2e/changed-meanwhile=yes", "--overwrite");
  let conflicts = 0;
  for (let attempt = 0; ; attempt++) {
    const cur = await yamlText();
    const base = attempt === 0 ? served : cur;
    if (attempt > 0 && !cur.includes("e2e/changed-meanwhile")) throw new Error("the reload did not bring the current version");
    const edited = base.replace(/^(spec:\n(?:[ -].*\n)*?)  replicas: 1$/m, "$1  replicas: 2");
    if (edited === base) throw new Error("no spec.replicas: 1 in the YAML");
    await setYaml(edited);
    await poll("no problems", async () => (await page.locator("[data-testid=problems]").count()) === 0, 5000);
    await page.click("button:has-text('Review changes')");
    await page.waitForSelector(".diff .add:has-text('replicas: 2')");
    if (attempt === 0) await audit(page, "yaml-review");
    await page.click("button:has-text('Apply')");
    const wait = (sel, v) => page.waitForSelector(sel, { timeout: 10000 }).then(() => v, () => "timeout");
    const outcome = await Promise.race([wait("text=Applied", "applied"), wait("text=Conflict:", "conflict")]);
    if (outcome === "timeout") throw new Error("apply showed neither success nor a conflict");
    if (outcome === "applied") break;
    if (++conflicts > 5) throw new Error("every apply conflicted");
    if (conflicts === 1) await audit(page, "yaml-conflict");
    await page.click("button:has-text('Reload the current version')");
    await poll("reloaded", async () => (await page.locator("text=Conflict:").count()) === 0);
  }
  if (conflicts === 0) throw new Error("applying over a version changed meanwhile gave no conflict");
  await poll("spec.replicas = 2", () => kubectl("get", "deployment", "web", "-n", "default", "-o", "jsonpath={.spec.replicas}") === "2");

  step("log search");
  await page.goto(url + "/#/logs");
  await page.waitForSelector(".logsearch");
  await page.waitForTimeout(500);
  await audit(page, "logsearch");
  await ctx.close();
  console.log(JSON.stringify({ conflicts, seconds: Math.round((Date.now() - t0) / 1000) }));
} finally {
  await browser.close();
}
if (failures.length) {
  console.log(`${failures.length} serious/critical accessibility violations:\n${failures.join("\n")}`);
  process.exit(1);
}
