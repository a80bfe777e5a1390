// Drives Debian's Chromium (headless, through playwright-core) against a live ACP web consent
// page. Launched by the vmtest RunWeb.BrowserApprovesDeniesAndGrantsTenMinutes
// (vmtests/run_web_test.cpp), which runs `acp run` with a confined agent that asks for
// /one, /two, /three and /four on a local origin, one after the other, each waiting for a human.
//
// Usage: node web_consent.mjs BASE_URL TOKEN ARTIFACT_DIR USER_DATA_DIR
// The page: the request appears -> "Approve once"; the next -> "Deny" with a reason; the next ->
// "Approve 10 min"; the fourth must go through without appearing. A wrong token gets 403.
// Screenshots go to ARTIFACT_DIR. Prints one line per step; exits non-zero on any failure.
import { chromium } from "playwright-core";
import fs from "node:fs";
import path from "node:path";

const [base, token, artifacts, userDataDir] = process.argv.slice(2);
if (!base || !token || !artifacts || !userDataDir) {
  console.error("usage: node web_consent.mjs BASE_URL TOKEN ARTIFACT_DIR USER_DATA_DIR");
  process.exit(2);
}
fs.mkdirSync(artifacts, { recursive: true });
const step = (s) => console.log("STEP " + s);
const fail = (s) => {
  throw new Error(s);
};
const WAIT = { timeout: 60000 };

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
  const shot = (name) => page.screenshot({ path: path.join(artifacts, name), fullPage: true });

  // A wrong token: 403 and nothing else.
  const wrong = "0".repeat(64);
  const bad = await page.goto(`${base}/?token=${wrong}`);
  if (bad.status() !== 403) fail(`wrong token: HTTP ${bad.status()}, expected 403`);
  const badBody = (await bad.text()).trim();
  if (badBody !== "forbidden") fail(`wrong token: body ${JSON.stringify(badBody)}`);
  await shot("wrong-token.png");
  const noToken = await page.goto(`${base}/api/pending`);
  if (noToken.status() !== 403) fail(`no token: HTTP ${noToken.status()}, expected 403`);
  step("wrong-token-refused");

  // The real token: the page loads (the token moves into a cookie) and goes live.
  const ok = await page.goto(`${base}/?token=${token}`);
  if (ok.status() !== 200) fail(`token: HTTP ${ok.status()}`);
  if (new URL(page.url()).search !== "") fail(`the token stayed in the address: ${page.url()}`);
  if ((await page.title()) !== "ACP consent") fail(`title ${await page.title()}`);
  await page.locator('[data-testid="live"].on').waitFor(WAIT);
  step("page-live");

  // Answers the pending request whose target ends with `suffix` with the button `testid`.
  const answer = async (suffix, testid, screenshot, reason) => {
    const card = page.locator('[data-testid="pending"]', {
      has: page.locator('[data-testid="target"]', { hasText: suffix }),
    });
    await card.waitFor(WAIT);
    const target = await card.locator('[data-testid="target"]').textContent();
    const agent = await card.locator('[data-testid="agent"]').textContent();
    const countdown = await card.locator('[data-testid="countdown"]').textContent();
    const rule = await card.locator('[data-testid="rule"]').textContent();
    if (!/^GET 127\.0\.0\.1:\d+\//.test(target)) fail(`target ${target}`);
    if (!agent.includes("sh -c")) fail(`agent command ${agent}`);
    if (!/^\d+ s left$/.test(countdown)) fail(`countdown ${countdown}`);
    if (!rule.includes("ask") && !rule.includes("127.0.0.1")) fail(`rule ${rule}`);
    const id = await card.getAttribute("data-id");
    if (screenshot) await shot(screenshot);
    if (reason) await card.locator('[data-testid="reason"]').fill(reason);
    await card.locator(`[data-testid="${testid}"]`).click();
    // Resolved: the card goes, the answer is listed with who gave it.
    await page.locator(`[data-testid="resolved"][data-id="${id}"]`).waitFor(WAIT);
    await card.waitFor({ state: "detached", timeout: 60000 });
    const line = await page.locator(`[data-testid="resolved"][data-id="${id}"]`).textContent();
    step(`${testid} ${suffix}: ${line}`);
    return line;
  };

  const l1 = await answer("/one", "approve-once", "pending.png");
  if (!l1.includes("approved") || !l1.includes("by web")) fail(`resolved line ${l1}`);
  const l2 = await answer("/two", "deny", null, "not this one");
  if (!l2.includes("denied") || !l2.includes("not this one")) fail(`resolved line ${l2}`);
  await shot("denied.png");
  const l3 = await answer("/three", "approve-10min");
  if (!l3.includes("duration")) fail(`resolved line ${l3}`);

  // /four is covered by the 10-minute grant: it shows up in the audit log, never as a prompt.
  await page.waitForFunction(
    () =>
      [...document.querySelectorAll('[data-testid="audit-row"]')].some((r) =>
        r.textContent.includes("/four"),
      ),
    null,
    { timeout: 60000, polling: 500 },
  );
  const pendingLeft = await page.locator('[data-testid="pending"]').count();
  const resolvedCount = await page.locator('[data-testid="resolved"]').count();
  if (pendingLeft !== 0) fail(`${pendingLeft} request(s) still pending after /four`);
  if (resolvedCount !== 3) fail(`${resolvedCount} answered requests listed, expected 3 (no prompt for /four)`);
  const chain = await page.locator('[data-testid="chain"]').textContent();
  step(`four-without-prompt; chain: ${chain}`);
  await shot("final.png");
  step("done");
} catch (e) {
  console.error("FAIL " + (e && e.message ? e.message : e));
  try {
    const p = context.pages()[0];
    if (p) await p.screenshot({ path: path.join(artifacts, "failure.png"), fullPage: true });
  } catch {}
  code = 1;
} finally {
  await context.close();
}
process.exit(code);
