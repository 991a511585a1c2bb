#!/usr/bin/env bash
# Set up (once) what the `browser` tests need: Debian's chromium and npm's playwright-core.
#
#   bash scripts/setup_browser.sh
#
# Idempotent: installs chromium with apt-get only if /usr/bin/chromium is missing, and playwright-core into
# $KINEMA_NODE_DIR (default ~/.cache/kinema/node; never into the repo). Prints one line. Exits 0 when ready or
# when this machine has no way to install them (no apt-get / npm); exits 1 when an install was possible but
# failed (.ci/run treats that as a failure unless KINEMA_ALLOW_SKIPS=1). When something is missing,
# tests/host/test_browser.py skips with one line saying what. Never downloads a browser of playwright's own.
set -uo pipefail
node_dir="${KINEMA_NODE_DIR:-$HOME/.cache/kinema/node}"
chromium="${KINEMA_CHROMIUM:-/usr/bin/chromium}"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT

note() { echo "setup_browser: $*"; exit 0; }
fail() { echo "setup_browser: $*"; exit 1; }

if [ ! -x "$chromium" ]; then
  sudo=()
  [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null && sudo=(sudo -n)
  if ! command -v apt-get >/dev/null; then
    note "no apt-get to install chromium; browser tests will skip"
  fi
  if ! { "${sudo[@]}" apt-get update -qq && \
         DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq chromium; } >"$log" 2>&1; then
    fail "apt-get install chromium failed ($(tail -n 1 "$log")); browser tests will skip"
  fi
  [ -x "$chromium" ] || fail "chromium installed but $chromium is missing; browser tests will skip"
fi

if [ ! -f "$node_dir/node_modules/playwright-core/package.json" ]; then
  command -v npm >/dev/null || note "npm not found, cannot install playwright-core; browser tests will skip"
  mkdir -p "$node_dir"
  [ -f "$node_dir/package.json" ] || echo '{"name": "kinema-browser-tests", "private": true}' > "$node_dir/package.json"
  if ! (cd "$node_dir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --no-audit --no-fund --silent \
        playwright-core@1) >"$log" 2>&1; then
    fail "npm install playwright-core failed ($(tail -n 1 "$log")); browser tests will skip"
  fi
fi

version="$(cd "$node_dir" && node -p 'require("playwright-core/package.json").version' 2>/dev/null)"
note "ready: $("$chromium" --version 2>/dev/null | head -n 1), playwright-core ${version:-?} in $node_dir"
