# Sourced by the tests that drive `tandem serve` with npm packages (tools/setup-serve-tests.sh installs
# them; `make test` and CI run it). Without them a test skips (exit 77) and says why; under CI=true it
# fails instead, because CI must run it.
DIR=${TANDEM_SERVE_TESTS_DIR:-$TANDEM_SOURCE_DIR/.deps/serve-tests}
serve_need() {
    local why=""
    command -v node >/dev/null || why="node is not installed (tools/install-deps.sh installs it)"
    for pkg in "$@"; do
        [ -n "$why" ] && break
        [ -f "$DIR/node_modules/$pkg/package.json" ] || why="npm package $pkg is not in $DIR: run tools/setup-serve-tests.sh"
    done
    if [ -n "$why" ]; then
        if [ "${CI:-}" = true ]; then echo "FAIL: $why (CI must run this test)"; exit 1; fi
        echo "SKIP: $why"; exit 77
    fi
}
