#!/bin/sh
# Carry an unfinished `flowopd reproduce` folder from one session's machine to the next (the machine's
# disk outside the repository is not kept between sessions).
#   benchmarks/carry_run.sh save OUT DEST     copy OUT's config.json and every finished stage (result.json,
#                                             and its adapter/ when it has one) to DEST, to be committed;
#                                             unfinished stages (checkpoints) are left out.
#   benchmarks/carry_run.sh restore DEST      copy DEST back to the OUT it was saved from, then run the same
#                                             `flowopd reproduce --out OUT ...` commands to continue.
# Stage configs name their teachers' and inits' adapters by absolute path, so OUT must be the same path
# on both machines: DEST/origin holds it and restore refuses another.
set -eu
usage="usage: benchmarks/carry_run.sh save OUT DEST | restore DEST"
case "${1:-}" in
  save)
    out=$(cd "${2:?$usage}" && pwd); dest=${3:?$usage}
    [ -f "$out/config.json" ] || { echo "$out/config.json is missing: OUT must be a flowopd reproduce --out folder" >&2; exit 2; }
    mkdir -p "$dest"
    cp "$out/config.json" "$dest/"
    echo "$out" > "$dest/origin"
    n=0
    for result in "$out"/seed*/*/result.json; do
      [ -f "$result" ] || continue
      stage=$(dirname "$result"); rel=${stage#"$out"/}
      mkdir -p "$dest/$rel"
      cp "$result" "$dest/$rel/"
      [ -d "$stage/adapter" ] && rm -rf "$dest/$rel/adapter" && cp -r "$stage/adapter" "$dest/$rel/"
      n=$((n + 1))
    done
    echo "saved $n finished stages of $out to $dest (restore with: benchmarks/carry_run.sh restore $dest)" ;;
  restore)
    dest=${2:?$usage}
    [ -f "$dest/origin" ] || { echo "$dest/origin is missing: DEST must come from 'carry_run.sh save'" >&2; exit 2; }
    out=$(cat "$dest/origin")
    if [ -f "$out/config.json" ] && ! cmp -s "$out/config.json" "$dest/config.json"; then
      echo "$out holds another benchmark (its config.json differs): move it away first" >&2; exit 2
    fi
    mkdir -p "$out"
    (cd "$dest" && find . -type f ! -name origin) | while read -r f; do
      mkdir -p "$out/$(dirname "$f")"; cp "$dest/$f" "$out/$f"
    done
    echo "restored $(cd "$dest" && find . -name result.json | wc -l) finished stages into $out" ;;
  *) echo "$usage" >&2; exit 2 ;;
esac
