#!/bin/sh
# Brings the llama.cpp that node-llama-cpp 3.21.1 ships as a prebuilt binary into .deps/ (gitignored), so
# that tools/compare/ can run the same GGUF in both engines (tests/cli/test_llama_interop.sh).
#
#   .deps/npm/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/   libllama, libllama-common, ggml
#   .deps/llama.cpp/                                                     the headers of that exact build
#
# Only the npm registry is used, and nothing is downloaded or compiled by install scripts:
#   - the binaries: `npm install --ignore-scripts` of @node-llama-cpp/linux-x64, the prebuilt package that
#     node-llama-cpp's own install picks on x86-64 Linux (the umbrella package would also pull its CLI
#     dependencies and the CUDA/Vulkan builds, none of which is used here);
#   - the headers: node-llama-cpp@3.21.1's tarball carries the llama.cpp source it was built from as a git
#     bundle (llama/gitRelease.bundle); include/, ggml/include/, common/ and vendor/ are taken from it.
# Safe to run again: it does nothing when both are there. Exit 1 when it cannot set them up.
set -eu
VERSION=3.21.1
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DEPS=${TANDEM_LLAMA_DIR:-$ROOT/.deps}   # the same variable tells CMake where to look
NPM_DIR=$DEPS/npm
SRC_DIR=$DEPS/llama.cpp
BIN_PKG=$NPM_DIR/node_modules/@node-llama-cpp/linux-x64
say() { echo "setup-llama: $*" >&2; }

if [ "$(uname -s)-$(uname -m)" != Linux-x86_64 ]; then
    say "node-llama-cpp's prebuilt llama.cpp is used on x86-64 Linux only (this is $(uname -s)-$(uname -m))"
    exit 1
fi
have_bins() { grep -q "\"version\": *\"$VERSION\"" "$BIN_PKG/package.json" 2>/dev/null; }
have_headers() { [ "$(cat "$SRC_DIR/.version" 2>/dev/null)" = "$VERSION" ]; }
if have_bins && have_headers; then
    say "llama.cpp of node-llama-cpp $VERSION is in $DEPS"
    exit 0
fi
for tool in npm git tar; do
    command -v "$tool" >/dev/null || { say "$tool not found (tools/install-deps.sh installs it)"; exit 1; }
done
# never let node-llama-cpp download or build llama.cpp, should any install script run after all
export NODE_LLAMA_CPP_SKIP_DOWNLOAD=true
mkdir -p "$NPM_DIR"

if ! have_bins; then
    say "installing @node-llama-cpp/linux-x64@$VERSION (prebuilt llama.cpp, about 30 MiB)"
    printf '{"private": true, "dependencies": {"@node-llama-cpp/linux-x64": "%s"}}\n' "$VERSION" >"$NPM_DIR/package.json"
    (cd "$NPM_DIR" && npm install --ignore-scripts --no-audit --no-fund --loglevel=error) ||
        { say "npm install failed"; exit 1; }
    have_bins || { say "npm installed no @node-llama-cpp/linux-x64 $VERSION"; exit 1; }
fi

if ! have_headers; then
    say "taking the llama.cpp headers from node-llama-cpp@$VERSION's source bundle"
    work=$(mktemp -d "$DEPS/.setup.XXXXXX")
    trap 'rm -rf "$work"' EXIT INT TERM
    (cd "$work" && npm pack "node-llama-cpp@$VERSION" --loglevel=error >/dev/null) || { say "npm pack failed"; exit 1; }
    tar -xzf "$work/node-llama-cpp-$VERSION.tgz" -C "$work" package/llama/gitRelease.bundle
    git init -q "$work/repo"
    git -C "$work/repo" fetch -q "$work/package/llama/gitRelease.bundle" HEAD
    rm -rf "$SRC_DIR"
    mkdir -p "$SRC_DIR"
    git -C "$work/repo" archive FETCH_HEAD include ggml/include common vendor/nlohmann | tar -x -C "$SRC_DIR"
    git -C "$work/repo" rev-parse FETCH_HEAD >"$SRC_DIR/.commit"
    echo "$VERSION" >"$SRC_DIR/.version"
fi
say "llama.cpp of node-llama-cpp $VERSION is in $DEPS (source $(cat "$SRC_DIR/.commit"))"
