#!/usr/bin/env bash
# `npm test`: install what is missing, type-check every tsconfig, then run all vitest projects
# (edge inside workerd, node, e2e). Extra arguments go to vitest, e.g. `npm test -- --project node`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure.sh redis-server openssl
# Keep wrangler and vitest from writing into the home folder (docs/testing.md).
export WRANGLER_SEND_METRICS=false XDG_CONFIG_HOME="$PWD/.tmp/xdg" WRANGLER_LOG_PATH="$PWD/.tmp/wrangler-logs"
npm run -s typecheck
mkdir -p .tmp && rm -f .tmp/vitest-results.json
status=0
vitest run --reporter=default --reporter=json --outputFile.json=.tmp/vitest-results.json "$@" || status=$?
# One plain closing line ("N passed, N failed") that any CI log reader understands.
if [ -f .tmp/vitest-results.json ]; then
  node -e 'const r=require("./.tmp/vitest-results.json");console.log(`tests: ${r.numPassedTests} passed, ${r.numFailedTests} failed`)'
fi
exit $status
