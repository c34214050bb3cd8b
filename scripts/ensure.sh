#!/usr/bin/env bash
# Makes a fresh clone runnable before `npm start`, `npm test` and `npm run bench`:
#   - npm dependencies, including Node 22 itself from the npm registry (package "node"), so every
#     `npm run …` uses node_modules/.bin/node whatever the system Node is (wrangler needs ≥ 22.12);
#   - Debian packages named as arguments (e.g. redis-server), installed with apt-get when run as root.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'scaisend: %s\n' "$*" >&2; }

if [ ! -x node_modules/.bin/node ] || [ ! -d node_modules/wrangler ] || [ ! -f node_modules/.package-lock.json ] ||
  [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "installing dependencies (npm ci) …"
  npm ci --no-audit --no-fund --loglevel=error
fi

major=$(node_modules/.bin/node -p 'process.versions.node.split(".")[0]')
if [ "$major" -lt 22 ]; then
  say "node_modules/.bin/node is Node $major; ScaiSend needs Node 22 (run: rm -rf node_modules && npm ci)"
  exit 1
fi

# Debian packages: each argument is "command" or "command:package".
missing=()
for want in "$@"; do
  cmd=${want%%:*}
  pkg=${want#*:}
  command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    say "missing system packages: ${missing[*]}"
    say "install them with: sudo apt-get install -y ${missing[*]}   (or run this command as root)"
    exit 1
  fi
  say "installing ${missing[*]} with apt-get …"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
