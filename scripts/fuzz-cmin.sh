#!/usr/bin/env bash
# Merges what the fuzz runs found (build/fuzz/corpus/<target>) into the checked-in corpus
# (fuzz/corpus/<target>), minimized by coverage (`cargo fuzz cmin`), then capped to keep the
# repository and the replay in `make test` small: beyond <max> files the largest go, except
# regression inputs and seeds (crash-*, seed-*, named by hand, always kept). Usage: scripts/fuzz-cmin.sh <target> [max]
set -euo pipefail
target=${1:?usage: scripts/fuzz-cmin.sh <target> [max files]}
max=${2:-300}
root=$(cd "$(dirname "$0")/.." && pwd)
corpus=$root/fuzz/corpus/$target
mkdir -p "$root/build/fuzz"
if [ -d "$root/build/fuzz/corpus/$target" ]; then
  find "$root/build/fuzz/corpus/$target" -type f -exec cp -n -t "$corpus" {} +
fi
# cmin renames every input by its hash: regression inputs and seeds are set aside and kept.
keep=$(mktemp -d)
find "$corpus" -type f \( -name 'crash-*' -o -name 'seed-*' \) -exec mv -t "$keep" {} +
(cd "$root/fuzz" && cargo +nightly fuzz cmin -a "$target" "corpus/$target") >"$root/build/fuzz/cmin-$target.log" 2>&1 \
  || { mv "$keep"/* "$corpus"/ 2>/dev/null; tail -20 "$root/build/fuzz/cmin-$target.log"; exit 1; }
find "$corpus" -type f -printf '%s %p\n' | sort -n | tail -n +$((max + 1)) | cut -d' ' -f2- | xargs -r rm -f
for f in "$keep"/*; do
  [ -e "$f" ] || continue
  rm -f "$corpus/$(sha1sum <"$f" | cut -d' ' -f1)"
  mv "$f" "$corpus/"
done
rmdir "$keep"
echo "fuzz-cmin $target: $(find "$corpus" -type f | wc -l) files, $(du -sb "$corpus" | cut -f1) bytes"
