#!/bin/sh
# Copy a finished `flowopd reproduce` folder into docs/: report.md -> docs/results-tiny.md (plot links
# rewritten), results.json -> docs/results-tiny.json, plots/*.png -> docs/results-tiny/.
# It overwrites docs/results-tiny.md, including the hand-written reading at its top: write a new one.
# Usage: benchmarks/publish_results.sh OUT_DIR
set -eu
out=${1:?usage: benchmarks/publish_results.sh OUT_DIR (a finished flowopd reproduce --out folder)}
for f in report.md results.json plots; do
  [ -e "$out/$f" ] || { echo "$out/$f is missing: run flowopd reproduce --out $out to the end first" >&2; exit 2; }
done
docs=$(dirname "$0")/../docs
mkdir -p "$docs/results-tiny"
cp "$out"/plots/*.png "$docs/results-tiny/"
sed 's#](plots/#](results-tiny/#g' "$out/report.md" > "$docs/results-tiny.md"
cp "$out/results.json" "$docs/results-tiny.json"
echo "wrote $docs/results-tiny.md, $docs/results-tiny.json and $(ls "$out"/plots/*.png | wc -l) plots"
