#!/usr/bin/env bash
# Entry point of `deno task bench`. Dispatches to a benchmark script:
#   bash bench/run.sh              # all benchmarks (today: submission)
#   bash bench/run.sh submission   # bench/submission.sh
# See each script's header for its requirements and knobs (BENCH_* variables).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
which=${1:-all}
case $which in
  all | submission) exec bash "$here/submission.sh" ;;
  -h | --help) sed -n '2,6p' "$0" ;;
  *) echo "bench: unknown benchmark '$which' (known: submission)" >&2; exit 2 ;;
esac
