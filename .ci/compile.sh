#!/usr/bin/env bash
# deno task compile: one executable per Linux target in dist/, with exactly
# the permissions of `deno task start` (read from deno.json, one source of truth).
set -euo pipefail
cd "$(dirname "$0")/.."
perms=$(deno eval --quiet 'const t = JSON.parse(Deno.readTextFileSync("deno.json")).tasks.start;
console.log(t.split(" ").filter((w) => w.startsWith("--allow-") || w.startsWith("--v8-flags=") || w === "--no-prompt").join(" "))')
mkdir -p dist
deno check main.ts
status=0
for target in x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu; do
  out="dist/minimta-${target}"
  echo "== compiling ${out} (${perms})"
  # The intake worker is loaded with new Worker(URL): not an import, so it is included by name.
  if ! log=$(deno compile ${perms} --include src/cli/intake_worker.ts --target "${target}" \
    --output "${out}" main.ts 2>&1); then
    echo "${log}" | tail -3
    if grep -qiE 'download|dl\.deno\.land|network|dns error|connect' <<<"${log}"; then
      echo "!! ${out}: deno compile could not download the Deno runtime base for ${target} (no access to Deno's servers from this machine)."
      echo "   The code type-checks; install.sh falls back to a launcher that runs the source with the same permissions."
    fi
    status=1
  else
    echo "   built ${out} ($(du -h "${out}" | cut -f1))"
  fi
done
exit ${status}
