// Drives Debian's Chromium (headless, through playwright-core) against a live ACP web consent
// page while the confined agent sends a U+202E RIGHT-TO-LEFT OVERRIDE twice: raw in a request
// path, then in the tool name and an argument of an MCP tools/call.
// Launched by the vmtest RunWeb.PageShowsBidiControlsVisibly (vmtests/run_web_test.cpp).
//
// Usage: node web_display.mjs BASE_URL TOKEN ARTIFACT_DIR USER_DATA_DIR
// The path must reach the page in canonical form (percent-encoded, %E2%80%AE). The tool call
// must show the override as the text \u{202E} (never the character, which would reverse what
// follows), in the order of its bytes. The test denies both from the page.
// Screenshot: ARTIFACT_DIR/bidi.png. Prints one line per step; exits non-zero on any failure.
import { chromium } from "playwright-core";
import fs from "node:fs";
import path from "node:path";

const [base, token, artifacts, userDataDir] = process.argv.slice(2);
if (!base || !token || !artifacts || !userDataDir) {
  console.error("usage: node web_display.mjs BASE_URL TOKEN ARTIFACT_DIR USER_DATA_DIR");
  process.exit(2);
}
fs.mkdirSync(artifacts, { recursive: true });
const step = (s) => console.log("STEP " + s);
const fail = (s) => {
  throw new Error(s);
};
const WAIT = { timeout: 60000 };
const RLO = "\u202e";

const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
  viewport: { width: 1200, height: 900 },
});
let code = 0;
try {
  const page = context.pages()[0] || (await context.newPage());
  const ok = await page.goto(`${base}/?token=${token}`);
  if (ok.status() !== 200) fail(`token: HTTP ${ok.status()}`);
  await page.locator('[data-testid="live"].on').waitFor(WAIT);
  step("page-live");

  // The raw override in a path: the proxy's canonical form percent-encodes it.
  const pathCard = page.locator('[data-testid="pending"]', {
    has: page.locator('[data-testid="target"]', { hasText: "%E2%80%AE" }),
  });
  await pathCard.waitFor(WAIT);
  const pathTarget = await pathCard.locator('[data-testid="target"]').textContent();
  step(`path target ${JSON.stringify(pathTarget)}`);
  if (!/^GET 127\.0\.0\.1:\d+\/report%E2%80%AEfdp\.exe$/.test(pathTarget))
    fail(`path target ${JSON.stringify(pathTarget)}: expected GET 127.0.0.1:P/report%E2%80%AEfdp.exe`);
  if (await page.evaluate((c) => document.body.innerText.includes(c), RLO))
    fail("a raw U+202E is somewhere on the page (path card)");
  const pathId = await pathCard.getAttribute("data-id");
  await pathCard.locator('[data-testid="deny"]').click();
  await page.locator(`[data-testid="resolved"][data-id="${pathId}"]`).waitFor(WAIT);
  step("path-encoded");

  // The override in an MCP tool name and argument (JSON strings, UTF-8 as is): shown visibly.
  const card = page.locator('[data-testid="pending"]', {
    has: page.locator('[data-testid="target"]', { hasText: "MCP tool" }),
  });
  await card.waitFor(WAIT);
  const target = await card.locator('[data-testid="target"]').textContent();
  step(`target ${JSON.stringify(target)}`);
  if (target.includes(RLO)) fail(`the page shows a raw U+202E: ${JSON.stringify(target)}`);
  const want =
    'MCP tool report\\u{202E}fdp.exe on 127.0.0.1 with {"file":"a\\u{202E}fdp.exe"}';
  if (target !== want) fail(`target ${JSON.stringify(target)}: expected ${JSON.stringify(want)}`);
  // Shown in byte order whatever the letters' direction.
  const bidi = await card
    .locator('[data-testid="target"]')
    .evaluate((e) => getComputedStyle(e).unicodeBidi);
  if (bidi !== "isolate-override") fail(`unicode-bidi ${bidi}`);
  const reach = await card.locator('[data-testid="reach"]').textContent();
  if (!reach.includes("for session covers every call of MCP tool report\\u{202E}fdp.exe on 127.0.0.1"))
    fail(`reach ${JSON.stringify(reach)}`);
  // No text node anywhere on the page holds the override.
  const raw = await page.evaluate((c) => document.body.innerText.includes(c), RLO);
  if (raw) fail("a raw U+202E is somewhere on the page");
  await page.screenshot({ path: path.join(artifacts, "bidi.png"), fullPage: true });
  step("bidi-visible");

  const id = await card.getAttribute("data-id");
  await card.locator('[data-testid="reason"]').fill("looks like a disguised .exe");
  await card.locator('[data-testid="deny"]').click();
  await page.locator(`[data-testid="resolved"][data-id="${id}"]`).waitFor(WAIT);
  const line = await page.locator(`[data-testid="resolved"][data-id="${id}"]`).textContent();
  if (line.includes(RLO) || !line.includes("\\u{202E}")) fail(`resolved line ${JSON.stringify(line)}`);
  step(`denied: ${line}`);
  step("done");
} catch (e) {
  console.error("FAIL " + (e && e.message ? e.message : e));
  try {
    const p = context.pages()[0];
    if (p) await p.screenshot({ path: path.join(artifacts, "bidi-failure.png"), fullPage: true });
  } catch {}
  code = 1;
} finally {
  await context.close();
}
process.exit(code);
