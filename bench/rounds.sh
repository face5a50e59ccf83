#!/usr/bin/env bash
# bench/rounds.sh SUITE [ROUNDS] — run a suite ROUNDS times (default 3) with
# one measured run per server each time, so that minimta and Postfix runs
# alternate and a change in machine load (CPU steal, other jobs) falls on
# both alike; then print the median of each (mode or domains, server) over
# the rounds and minimta's ratio to Postfix.
#   bash bench/rounds.sh submission 3
#   bash bench/rounds.sh delivery 3      (BENCH_DOMAINS, BENCH_SERVERS, BENCH_DKIM as in bench/delivery.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
suite=${1:?usage: bench/rounds.sh submission|delivery [ROUNDS]}
rounds=${2:-3}
# bench/delivery.sh names its report delivery-DATE-dkim… with BENCH_DKIM=1.
sfx=""
[ "$suite" = delivery ] && [ -n "${BENCH_DKIM:-}" ] && sfx=-dkim
stamp=$(date +%F)
raw=$(mktemp)
trap 'rm -f "$raw"' EXIT
for r in $(seq 1 "$rounds"); do
  echo "== round $r of $rounds" >&2
  BENCH_REPEATS=1 BENCH_REPORT_SUFFIX="-round$r" bash bench/run.sh "$suite" >/dev/null
  # raw run lines: <mode|domains> <server> <run> <messages> <seconds> <msg/s> <cpu ms/msg> ...
  awk '/^raw runs/ { on = 1; next } on && NF >= 7 { print $1, $2, $6, $7 }' \
    "bench/out/$suite-$stamp$sfx-round$r.txt" >>"$raw"
done
out="bench/out/$suite-$stamp$sfx-rounds.txt"
{
  echo "$suite: median over $rounds alternating rounds (one run per server per round)"
  printf '%-8s %-15s %9s %11s  %s\n' "case" "server" "msg/s" "CPU ms/msg" "runs (msg/s, sorted)"
  sort -k1,1 -k2,2 "$raw" | awk '
    # Sorts the numbers of a space-separated list into a[1..n]; returns n.
    function sortnum(list, a,   n, i, j, t) {
      n = split(list, a, " ")
      for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
      return n
    }
    function median(list,   n, a) {
      n = sortnum(list, a)
      return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    function ascending(list,   n, a, i, out) {
      n = sortnum(list, a)
      for (i = 1; i <= n; i++) out = out " " a[i]
      return out
    }
    { key = $1 " " $2; rate[key] = rate[key] " " $3; cpu[key] = cpu[key] " " $4; cases[$1] = 1; servers[key] = $2 }
    END {
      for (k in rate) { r[k] = median(rate[k]); c[k] = median(cpu[k]) }
      for (k in rate) printf "%-8s %-15s %9.0f %11.2f %s\n", substr(k, 1, index(k, " ") - 1), servers[k], r[k], c[k], ascending(rate[k])
      for (cs in cases) for (k in rate) {
        split(k, p, " ")
        if (p[1] != cs || p[2] ~ /^postfix$/) continue
        pk = cs " postfix"
        if (pk in r) printf "%-8s %-15s %8.2fx %10.2fx  (ratio to Postfix)\n", cs, p[2] "/Postfix", r[k] / r[pk], c[k] / c[pk]
      }
    }' | sort
} | tee "$out"
echo "bench: written to $out" >&2
