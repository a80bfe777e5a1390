// The web channel's page. Everything the agent controls (host, path, method, command) reaches
// the page as data, already made visible by the server (acp/proxy/display.hpp: the request as
// summary(), what each answer covers as approval_reach(), the same text as the terminal prompt),
// and is put in with textContent, never parsed as HTML.
#include "web_page.hpp"

namespace acp::consent {
namespace {

constexpr std::string_view kPage = R"html(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>ACP consent</title>
<style>
  :root { --bg:#f4f5f7; --card:#fff; --ink:#1d2330; --muted:#6b7280; --line:#e3e6ea;
          --ok:#15803d; --okbg:#dcfce7; --no:#b91c1c; --nobg:#fee2e2; --ask:#b45309; --askbg:#fef3c7;
          --accent:#1d4ed8; }
  * { box-sizing: border-box; }
  body { margin:0; font:14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
         background:var(--bg); color:var(--ink); }
  header { background:#111827; color:#f9fafb; padding:12px 20px; display:flex; align-items:center;
           gap:16px; }
  header h1 { font-size:17px; margin:0; font-weight:600; }
  header .sub { color:#9ca3af; font-size:13px; }
  .live { margin-left:auto; font-size:13px; display:flex; align-items:center; gap:6px; }
  .dot { width:9px; height:9px; border-radius:50%; background:#9ca3af; display:inline-block; }
  .live.on .dot { background:#22c55e; } .live.off .dot { background:#ef4444; }
  main { max-width:1100px; margin:0 auto; padding:18px; display:grid; gap:18px;
         grid-template-columns: 2fr 1fr; }
  section { background:var(--card); border:1px solid var(--line); border-radius:8px; padding:14px 16px; }
  section h2 { font-size:13px; text-transform:uppercase; letter-spacing:.05em; color:var(--muted);
               margin:0 0 10px; display:flex; gap:8px; align-items:center; }
  .wide { grid-column: 1 / -1; }
  .empty { color:var(--muted); font-style:italic; padding:6px 0; }
  .req { border:1px solid var(--line); border-left:4px solid var(--ask); border-radius:6px;
         padding:10px 12px; margin-bottom:10px; background:#fffdf7; }
  .req .what { font:600 15px/1.3 ui-monospace, SFMono-Regular, Menlo, monospace; word-break:break-all; }
  /* The agent's text in the order of its bytes: right-to-left letters cannot reorder a path. */
  .req .what, .mono { direction:ltr; unicode-bidi:isolate-override; }
  .req .meta { color:var(--muted); font-size:12.5px; margin-top:4px; word-break:break-all; }
  .req .meta b { color:var(--ink); font-weight:500; }
  .bar { height:4px; background:var(--line); border-radius:2px; margin:8px 0; overflow:hidden; }
  .bar > div { height:100%; background:var(--ask); width:100%; transition:width 1s linear; }
  .row { display:flex; flex-wrap:wrap; gap:6px; align-items:center; }
  button { font:inherit; font-size:13px; padding:5px 11px; border-radius:5px; cursor:pointer;
           border:1px solid #cbd5e1; background:#fff; }
  button.approve { border-color:var(--ok); color:var(--ok); }
  button.approve:hover { background:var(--okbg); }
  button.deny { border-color:var(--no); color:var(--no); }
  button.deny:hover { background:var(--nobg); }
  button:disabled { opacity:.5; cursor:default; }
  input.reason { font:inherit; font-size:13px; padding:4px 8px; border:1px solid #cbd5e1;
                 border-radius:5px; min-width:160px; flex:1; }
  .countdown { margin-left:auto; font-variant-numeric:tabular-nums; color:var(--ask); font-weight:600; }
  .badge { display:inline-block; padding:1px 7px; border-radius:10px; font-size:12px; font-weight:600; }
  .badge.allow { background:var(--okbg); color:var(--ok); }
  .badge.deny { background:var(--nobg); color:var(--no); }
  .badge.info { background:#e0e7ff; color:var(--accent); }
  table { width:100%; border-collapse:collapse; font-size:13px; }
  th, td { text-align:left; padding:4px 6px; border-bottom:1px solid var(--line); vertical-align:top; }
  th { color:var(--muted); font-weight:500; }
  td.mono, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size:12.5px;
                   word-break:break-all; }
  dl { display:grid; grid-template-columns:auto 1fr; gap:3px 12px; margin:0 0 10px; }
  dt { color:var(--muted); } dd { margin:0; word-break:break-all; }
  .resolved li { margin-bottom:4px; }
  ul { margin:0; padding-left:18px; }
  .error { color:var(--no); font-size:13px; margin-top:6px; }
  @media (max-width: 800px) { main { grid-template-columns: 1fr; } }
</style>
</head>
<body>
<header>
  <h1>ACP consent</h1>
  <span class="sub" id="hdr-session"></span>
  <span class="live" id="live" data-testid="live"><span class="dot"></span><span id="live-text">connecting</span></span>
</header>
<main>
  <section>
    <h2>Pending requests <span class="badge info" id="pending-count">0</span></h2>
    <div id="pending" data-testid="pending-list"><div class="empty">Nothing is waiting for you.</div></div>
  </section>
  <section>
    <h2>Session</h2>
    <div id="session" data-testid="session"><div class="empty">loading</div></div>
  </section>
  <section class="wide">
    <h2>Recently answered</h2>
    <ul class="resolved" id="resolved" data-testid="resolved-list"><li class="empty">None yet.</li></ul>
  </section>
  <section class="wide">
    <h2>Audit log <span id="chain" data-testid="chain"></span></h2>
    <div id="audit" data-testid="audit"><div class="empty">loading</div></div>
  </section>
</main>
<script>
"use strict";
const byId = (id) => document.getElementById(id);
function el(tag, props, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("data-")) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const k of kids) if (k !== null && k !== undefined)
    e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return e;
}
function clock(ts) {
  const d = typeof ts === "number" ? new Date(ts * 1000) : new Date(ts);
  return isNaN(d) ? "" : d.toLocaleTimeString();
}

const pending = new Map();  // id -> {p, card}
function renderPendingCount() {
  byId("pending-count").textContent = pending.size;
  const list = byId("pending");
  if (pending.size === 0 && !list.querySelector(".empty"))
    list.append(el("div", {class: "empty"}, "Nothing is waiting for you."));
  if (pending.size > 0) list.querySelectorAll(".empty").forEach((e) => e.remove());
}
function addPending(p) {
  if (pending.has(p.id)) return;
  const a = p.action || {};
  const r = p.reach || {};
  const err = el("div", {class: "error"});
  const reason = el("input", {class: "reason", placeholder: "reason (for deny)", "data-testid": "reason"});
  const countdown = el("span", {class: "countdown", "data-testid": "countdown"});
  const fill = el("div");
  const buttons = [];
  const send = async (body) => {
    buttons.forEach((b) => (b.disabled = true));
    err.textContent = "";
    try {
      const r = await fetch("/api/answer", {method: "POST", credentials: "same-origin",
        headers: {"Content-Type": "application/json"}, body: JSON.stringify({id: p.id, ...body})});
      const j = await r.json().catch(() => ({}));
      if (!r.ok) {
        err.textContent = j.error || ("HTTP " + r.status);
        buttons.forEach((b) => (b.disabled = false));
      }
    } catch (e) {
      err.textContent = String(e);
      buttons.forEach((b) => (b.disabled = false));
    }
  };
  const approve = (label, testid, body) => {
    const b = el("button", {class: "approve", "data-testid": testid, onclick: () => send({approve: true, ...body})}, label);
    buttons.push(b);
    return b;
  };
  const deny = el("button", {class: "deny", "data-testid": "deny",
    onclick: () => send({approve: false, reason: reason.value})}, "Deny");
  buttons.push(deny);
  const card = el("div", {class: "req", "data-testid": "pending", "data-id": p.id},
    el("div", {class: "row"}, el("span", {class: "what", "data-testid": "target"}, p.summary || "?"), countdown),
    el("div", {class: "meta"}, "kind ", el("b", {}, a.kind || "?")),
    el("div", {class: "meta"}, "asked by session ", el("b", {}, p.session || "?"),
       p.agent_command ? " · agent " : "", p.agent_command ? el("b", {"data-testid": "agent"}, p.agent_command) : null,
       p.waiters > 1 ? " · " + p.waiters + " waiting" : ""),
    el("div", {class: "meta"}, "rule ", el("b", {class: "mono", "data-testid": "rule"}, p.rule || "(policy default)"),
       " · request ", el("span", {class: "mono"}, p.id)),
    el("div", {class: "meta", "data-testid": "reach"},
       "Approve once covers ", el("b", {}, r.once || "?"), "; 10 min covers ", el("b", {}, r.duration || "?"),
       "; for session covers ", el("b", {}, r.session || "?"), "; always covers ", el("b", {}, r.always || "?")),
    el("div", {class: "bar"}, fill),
    el("div", {class: "row"},
       approve("Approve once", "approve-once", {scope: "once"}),
       approve("Approve 10 min", "approve-10min", {scope: "duration", duration_s: 600}),
       approve("Approve for session", "approve-session", {scope: "session"}),
       approve("Always", "approve-always", {scope: "always"}),
       reason, deny),
    err);
  pending.set(p.id, {p, card, countdown, fill});
  byId("pending").append(card);
  renderPendingCount();
  tick();
}
function tick() {
  const now = Date.now() / 1000;
  for (const {p, countdown, fill} of pending.values()) {
    const left = Math.max(0, Math.ceil(p.expires - now));
    const total = Math.max(1, p.expires - p.created);
    countdown.textContent = left + " s left";
    fill.style.width = Math.min(100, (100 * (p.expires - now)) / total) + "%";
  }
}
setInterval(tick, 1000);

const resolvedItems = [];
function addResolved(r) {
  const e = pending.get(r.id);
  if (e) { e.card.remove(); pending.delete(r.id); renderPendingCount(); }
  const list = byId("resolved");
  list.querySelectorAll(".empty").forEach((x) => x.remove());
  const who = r.by ? "by " + r.by : r.decided_by === "timeout" ? "timed out" : (r.decided_by || "");
  const li = el("li", {"data-testid": "resolved", "data-id": r.id},
    el("span", {class: "badge " + (r.approved ? "allow" : "deny")}, r.approved ? "approved" : "denied"), " ",
    el("span", {class: "mono"}, r.summary || "?"), " — ",
    [r.scope, who].filter(Boolean).join(" "), r.reason ? " · " + r.reason : "",
    " · ", clock(Date.now() / 1000));
  list.prepend(li);
  resolvedItems.unshift(li);
  while (resolvedItems.length > 20) resolvedItems.pop().remove();
}

async function loadSession() {
  try {
    const r = await fetch("/api/session", {credentials: "same-origin"});
    if (!r.ok) return;
    const j = await r.json();
    byId("hdr-session").textContent = "session " + j.session;
    const s = j.status || {};
    const box = byId("session");
    box.replaceChildren();
    box.append(el("dl", {},
      el("dt", {}, "session"), el("dd", {class: "mono"}, j.session),
      el("dt", {}, "agent"), el("dd", {class: "mono", "data-testid": "session-command"}, j.agent_command || "?"),
      el("dt", {}, "pid / user"), el("dd", {}, (s.agent_pid || "?") + " / " + (s.user || "?")),
      el("dt", {}, "mode"), el("dd", {}, s.mode || "?"),
      el("dt", {}, "proxy"), el("dd", {class: "mono"}, j.proxy_url || "?"),
      el("dt", {}, "programs"), el("dd", {}, Array.isArray(s.programs) ? s.programs.length + " attached" : "?")));
    const rows = Object.entries(s.counters || {}).map(([k, v]) =>
      el("tr", {}, el("td", {}, k), el("td", {}, v.allowed), el("td", {}, v.denied)));
    box.append(el("table", {"data-testid": "counters"},
      el("tr", {}, el("th", {}, "connect()"), el("th", {}, "allowed"), el("th", {}, "denied")),
      ...(rows.length ? rows : [el("tr", {}, el("td", {colSpan: 3, class: "empty"}, "no attempts yet"))])));
    if (Array.isArray(s.recent_denied) && s.recent_denied.length) {
      const last = s.recent_denied.slice(-5).reverse();
      box.append(el("div", {class: "meta"}, "recently blocked by the kernel:"),
        el("ul", {}, ...last.map((e) => el("li", {class: "mono"}, (e.comm || "?") + " (" + e.pid + ") → " + (e.destination || e.hook)))));
    }
  } catch (e) { /* the next refresh tries again */ }
}

async function loadAudit() {
  try {
    const r = await fetch("/api/audit?n=50", {credentials: "same-origin"});
    if (!r.ok) return;
    const j = await r.json();
    const c = j.chain || {};
    const chain = byId("chain");
    chain.className = "badge " + (c.state === "ok" ? "allow" : c.state === "broken" ? "deny" : "info");
    chain.textContent = c.state === "ok" ? "chain intact (" + c.lines + " lines)"
      : c.state === "broken" ? "chain BROKEN at line " + c.first_broken + ": " + c.reason
      : "chain " + (c.state || "?");
    if (c.state === "checking") setTimeout(loadAudit, 1000);  // verified off the event loop
    const box = byId("audit");
    box.replaceChildren();
    const entries = (j.entries || []).slice().reverse();
    if (!entries.length) { box.append(el("div", {class: "empty"}, "No entries yet.")); return; }
    box.append(el("table", {},
      el("tr", {}, el("th", {}, "#"), el("th", {}, "time"), el("th", {}, "verdict"),
         el("th", {}, "what"), el("th", {}, "decided by"), el("th", {}, "reason")),
      ...entries.map((e) => {
        const what = e.kind === "connect" ? (e.comm || "?") + " → " + (e.destination || e.hook || "")
          : e.kind === "policy_reload" ? "policy reload: " + (e.source || "") : (e.summary || "");
        const v = e.verdict || (e.ok === false ? "error" : "");
        return el("tr", {"data-testid": "audit-row"}, el("td", {}, e.seq), el("td", {}, clock(e.timestamp)),
          el("td", {}, el("span", {class: "badge " + (v === "allow" ? "allow" : "deny")}, v)),
          el("td", {class: "mono"}, what),
          el("td", {}, (e.decided_by || e.kind || "") + (e.scope ? " (" + e.scope + ")" : "")),
          el("td", {}, e.reason || ""));
      })));
  } catch (e) { /* the next refresh tries again */ }
}

function connect() {
  const live = byId("live"), text = byId("live-text");
  const es = new EventSource("/api/events");
  es.onopen = () => { live.className = "live on"; text.textContent = "live"; };
  es.onerror = () => { live.className = "live off"; text.textContent = "reconnecting"; };
  es.addEventListener("snapshot", (ev) => {
    const j = JSON.parse(ev.data);
    const ids = new Set(j.pending.map((p) => p.id));
    for (const [id, e] of pending) if (!ids.has(id)) { e.card.remove(); pending.delete(id); }
    j.pending.forEach(addPending);
    renderPendingCount();
  });
  es.addEventListener("request", (ev) => addPending(JSON.parse(ev.data)));
  es.addEventListener("resolved", (ev) => {
    addResolved(JSON.parse(ev.data));
    setTimeout(loadAudit, 300);
    loadSession();
  });
}
connect();
loadSession();
loadAudit();
setInterval(loadSession, 5000);
setInterval(loadAudit, 10000);
</script>
</body>
</html>
)html";

}  // namespace

std::string_view web_page_html() {
  return kPage;
}

}  // namespace acp::consent
