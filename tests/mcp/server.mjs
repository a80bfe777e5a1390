// A small MCP server on the official TypeScript SDK, for ACP's MCP consent tests
// (tests/mcp_sdk_test.cpp). Tools: `echo` (returns its text) and `delete_file` (pretends: it
// only writes "deleted PATH" to the log, so a test can tell whether a call reached the server).
//
// Usage: node server.mjs stdio LOG          the stdio transport
//        node server.mjs http LOG           Streamable HTTP on 127.0.0.1:<free port>; prints
//                                           "PORT <n>" on stdout once it listens
// LOG gets one JSON line per event: {"in": <raw message text>} for every message received
// (stdio: each line; http: each POST body, byte for byte), {"out": <line>} for every stdio
// line written, {"tool": name, "args": {...}} for every tool that ran.
import fs from "node:fs";
import http from "node:http";
import { randomUUID } from "node:crypto";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { z } from "zod";

const [mode, logPath] = process.argv.slice(2);
if (!mode || !logPath) {
  console.error("usage: node server.mjs stdio|http LOG");
  process.exit(2);
}
const log = (o) => fs.appendFileSync(logPath, JSON.stringify(o) + "\n");

function makeServer() {
  const server = new McpServer({ name: "acp-test-server", version: "1.0.0" });
  server.registerTool(
    "echo",
    { description: "Returns its text", inputSchema: { text: z.string() } },
    async ({ text }) => {
      log({ tool: "echo", args: { text } });
      return { content: [{ type: "text", text: "echo: " + text }] };
    },
  );
  server.registerTool(
    "delete_file",
    { description: "Deletes a file (pretends to)", inputSchema: { path: z.string() } },
    async ({ path }) => {
      log({ tool: "delete_file", args: { path } });
      return { content: [{ type: "text", text: "deleted " + path }] };
    },
  );
  return server;
}

if (mode === "stdio") {
  // Tee the raw bytes both ways, so the test can compare what crossed ACP.
  let pending = "";
  process.stdin.on("data", (d) => {
    pending += d.toString("utf8");
    let nl;
    while ((nl = pending.indexOf("\n")) >= 0) {
      log({ in: pending.slice(0, nl + 1) });
      pending = pending.slice(nl + 1);
    }
  });
  const write = process.stdout.write.bind(process.stdout);
  process.stdout.write = (chunk, ...rest) => {
    log({ out: chunk.toString() });
    return write(chunk, ...rest);
  };
  await makeServer().connect(new StdioServerTransport());
} else if (mode === "http") {
  const transports = new Map();
  const httpServer = http.createServer(async (req, res) => {
    try {
      let body;
      if (req.method === "POST") {
        const chunks = [];
        for await (const c of req) chunks.push(c);
        const raw = Buffer.concat(chunks).toString("utf8");
        log({ in: raw });
        body = JSON.parse(raw);
      }
      const sid = req.headers["mcp-session-id"];
      let t = sid ? transports.get(sid) : undefined;
      if (!t) {
        t = new StreamableHTTPServerTransport({
          sessionIdGenerator: () => randomUUID(),
          onsessioninitialized: (id) => transports.set(id, t),
        });
        await makeServer().connect(t);
      }
      await t.handleRequest(req, res, body);
    } catch (e) {
      console.error("server error: " + e);
      if (!res.headersSent) res.writeHead(500).end(String(e));
    }
  });
  httpServer.listen(0, "127.0.0.1", () => {
    console.log("PORT " + httpServer.address().port);
  });
} else {
  console.error("unknown mode " + mode);
  process.exit(2);
}
