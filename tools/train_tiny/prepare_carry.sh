#!/bin/sh
# Run from the repository root on the development machine. Gathers what train.py needs on the GPU host
# (where ../shared does not travel) into .carry/, and keeps .carry/ out of git.
#   SHARED=../shared CORPUS=/tmp/corpus/corpus.txt sh tools/train_tiny/prepare_carry.sh
set -e
SHARED=${SHARED:-../shared}
CORPUS=${CORPUS:-/tmp/corpus/corpus.txt}
if [ ! -f "$CORPUS" ]; then
  echo "no $CORPUS: building it with $SHARED/corpus/make_corpus.py (needs the Debian packages it names)"
  mkdir -p "$(dirname "$CORPUS")"
  python3 "$SHARED/corpus/make_corpus.py" "$CORPUS"
fi
mkdir -p .carry
gzip -9 -c "$CORPUS" > .carry/corpus.txt.gz
cp -f "$SHARED/fixtures/tokenizer/tokenizer.json" "$SHARED/fixtures/generators/make_fixtures.py" .carry/
EXCLUDE=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$EXCLUDE")"
grep -qx '/.carry/' "$EXCLUDE" 2>/dev/null || echo '/.carry/' >> "$EXCLUDE"
ls -la .carry
