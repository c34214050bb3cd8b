#!/usr/bin/env bash
# `npm test`: install what is missing, type-check every tsconfig, then run all vitest projects
# (edge inside workerd, node, e2e). Extra arguments go to vitest, e.g. `npm test -- --project node`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure.sh redis-server openssl dkimverify:python3-dkim chromium swaks
# Keep wrangler and vitest from writing into the home folder (docs/testing.md).
export WRANGLER_SEND_METRICS=false XDG_CONFIG_HOME="$PWD/.tmp/xdg" WRANGLER_LOG_PATH="$PWD/.tmp/wrangler-logs"
# The Worker's binding types are generated from wrangler.toml (npm run cf-typegen); a stale checked-in
# file would let a renamed or misspelt binding type-check. Regenerate next to it (so its relative
# import paths match; same flags as the cf-typegen script) and compare everything below the two
# header lines, which name the output path.
typegen_check="edge/.worker-configuration.check.d.ts"
trap 'rm -f "$typegen_check"' EXIT
wrangler types "$typegen_check" --include-runtime=false --strict-vars=false >/dev/null
if ! diff <(tail -n +3 edge/worker-configuration.d.ts) <(tail -n +3 "$typegen_check") >/dev/null; then
  echo "edge/worker-configuration.d.ts is out of date with wrangler.toml: run \`npm run cf-typegen\` and commit it." >&2
  diff <(tail -n +3 edge/worker-configuration.d.ts) <(tail -n +3 "$typegen_check") >&2 || true
  exit 1
fi
rm -f "$typegen_check"
npm run -s typecheck
mkdir -p .tmp && rm -f .tmp/vitest-results.json
status=0
vitest run --reporter=default --reporter=json --outputFile.json=.tmp/vitest-results.json "$@" || status=$?
# One plain closing line ("N passed, N failed") that any CI log reader understands.
if [ -f .tmp/vitest-results.json ]; then
  node -e 'const r=require("./.tmp/vitest-results.json");console.log(`tests: ${r.numPassedTests} passed, ${r.numFailedTests} failed`)'
fi
exit $status
