#!/usr/bin/env bash
# Installs the MCP tests' npm packages (@modelcontextprotocol/sdk and its peer zod, pinned by
# tests/mcp/package-lock.json) into tests/mcp/node_modules. tests/mcp_sdk_test.cpp runs the
# SDK's own server and client through ACP with them, so the wire format is the real one.
set -euo pipefail
cd "$(dirname "$0")/../tests/mcp"
# Debian's nodejs comes without npm (a nodejs from elsewhere may bundle its own).
if ! command -v npm >/dev/null; then
  echo "install-mcp-deps: installing npm"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends npm
fi
pkg=@modelcontextprotocol/sdk
if [ -f "node_modules/$pkg/package.json" ] &&
  [ "$(node -p "require('./node_modules/$pkg/package.json').version")" = \
    "$(node -p "require('./package-lock.json').packages['node_modules/$pkg'].version")" ]; then
  exit 0
fi
echo "install-mcp-deps: npm ci in tests/mcp"
npm ci --no-audit --no-fund --loglevel=error
