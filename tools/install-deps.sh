#!/bin/sh
# Installs what tandem builds against, from Debian/Ubuntu packages. Used by the README's commands and CI.
# Runs apt-get directly as root, through sudo otherwise. Safe to run again: apt-get skips what is there.
set -e
PKGS="build-essential cmake pkg-config git ca-certificates
      libcjson-dev libyaml-dev libpcre2-dev libhwloc-dev libnuma-dev libdnnl-dev libmicrohttpd-dev libedit-dev
      clang libclang-rt-dev tmux qemu-user curl chromium"
# chromium: the web page test of tandem serve drives it headless (playwright-core, tools/setup-serve-tests.sh).
# npm fetches llama.cpp for the interop test (tools/setup-llama.sh) and the serve tests' clients; a Node
# install that has it already stays
command -v npm >/dev/null 2>&1 || PKGS="$PKGS nodejs npm"
[ "${TANDEM_DEPS_EXTRA:-}" ] && PKGS="$PKGS $TANDEM_DEPS_EXTRA"

if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO="sudo"; else
  echo "install-deps: not root and no sudo; install these packages yourself: $PKGS" >&2; exit 1
fi
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -z "$missing" ]; then echo "install-deps: all packages present"; exit 0; fi
echo "install-deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing
