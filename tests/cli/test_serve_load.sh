#!/usr/bin/env bash
# 64 concurrent streaming clients against tandem serve --parallel 4 --queue 64 for a bounded time
# (tests/js/load.mjs): no answer lost or mixed up, p50/p99 time to first token in <build>/serve-load.json.
set -euo pipefail
source "$(dirname "$0")/serve_npm.sh"
serve_need   # node only: the clients are plain fetch
exec node "$TANDEM_SOURCE_DIR/tests/js/load.mjs"
