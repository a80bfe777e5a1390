#!/usr/bin/env bash
# Installs the browser test's one npm package (playwright-core, pinned by
# tests/browser/package-lock.json) into tests/browser/node_modules. The browser itself is
# Debian's chromium (scripts/install-deps.sh); playwright never downloads one.
set -euo pipefail
cd "$(dirname "$0")/../tests/browser"
# Debian's nodejs comes without npm (a nodejs from elsewhere may bundle its own).
if ! command -v npm >/dev/null; then
  echo "install-browser-deps: installing npm"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends npm
fi
if [ -f node_modules/playwright-core/package.json ] &&
  [ "$(node -p 'require("./node_modules/playwright-core/package.json").version')" = \
    "$(node -p 'require("./package-lock.json").packages["node_modules/playwright-core"].version')" ]; then
  exit 0
fi
echo "install-browser-deps: npm ci in tests/browser"
PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error
