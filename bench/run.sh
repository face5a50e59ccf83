#!/usr/bin/env bash
# Entry point of `deno task bench`. Dispatches to a benchmark script:
#   bash bench/run.sh              # submission (as before; = BENCH_SUITE default)
#   bash bench/run.sh submission   # bench/submission.sh
#   bash bench/run.sh delivery     # bench/delivery.sh (end to end, to smtp-sink)
#   bash bench/run.sh memory       # bench/memory.sh (RSS and start-up, 100,000 queued)
#   bash bench/run.sh all          # submission, then delivery
#   bash bench/run.sh campaign     # bench/campaign_throttle.sh (issue 11; not in `all`: hours at full size)
#   bash bench/run.sh campaign-shape  # bench/campaign_shape.sh (issue 10: 50,000 messages, 1,000 domains,
#                                  #   3 sink hosts, end to end; not in `all`)
# The suite may also be chosen with BENCH_SUITE=submission|delivery|all
# (`BENCH_SUITE=delivery deno task bench`); an argument wins over it.
# See each script's header for its requirements and knobs (BENCH_* variables).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
which=${1:-${BENCH_SUITE:-submission}}
case $which in
  submission) exec bash "$here/submission.sh" ;;
  delivery) exec bash "$here/delivery.sh" ;;
  memory) exec bash "$here/memory.sh" ;;
  campaign) exec bash "$here/campaign_throttle.sh" ;;
  campaign-shape) exec bash "$here/campaign_shape.sh" ;;
  all) bash "$here/submission.sh" && exec bash "$here/delivery.sh" ;;
  -h | --help) sed -n '2,13p' "$0" ;;
  *) echo "bench: unknown benchmark '$which' (known: submission, delivery, memory, campaign, campaign-shape, all)" >&2; exit 2 ;;
esac
