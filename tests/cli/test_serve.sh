#!/usr/bin/env bash
# tandem serve with curl: the API key, every error status (400 with the field named, 401, 404, 405, 413,
# 429 with Retry-After, 503 while draining), a client that disconnects (its slot is freed within a step),
# the drain on SIGTERM (exit 0), a server too large for its plan (refused at start), greedy answers equal
# to `tandem generate`'s with and without MTP, and MTP acceptance in /metrics.
set -euo pipefail
command -v curl >/dev/null || { echo "SKIP: curl is not installed"; exit 77; }
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; [ -f "$tmp/err" ] && tail -n 20 "$tmp/err"; exit 1; }

# start ARGS...: a server on a free port; sets PID and URL
start() {
    "$TANDEM" serve --port 0 "$@" 2>"$tmp/err" &
    PID=$!
    pids+=("$PID")
    for _ in $(seq 600); do
        grep -q 'ready:' "$tmp/err" 2>/dev/null && break
        kill -0 "$PID" 2>/dev/null || fail "the server exited at start: $(cat "$tmp/err")"
        sleep 0.1
    done
    URL=$(grep -o 'http://[^/]*' "$tmp/err" | head -n 1)
    [ -n "$URL" ] || fail "no address in: $(cat "$tmp/err")"
}
stop() { kill -TERM "$PID"; wait "$PID"; }
# req METHOD PATH [BODY] [curl args...]: prints the status, the body goes to $tmp/body
req() {
    local m=$1 p=$2 body=${3:-}
    shift 3 || shift $#
    curl -s -o "$tmp/body" -w '%{http_code}' -X "$m" "$URL$p" ${body:+-H 'Content-Type: application/json' --data-binary "$body"} "$@"
}
expect() { # expect STATUS PATTERN METHOD PATH [BODY] [curl args...]
    local want=$1 pat=$2
    shift 2
    local got
    got=$(req "$@")
    [ "$got" = "$want" ] || fail "$1 $2 ${3:-}: status $got, expected $want: $(cat "$tmp/body")"
    grep -qE "$pat" "$tmp/body" || fail "$1 $2: the answer lacks /$pat/: $(cat "$tmp/body")"
}
metric() { curl -s -H "Authorization: Bearer $KEY" "$URL/metrics" | awk -v n="$1" '$1 == n { print $2 }'; }

"$TANDEM" serve --help | grep -q -- '--parallel' || fail "serve --help"
set +e
"$TANDEM" serve --temp 0.5 2>"$tmp/usage"; rc=$?
set -e
[ $rc = 2 ] && grep -q 'per request' "$tmp/usage" || fail "--temp: exit $rc: $(cat "$tmp/usage")"

# ---------------------------------------------------------------- loading: 503 until the model is in
TANDEM_SERVE_TEST_LOAD_DELAY_MS=3000 "$TANDEM" serve --port 0 2>"$tmp/err" &
PID=$!
pids+=("$PID")
for _ in $(seq 100); do grep -q 'listening' "$tmp/err" && break; sleep 0.05; done
URL=$(grep -o 'http://[^/]*' "$tmp/err" | head -n 1)
expect 503 '"status":"loading"' GET /health ''
expect 503 'still loading' POST /v1/chat/completions '{"messages":[{"role":"user","content":"x"}]}'
for _ in $(seq 600); do grep -q 'ready:' "$tmp/err" && break; sleep 0.1; done
expect 200 '"status":"ok"' GET /health ''
stop
echo "loading: /health and the routes answer 503 until the model is loaded"

# ---------------------------------------------------------------- errors, with a key
KEY=s3cret
export TANDEM_SERVE_TEST_DELAY_MS=100 # answers take over a second: time to queue, disconnect and drain
start --api-key "$KEY" --parallel 1 --queue 1 --ctx 64 --max-body 4KiB
A=(-H "Authorization: Bearer $KEY")
CHAT='{"messages":[{"role":"user","content":"What does \"harbor\" mean?"}],"temperature":0}'
expect 200 '"status":"ok"' GET /health ''
expect 401 'API key' GET /v1/models ''
expect 401 'API key' GET /v1/models '' -H "Authorization: Bearer wrong"
expect 401 'API key' GET / ''
expect 200 '"tandem-tiny"' GET /v1/models '' "${A[@]}"
expect 200 '<title>tandem</title>' GET / '' "${A[@]}"
expect 400 'not valid JSON' POST /v1/chat/completions '{"messages": [' "${A[@]}"
expect 400 '"param":"temperature"' POST /v1/chat/completions '{"messages":[{"role":"user","content":"x"}],"temperature":"hot"}' "${A[@]}"
expect 400 '"param":"messages\[0\]' POST /v1/chat/completions '{"messages":[{"role":"robot","content":"x"}]}' "${A[@]}"
expect 400 "model 'gpt-4o' is not served" POST /v1/chat/completions '{"model":"gpt-4o","messages":[{"role":"user","content":"x"}]}' "${A[@]}"
expect 400 '"param":"response_format"' POST /v1/chat/completions '{"messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_object"}}' "${A[@]}"
expect 400 'one choice.*"param":"n"' POST /v1/chat/completions '{"messages":[{"role":"user","content":"x"}],"n":2}' "${A[@]}"
expect 400 'frequency_penalty' POST /v1/chat/completions '{"messages":[{"role":"user","content":"x"}],"frequency_penalty":0.5}' "${A[@]}"
expect 400 'mirostat' POST /api/chat '{"model":"tandem-tiny","messages":[{"role":"user","content":"x"}],"options":{"mirostat":1}}' "${A[@]}"
long=$(printf 'word %.0s' $(seq 100))
expect 400 'context holds 64' POST /v1/completions "{\"prompt\":\"$long\"}" "${A[@]}"
big=$(head -c 5000 /dev/zero | tr '\0' 'a')
expect 413 'larger than 4096' POST /v1/completions "{\"prompt\":\"$big\"}" "${A[@]}"
expect 404 'no route' GET /v2/nothing '' "${A[@]}"
expect 405 'not allowed' GET /v1/chat/completions '' "${A[@]}"
expect 200 '"content":"' POST /v1/chat/completions "$CHAT" "${A[@]}"
echo "errors: 401 without or with a wrong key, 400 naming the field, 404, 405, 413; the server goes on serving"

