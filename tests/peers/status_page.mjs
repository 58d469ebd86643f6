// Drives mcp-edge's status page in Debian's headless Chromium, with playwright-core.
//
//   node status_page.mjs <admin base URL> <screenshot dir> <route that is down>
//
// Prints `loaded` once the page is up (the test then changes what the gateway holds),
// then one JSON line with what it saw: the rows, whether the page refreshed in place
// (no navigation, the same document) and showed the change, the route's own page, the
// page with JavaScript off, and every request that left the admin origin.
import { createRequire } from "node:module";
import * as readline from "node:readline";
import { fileURLToPath } from "node:url";

// playwright-core is in the peers' npm prefix (tests/peers/install).
const peers = process.env.PEERS_DIR || fileURLToPath(new URL("../../.cache/peers", import.meta.url));
const require = createRequire(peers + "/node/package.json");
const { chromium } = require("playwright-core");

const [base, shots, downRoute] = process.argv.slice(2);
const origin = new URL(base).origin;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
const out = { foreign: [], errors: [] };
// Once the test has stopped the gateway, failed fetches are expected.
let stopped = false;
const lines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const waitFor = async (word) => {
  for (;;) {
    const { value, done } = await lines.next();
    if (done || value.trim() === word) return;
  }
};
const watch = (page) => {
  page.on("request", (r) => { if (!r.url().startsWith(origin)) out.foreign.push(r.url()); });
  page.on("pageerror", (e) => out.errors.push(String(e)));
  page.on("console", (m) => { if (m.type() === "error" && !stopped) out.errors.push(m.text()); });
};
const routeRows = (page) =>
  page.$$eval("main h2:first-of-type + table tr", (trs) =>
    trs.slice(1).map((tr) => [...tr.cells].map((c) => c.innerText.trim())));
const sessions = (page) =>
  page.$$eval(".panel div", (cells) =>
    cells.map((c) => c.innerText).find((t) => t.includes("sessions")) || "");

try {
  const context = await browser.newContext({ viewport: { width: 1500, height: 950 } });
  const page = await context.newPage();
  watch(page);
  let navigations = 0;
  page.on("framenavigated", (f) => { if (f === page.mainFrame()) navigations += 1; });
  await page.goto(base + "/", { waitUntil: "load" });
  out.banner = (await page.innerText("header.banner")).trim();
  out.rows = await routeRows(page);
  out.charts = await page.$$eval("main svg polyline", (lines) => lines.length);
  await page.screenshot({ path: `${shots}/status-page.png`, fullPage: true });
  out.sessionsBefore = await sessions(page);
  await page.evaluate(() => { window.sameDocument = true; });

  // The test opens sessions now; the page must show them without a reload.
  console.log("loaded");
  await waitFor("changed");
  try {
    await page.waitForFunction(
      (before) => {
        const cell = [...document.querySelectorAll(".panel div")]
          .map((c) => c.innerText).find((t) => t.includes("sessions"));
        return cell && cell !== before && Number(document.documentElement.dataset.refreshes || 0) > 0;
      },
      out.sessionsBefore,
      { timeout: 20000 },
    );
  } catch (e) {
    out.errors.push("the page did not show the new sessions: " + e.message);
  }
  out.sessionsAfter = await sessions(page);
  out.refreshes = Number(await page.evaluate(() => document.documentElement.dataset.refreshes || 0));
  out.sameDocument = await page.evaluate(() => window.sameDocument === true);
  out.navigations = navigations;
  await page.screenshot({ path: `${shots}/status-page-refreshed.png`, fullPage: true });

  // The broken route's own page, reached by its link.
  await page.click(`main a[href="/routes/${downRoute}"]`);
  await page.waitForURL(`**/routes/${downRoute}`);
  out.detail = await page.innerText("main");
  await page.screenshot({ path: `${shots}/status-route.png`, fullPage: true });

  // JavaScript off: the same page, whole, refreshing itself with a meta refresh.
  const noScript = await browser.newContext({ javaScriptEnabled: false, viewport: { width: 1500, height: 950 } });
  const plain = await noScript.newPage();
  watch(plain);
  await plain.goto(base + "/", { waitUntil: "load" });
  out.noScriptRows = await routeRows(plain);
  out.noScriptRefresh = await plain.$eval(
    "noscript",
    (n) => n.innerHTML,
  ).catch(() => "");
  out.noScriptMeta = await plain.$$eval('meta[http-equiv="refresh"]', (m) => m.map((x) => x.content));
  await plain.screenshot({ path: `${shots}/status-page-no-js.png`, fullPage: true });

  // The gateway goes away: the open route page says so, and keeps what it showed.
  console.log("stop");
  await waitFor("stopped");
  stopped = true;
  try {
    await page.waitForFunction(() => document.documentElement.dataset.stale === "unreachable", null, { timeout: 20000 });
  } catch (e) {
    out.errors.push("the page did not say the gateway stopped answering: " + e.message);
  }
  out.staleShown = await page.isVisible("#stale");
  out.staleText = await page.innerText("#stale");
  out.keptDetail = (await page.innerText("main")).includes("Effective configuration");
  await page.screenshot({ path: `${shots}/status-route-unreachable.png`, fullPage: true });
} catch (e) {
  out.errors.push(String(e && e.stack || e));
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
