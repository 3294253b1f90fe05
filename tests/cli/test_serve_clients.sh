#!/usr/bin/env bash
# tandem serve with the official npm clients: openai 6.x (chat whole and streamed, completions, models,
# an error) and ollama (chat, generate, tags, show); every answer equals `tandem generate`'s for the same
# greedy request, text and token count (tests/js/clients.mjs).
set -euo pipefail
source "$(dirname "$0")/serve_npm.sh"
serve_need openai ollama
exec node "$TANDEM_SOURCE_DIR/tests/js/clients.mjs"