# queue full: one slot and one place in the queue; a third request gets 429
bg=()
for i in 1 2; do curl -s -N "${A[@]}" "$URL/v1/chat/completions" -d "$CHAT" >"$tmp/bg$i" & bg+=($!); done
sleep 0.3
got=$(curl -s -D "$tmp/h" -o "$tmp/body" -w '%{http_code}' "${A[@]}" "$URL/v1/chat/completions" -d "$CHAT")
[ "$got" = 429 ] && grep -qi '^retry-after:' "$tmp/h" || fail "a full queue: $got $(cat "$tmp/body")"
wait "${bg[@]}" 2>/dev/null || true
echo "queue full: 429 with Retry-After"

# a client that leaves: its generation is cancelled and the slot freed within a step or two
before=$(metric tandem_generations_cancelled_total)
curl -s -N --max-time 0.4 "${A[@]}" "$URL/v1/chat/completions" -d "${CHAT%\}},\"stream\":true}" >/dev/null || true
sleep 0.3
[ "$(metric tandem_slots_busy)" = 0 ] || fail "the slot of a client that left is still busy"
[ "$(metric tandem_generations_cancelled_total)" -gt "$before" ] || fail "no generation was cancelled"
echo "disconnect: the generation was cancelled and the slot freed"

# drain: a running answer finishes or is cut within a second, new requests get 503, exit 0
curl -s -N "${A[@]}" "$URL/v1/chat/completions" -d "${CHAT%\}},\"stream\":true}" >"$tmp/running" &
running=$!
sleep 0.2
kill -TERM "$PID"
sleep 0.1
expect 503 'shutting down' POST /v1/chat/completions "$CHAT" "${A[@]}"
t0=$(date +%s.%N)
wait "$PID" || fail "the server exited with $? after SIGTERM"
wait "$running" || true
t1=$(date +%s.%N)
awk -v a="$t0" -v b="$t1" 'BEGIN { exit !(b - a < 3.5) }' || fail "the drain took $(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }') s"
grep -q 'data: \[DONE\]' "$tmp/running" || fail "the running stream did not end properly: $(cat "$tmp/running")"
echo "drain: 503 for new requests, the running stream ended with [DONE], exit 0"
unset TANDEM_SERVE_TEST_DELAY_MS

# ---------------------------------------------------------------- refused at start: the plan holds every slot's cache
set +e
"$TANDEM" serve --port 0 --parallel 64 --ctx 16777216 2>"$tmp/big"; rc=$?
set -e
[ $rc = 1 ] && grep -q 'do not fit' "$tmp/big" || fail "64 slots of 16M positions: exit $rc: $(cat "$tmp/big")"
echo "a server whose slots' KV cache does not fit is refused: $(grep -o 'do not fit[^;]*' "$tmp/big" | head -n 1)"

# ---------------------------------------------------------------- greedy answers, plain and MTP
want=$("$TANDEM" generate --json --prompt 'What does "harbor" mean?' -n 64 | grep -o '"text":"[^"]*"')
for mtp in off on; do
    start --mtp "$mtp" --parallel 2
    KEY=""
    curl -s "$URL/v1/chat/completions" -d "${CHAT%\}},\"max_tokens\":64}" >"$tmp/body"
    grep -q "\"content\":${want#\"text\":}" "$tmp/body" || fail "--mtp $mtp: $(cat "$tmp/body") is not $want"
    if [ "$mtp" = off ]; then # a request with tools: offered in the prompt; the bundled model answers in text
        TOOLS='"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}}]'
        curl -s "$URL/v1/chat/completions" -d "${CHAT%\}},$TOOLS}" >"$tmp/body"
        grep -q '"finish_reason":"stop"' "$tmp/body" && grep -q '"content":"' "$tmp/body" || fail "tools: $(cat "$tmp/body")"
        curl -s "$URL/api/chat" -d "{\"model\":\"default\",\"stream\":false,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],$TOOLS}" >"$tmp/body"
        grep -q '"done":true' "$tmp/body" || fail "ollama tools: $(cat "$tmp/body")"
    fi
    drafted=$(metric tandem_mtp_drafted_total)
    if [ "$mtp" = on ]; then
        [ "${drafted%.*}" -gt 0 ] || fail "--mtp on drafted nothing"
        echo "MTP on: the greedy answer equals generate's; /metrics: $drafted drafted, acceptance $(metric tandem_mtp_acceptance)"
    else
        [ "$drafted" = 0 ] || fail "--mtp off drafted $drafted"
    fi
    stop
done
echo "PASS"
