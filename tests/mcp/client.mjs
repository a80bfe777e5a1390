// An MCP client on the official TypeScript SDK, for ACP's MCP consent tests
// (tests/mcp_sdk_test.cpp). Connects, lists the tools, then makes the tool calls given, one
// after the other, and prints one JSON line per step:
//   {"tools":["delete_file","echo"]}
//   {"call":"echo","ok":true,"text":"echo: hi"}
//   {"call":"delete_file","error":{"code":-32001,"message":"ACP denied ..."}}
//
// Usage: node client.mjs http PROXY_URL SERVER_URL SENT_LOG CALLS_JSON
//          Streamable HTTP through ACP's proxy (plain HTTP, absolute-form requests: Node's fetch
//          ignores HTTP_PROXY, so the SDK gets a fetch that speaks to the proxy). Every request
//          body sent is logged to SENT_LOG as {"sent": <raw body>}.
//        node client.mjs stdio SENT_LOG CALLS_JSON CMD [ARGS...]
//          the stdio transport, the server being CMD (e.g. acp mcp -- node server.mjs ...).
//          Every line sent is logged as {"sent": <line>}, every message received as
//          {"recv": <JSON.stringify of it>}, every chunk read from CMD's stdout as {"raw": ...}.
import fs from "node:fs";
import http from "node:http";
import { Readable } from "node:stream";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const out = (o) => console.log(JSON.stringify(o));

function proxyFetch(proxyUrl, sentLog) {
  const proxy = new URL(proxyUrl);
  return async (url, init = {}) => {
    const u = new URL(url);
    const headers = {};
    new Headers(init.headers || {}).forEach((v, k) => (headers[k] = v));
    headers.host = u.host;
    let body = init.body;
    if (body != null && typeof body !== "string")
      body = Buffer.from(await new Response(body).arrayBuffer());
    if (body != null) fs.appendFileSync(sentLog, JSON.stringify({ sent: body.toString() }) + "\n");
    return await new Promise((resolve, reject) => {
      const req = http.request(
        { host: proxy.hostname, port: proxy.port, method: init.method || "GET", path: u.href, headers },
        (res) => {
          const h = new Headers();
          for (const [k, v] of Object.entries(res.headers))
            h.set(k, Array.isArray(v) ? v.join(", ") : v);
          const noBody = [101, 204, 205, 304].includes(res.statusCode);
          resolve(new Response(noBody ? null : Readable.toWeb(res), { status: res.statusCode, headers: h }));
        },
      );
      req.on("error", reject);
      if (init.signal) init.signal.addEventListener("abort", () => req.destroy(new Error("aborted")));
      req.end(body ?? undefined);
    });
  };
}

const [mode, ...rest] = process.argv.slice(2);
let transport, calls;
if (mode === "http") {
  const [proxyUrl, serverUrl, sentLog, callsJson] = rest;
  calls = JSON.parse(callsJson);
  transport = new StreamableHTTPClientTransport(new URL(serverUrl), {
    fetch: proxyFetch(proxyUrl, sentLog),
  });
} else if (mode === "stdio") {
  const [sentLog, callsJson, command, ...args] = rest;
  calls = JSON.parse(callsJson);
  transport = new StdioClientTransport({ command, args, env: process.env, stderr: "inherit" });
  const send = transport.send.bind(transport);
  // The SDK writes JSON.stringify(message) + "\n" for each message (shared/stdio.js).
  transport.send = (m) => {
    fs.appendFileSync(sentLog, JSON.stringify({ sent: JSON.stringify(m) + "\n" }) + "\n");
    return send(m);
  };
  const started = transport.start.bind(transport);
  transport.start = async () => {
    await started();
    // The raw bytes as they arrive on the server's stdout (here: acp mcp's stdout).
    transport._process?.stdout?.on("data", (d) =>
      fs.appendFileSync(sentLog, JSON.stringify({ raw: d.toString("utf8") }) + "\n"),
    );
    const deliver = transport.onmessage;
    transport.onmessage = (m) => {
      fs.appendFileSync(sentLog, JSON.stringify({ recv: JSON.stringify(m) }) + "\n");
      deliver?.(m);
    };
  };
} else {
  console.error("usage: see the header of client.mjs");
  process.exit(2);
}

const client = new Client({ name: "acp-test-client", version: "1.0.0" });
await client.connect(transport);
const tools = await client.listTools();
out({ tools: tools.tools.map((t) => t.name).sort() });
for (const c of calls) {
  try {
    const r = await client.callTool({ name: c.name, arguments: c.arguments }, undefined, {
      timeout: 600000,
    });
    out({ call: c.name, ok: !r.isError, text: r.content?.[0]?.text });
  } catch (e) {
    out({ call: c.name, error: { code: e.code, message: e.message } });
  }
}
await client.close();
