// Drive the real ComfyUI frontend in headless Chromium (playwright-core) for one UI-format workflow:
// load it through the app, check it, set widgets, convert it with app.graphToPrompt, queue it through the
// frontend's api, and wait for its history entry.
//
//   node run_workflow.mjs job.json      (playwright-core is resolved from $KINEMA_NODE_DIR/node_modules)
//
// job.json: {"url", "chromium", "workflow" (path), "widgets": {"<node id>": {"<widget>": value}},
//            "screenshot" (path), "result" (path), "timeout_s"}
// Writes the result JSON to job.result and exits 0 whenever it got that far; the test judges the result.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createRequire } from "node:module";

const job = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const require = createRequire(path.join(process.env.KINEMA_NODE_DIR ?? ".", "node_modules") + "/");
const { chromium } = require("playwright-core");

const FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync"];
const result = { workflow: path.basename(job.workflow), timings: {}, pageErrors: [], consoleErrors: [] };
const started = Date.now();
const mark = (name) => { result.timings[name] = (Date.now() - started) / 1000; };

// The first start of a fresh user opens the template browser over the canvas; say the tutorial is done.
await fetch(`${job.url}/api/settings/Comfy.TutorialCompleted`, { method: "POST", body: "true" });

const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), "kinema-chromium-"));
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: job.chromium, headless: true, args: FLAGS, viewport: { width: 1600, height: 1000 },
});
try {
  const page = context.pages()[0] ?? (await context.newPage());
  let phase = "startup";
  page.on("pageerror", (e) => result.pageErrors.push({ phase, message: e.message }));
  page.on("console", (m) => {
    if (m.type() === "error") result.consoleErrors.push({ phase, text: m.text(), url: m.location()?.url ?? "" });
  });
  await page.goto(job.url, { waitUntil: "load", timeout: 120_000 });
  // node definitions are registered after the graph exists: wait for a core node type, not just the app
  await page.waitForFunction(() => window.comfyAPI?.app?.app?.graph && window.LiteGraph?.registered_node_types?.KSampler,
    null, { timeout: 120_000 });
  mark("frontend_ready");

  phase = "load";
  const graphData = JSON.parse(fs.readFileSync(job.workflow, "utf8"));
  Object.assign(result, await page.evaluate(async (data) => {
    const app = window.comfyAPI.app.app;
    const registered = window.LiteGraph.registered_node_types;
    const missing = [...new Set(data.nodes.map((n) => n.type).filter((t) => !(t in registered)))];
    await app.loadGraphData(data, true, true, null, { showMissingNodesDialog: false, showMissingModelsDialog: false });
    const byId = Object.fromEntries(data.nodes.map((n) => [String(n.id), n]));
    const roundTrip = [];
    for (const node of app.graph.nodes) {
      const saved = byId[String(node.id)]?.widgets_values ?? [];
      const now = node.serialize().widgets_values ?? [];
      if (JSON.stringify(saved) !== JSON.stringify(now)) roundTrip.push({ id: node.id, type: node.type, saved, now });
    }
    return {
      missingNodeTypes: missing,
      loadedNodes: app.graph.nodes.map((n) => ({ id: n.id, type: n.type, hasErrors: Boolean(n.has_errors) })),
      widgetRoundTrip: roundTrip,
    };
  }, graphData));
  mark("loaded");

  phase = "widgets";
  Object.assign(result, await page.evaluate((widgets) => {
    const app = window.comfyAPI.app.app;
    const unknown = [];
    for (const [id, values] of Object.entries(widgets)) {
      const node = app.graph.getNodeById(Number(id));
      for (const [name, value] of Object.entries(values)) {
        const widget = node?.widgets?.find((w) => w.name === name);
        if (!widget) { unknown.push(`${id}.${name}`); continue; }
        widget.value = value;
        widget.callback?.(value, app.canvas, node);
      }
    }
    const widgetErrors = [];
    for (const node of app.graph.nodes) {
      for (const w of node.widgets ?? []) {
        const values = w.options?.values;
        const list = typeof values === "function" ? values(w, node) : values;
        if (w.type === "combo" && Array.isArray(list) && !list.includes(w.value)) {
          widgetErrors.push(`${node.type} ${node.id}: ${w.name}=${JSON.stringify(w.value)} is not one of its options`);
        }
        if (w.type === "number" && (typeof w.value !== "number" || Number.isNaN(w.value)
            || (w.options?.min != null && w.value < w.options.min) || (w.options?.max != null && w.value > w.options.max))) {
          widgetErrors.push(`${node.type} ${node.id}: ${w.name}=${JSON.stringify(w.value)} is out of range`);
        }
      }
    }
    app.canvas.setDirty(true, true);
    return { unknownWidgets: unknown, widgetErrors };
  }, job.widgets ?? {}));
  await page.waitForTimeout(500);
  await page.screenshot({ path: job.screenshot });
  mark("screenshot");

  phase = "queue";
  Object.assign(result, await page.evaluate(async () => {
    const app = window.comfyAPI.app.app;
    const api = window.comfyAPI.api.api;
    const converted = await app.graphToPrompt();
    try {
      const queued = await api.queuePrompt(0, converted);
      return { prompt: converted.output, queued };
    } catch (error) {
      return { prompt: converted.output, queueError: error?.response ?? String(error) };
    }
  }));
  mark("queued");

  phase = "run";
  const id = result.queued?.prompt_id;
  const deadline = Date.now() + (job.timeout_s ?? 900) * 1000;
  while (id && Date.now() < deadline) {
    const entry = await page.evaluate(async (pid) => {
      const res = await window.comfyAPI.api.api.fetchApi(`/history/${pid}`);
      return (await res.json())[pid] ?? null;
    }, id);
    if (entry && ["success", "error"].includes(entry.status?.status_str)) {
      result.history = entry;
      break;
    }
    await page.waitForTimeout(500);
  }
  if (id && !result.history) {
    result.timedOut = true;
    await page.evaluate(() => window.comfyAPI.api.api.interrupt());
  }
  mark("finished");
} finally {
  await context.close();
  fs.rmSync(userDataDir, { recursive: true, force: true });
}
fs.writeFileSync(job.result, JSON.stringify(result, null, 1));
