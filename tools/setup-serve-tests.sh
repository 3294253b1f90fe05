#!/bin/sh
# Brings the npm packages that tests/js/ drives `tandem serve` with into .deps/serve-tests/ (gitignored):
#   openai 6.49.0       OpenAI's official client (6.x: these machines run Node 20)
#   ollama 0.6.4        Ollama's official client
#   playwright-core     drives Debian's chromium (tools/install-deps.sh installs it) for the web page test;
#                       -core never downloads a browser of its own
# Exact versions, from the npm registry, with install scripts off. Safe to run again: it does nothing when
# they are there. Exit 1 when it cannot set them up (the tests then skip, or fail under CI=true).
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIR=${TANDEM_SERVE_TESTS_DIR:-$ROOT/.deps/serve-tests}   # the tests read the same variable
PKGS="openai@6.49.0 ollama@0.6.4 playwright-core@1.65.2"
say() { echo "setup-serve-tests: $*" >&2; }

have() {
    for p in $PKGS; do
        name=${p%@*} version=${p##*@}
        grep -q "\"version\": *\"$version\"" "$DIR/node_modules/$name/package.json" 2>/dev/null || return 1
    done
}
if have; then
    say "$PKGS are in $DIR"
    exit 0
fi
command -v npm >/dev/null || { say "npm not found (tools/install-deps.sh installs it)"; exit 1; }
mkdir -p "$DIR"
deps=""
for p in $PKGS; do deps="$deps${deps:+, }\"${p%@*}\": \"${p##*@}\""; done
printf '{"private": true, "type": "module", "dependencies": {%s}}\n' "$deps" >"$DIR/package.json"
say "installing $PKGS"
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
(cd "$DIR" && npm install --ignore-scripts --no-audit --no-fund --loglevel=error) || { say "npm install failed"; exit 1; }
have || { say "npm did not install $PKGS"; exit 1; }
say "$PKGS are in $DIR"
