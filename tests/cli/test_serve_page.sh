#!/usr/bin/env bash
# The web page of tandem serve in headless Chromium (tests/js/page.mjs): streamed answer, stop, another
# message; the screenshots land in the build directory.
set -euo pipefail
source "$(dirname "$0")/serve_npm.sh"
serve_need playwright-core
CHROMIUM=${TANDEM_CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$CHROMIUM" ]; then
    why="no chromium at $CHROMIUM (tools/install-deps.sh installs Debian's)"
    if [ "${CI:-}" = true ]; then echo "FAIL: $why (CI must run this test)"; exit 1; fi
    echo "SKIP: $why"; exit 77
fi
exec node "$TANDEM_SOURCE_DIR/tests/js/page.mjs"
