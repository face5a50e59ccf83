#!/usr/bin/env bash
# bench/memory.sh — memory and start-up with a large queue: minimta beside
# Postfix, both holding BENCH_QUEUE (100,000) deferred one-recipient messages.
#
#   bash bench/run.sh memory                       # = deno task bench memory
#   BENCH_QUEUE=20000 BENCH_ROUNDS=1 bash bench/memory.sh   # quick run
#
# Filling (not timed): minimta's spool is written directly in its own file
# format by bench/lib/fill_spool.ts (one failed attempt each, due in a day).
# Postfix gets the same number of 1 KB messages over SMTP (smtp-source, 20
# sessions) with `defer_transports = smtp`, so every message goes to its
# deferred queue untried; the fill waits until `postqueue -p` counts them all.
# Its backoff and queue run delay are a day, as minimta's messages are due in
# a day: otherwise a fill longer than Postfix's default 300 s backoff makes
# qmgr scan and move the whole queue during the timed rounds.
# Each round then, for each server in turn (alternating, so a change in
# machine load falls on both alike):
#   start-up   from the start command to ready: minimta logs "minimta
#              listening" (its queue index is built by then); Postfix's
#              `postfix start` returned and its smtpd port accepts.
#              minimta starts twice a round: "minimta-full" with the index
#              a clean stop leaves removed, so it reads every metadata
#              file (a first start, or one after a crash); "minimta" the
#              restart after that stop, which takes the index it left.
#   RSS, PSS   BENCH_SETTLE (5) s after ready, summed over the server's
#              processes (minimta: the deno process; Postfix: master and all
#              its children: qmgr, pickup, anvil, tlsmgr, ...), from
#              /proc/PID/smaps_rollup. RSS counts shared pages (the deno
#              binary's text, libc) in every process; PSS splits them.
#   list       `minimta queue list --json` of the whole queue through the
#              daemon; Postfix: `postqueue -j` (its JSON queue listing), both
#              into a file.
# Before the fill, BENCH_ROUNDS idle rounds: each server started on its
# empty queue, RSS and PSS after BENCH_SETTLE s.
# Both servers are stopped between rounds; the queues stay. Report:
# bench/out/memory-<date>.txt (median over rounds, ratio to Postfix).
#
# Requirements: root, postfix (postfix, postconf, postqueue, smtp-source),
# Deno, openssl. Knobs: BENCH_QUEUE=100000 BENCH_ROUNDS=3 BENCH_SETTLE=5
# BENCH_PORT_BASE=42700 BENCH_TMPDIR=DIR BENCH_KEEP=1 (keep the temp dir)
# BENCH_MINIMTA_FLAGS="" (extra deno run flags; default: the start task's V8 flags).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
N=${BENCH_QUEUE:-100000}
ROUNDS=${BENCH_ROUNDS:-3}
SETTLE=${BENCH_SETTLE:-5}
PORT_BASE=${BENCH_PORT_BASE:-42700}
MINIMTA_ENTRY=main.ts
# The start task's V8 flags (deno.json), as `deno task start` and the compiled binary use.
MINIMTA_FLAGS=${BENCH_MINIMTA_FLAGS-$(cd "$ROOT" && deno eval --quiet 'const t = JSON.parse(Deno.readTextFileSync("deno.json")).tasks.start;
console.log(t.split(" ").filter((w) => w.startsWith("--v8-flags=")).join(" "))')}
OUT_DIR=$ROOT/bench/out
STAMP=$(date +%Y-%m-%d)
REPORT=$OUT_DIR/memory-$STAMP${BENCH_REPORT_SUFFIX:-}.txt

die() { echo "bench: $*" >&2; exit 1; }
say() { echo "bench: $*" >&2; }
# shellcheck source=bench/lib/postfix.sh
. "$ROOT/bench/lib/postfix.sh"
# shellcheck source=bench/lib/minimta.sh
. "$ROOT/bench/lib/minimta.sh"
# shellcheck source=bench/lib/cpu.sh
. "$ROOT/bench/lib/cpu.sh"

for tool in deno postfix postconf postqueue smtp-source openssl awk; do
  command -v "$tool" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin:/sbin
  command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found. Install: apt-get install -y postfix openssl"
done
[ "$(id -u)" = 0 ] || die "must run as root (a private Postfix instance needs it)"

# shellcheck source=bench/lib/workdir.sh
. "$ROOT/bench/lib/workdir.sh"
WORK=$(bench_workdir memory)
chmod 755 "$WORK"
MINIMTA_PID=""
PF_DIRS=()
cleanup() {
  local rc=$?
  set +e
  [ -n "$MINIMTA_PID" ] && kill -TERM "$MINIMTA_PID" 2>/dev/null && wait "$MINIMTA_PID" 2>/dev/null
  for d in "${PF_DIRS[@]}"; do postfix -c "$d/etc" stop >/dev/null 2>&1 || postfix -c "$d/etc" abort >/dev/null 2>&1; done
  if [ "${BENCH_KEEP:-}" = 1 ]; then say "kept $WORK"; else rm -rf "$WORK"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# sum_mem PID...: "RSS_KiB PSS_KiB" summed over the given processes.
sum_mem() {
  local p rss=0 pss=0 r s
  for p in "$@"; do
    r=$(awk '/^Rss:/ { print $2 }' "/proc/$p/smaps_rollup" 2>/dev/null || echo 0)
    s=$(awk '/^Pss:/ { print $2 }' "/proc/$p/smaps_rollup" 2>/dev/null || echo 0)
    rss=$((rss + ${r:-0})); pss=$((pss + ${s:-0}))
  done
  echo "$rss $pss"
}

# ---- minimta: spool filled directly ---------------------------------------------
MDIR=$WORK/minimta
mkdir -p "$MDIR"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=localhost" \
  -keyout "$WORK/server.key" -out "$WORK/server.crt" >/dev/null 2>&1
(cd "$ROOT" && deno cache main.ts bench/lib/fill_spool.ts bench/lib/make_users.ts >/dev/null 2>&1)
(cd "$ROOT" && deno run -A bench/lib/make_users.ts "$MDIR/users.json" user secret user@ours.test plain)
cat >"$MDIR/config.yaml" <<YAML
server:
  hostname: bench.ours.test
  listen_addr: "127.0.0.1:$((PORT_BASE + 1))"
  listen_tls_addr: ""
  local_socket: ""
tls:
  cert_file: $WORK/server.crt
  key_file: $WORK/server.key
auth:
  users_file: $MDIR/users.json
queue:
  dir: $MDIR/spool
delivery:
  dns_servers: ["127.0.0.1:9"]
  retry_schedule: ["1d"]
log:
  level: info
  format: json
YAML
PDIR=$WORK/postfix
PPORT=$((PORT_BASE + 2))
pf_prepare "$PDIR" "$PPORT"
mapfile -t conf < <(pf_base_conf "$PDIR")
postconf -c "$PDIR/etc" -e "${conf[@]}" \
  "relayhost = [127.0.0.2]:$((PORT_BASE + 25))" \
  "defer_transports = smtp" \
  "minimal_backoff_time = 86400s" "maximal_backoff_time = 86400s" "queue_run_delay = 86400s" \
  "mynetworks = 127.0.0.0/8" \
  "smtpd_relay_restrictions = permit_mynetworks reject_unauth_destination" \
  "default_process_limit = 100"

# ---- idle: both servers on an empty queue, RSS and PSS after BENCH_SETTLE s -------
IDLE=$WORK/idle.tsv
: >"$IDLE"
for r in $(seq 1 "$ROUNDS"); do
  say "idle round $r of $ROUNDS"
  rm -f "$MDIR/minimta.log"
  mta_launch "$MDIR"
  sleep "$SETTLE"
  read -r rss pss < <(sum_mem "$MINIMTA_PID")
  printf 'minimta\t%s\t%d\t%d\n' "$r" "$rss" "$pss" >>"$IDLE"
  stop_minimta
  pf_start "$PDIR" "$PPORT"
  sleep "$SETTLE"
  read -r rss pss < <(sum_mem "$PF_MASTER" $(pgrep -P "$PF_MASTER" || true))
  printf 'postfix\t%s\t%d\t%d\n' "$r" "$rss" "$pss" >>"$IDLE"
  pf_stop "$PDIR"
done
rm -rf "$MDIR/spool"

say "filling minimta's spool with $N deferred messages"
(cd "$ROOT" && deno run -A bench/lib/fill_spool.ts "$MDIR/spool" "$N" 1000)

# ---- Postfix: N messages over SMTP, all deferred (defer_transports) ----------------
pf_start "$PDIR" "$PPORT"
say "filling Postfix's queue with $N deferred messages (smtp-source)"
per=$((N / 20))
for s in $(seq 1 20); do
  smtp-source -s 1 -m "$per" -l 1024 -f news@ours.test -t "user$s@d$s.test" "127.0.0.1:$PPORT" \
    >"$WORK/source-$s.log" 2>&1 &
done
wait
pf_count() { find "$PDIR/queue/deferred" -type f | wc -l; }
for i in $(seq 1 1800); do [ "$(pf_count)" -ge $((per * 20)) ] && break; sleep 1; done
say "Postfix deferred queue: $(pf_count) messages; minimta spool: $(find "$MDIR/spool/msg" -type f | wc -l)"
pf_stop "$PDIR"
# The fill wrote minimta's spool without fsync: flush it (and Postfix's queue) before the
# timed starts, or the first start reads while 200,000 dirty files are being written back.
sync

RESULTS=$WORK/results.tsv
: >"$RESULTS"
for r in $(seq 1 "$ROUNDS"); do
  say "round $r of $ROUNDS"
  # minimta twice: first reading every file (the index a stop leaves is
  # removed), then restarted after that clean stop, taking the index it left.
  for pass in minimta-full minimta; do
    [ "$pass" = minimta-full ] && rm -f "$MDIR/spool/index-snapshot.json"
    # (the old log would say "listening" at once)
    rm -f "$MDIR/minimta.log"
    t0=$(now)
    mta_launch "$MDIR"
    t1=$(now)
    sleep "$SETTLE"
    read -r rss pss < <(sum_mem "$MINIMTA_PID")
    t2=$(now)
    (cd "$ROOT" && deno run -A main.ts queue list --json --config "$MDIR/config.yaml" >"$WORK/list.json")
    t3=$(now)
    entries=$(grep -c '^    "id"' "$WORK/list.json" || true)
    printf '%s\t%s\t%.2f\t%d\t%d\t%.2f\t%s\n' "$pass" "$r" "$(echo "$t1 - $t0" | bc)" "$rss" "$pss" \
      "$(echo "$t3 - $t2" | bc)" "$entries" >>"$RESULTS"
    stop_minimta
  done
  # Postfix
  t0=$(now)
  pf_start "$PDIR" "$PPORT"
  t1=$(now)
  sleep "$SETTLE"
  read -r rss pss < <(sum_mem "$PF_MASTER" $(pgrep -P "$PF_MASTER" || true))
  t2=$(now)
  postqueue -c "$PDIR/etc" -j >"$WORK/postqueue.json"
  t3=$(now)
  entries=$(wc -l <"$WORK/postqueue.json")
  printf 'postfix\t%s\t%.2f\t%d\t%d\t%.2f\t%s\n' "$r" "$(echo "$t1 - $t0" | bc)" "$rss" "$pss" \
    "$(echo "$t3 - $t2" | bc)" "$entries" >>"$RESULTS"
  pf_stop "$PDIR"
done

mkdir -p "$OUT_DIR"
{
  echo "memory at scale, $STAMP: $N deferred one-recipient messages queued; median of $ROUNDS alternating rounds"
  echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg); minimta deno flags: ${MINIMTA_FLAGS:-none}"
  printf '%-12s %10s %9s %9s %9s\n' server "start-up s" "RSS MiB" "PSS MiB" "list s"
  awk -F'\t' '
    function median(list,   n, a, i, j, t) {
      n = split(list, a, " ")
      for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
      return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    { s[$1] = s[$1] " " $3; rss[$1] = rss[$1] " " $4 / 1024; pss[$1] = pss[$1] " " $5 / 1024; l[$1] = l[$1] " " $6 }
    END {
      for (k in s) { S[k] = median(s[k]); R[k] = median(rss[k]); P[k] = median(pss[k]); L[k] = median(l[k])
        printf "%-12s %10.2f %9.0f %9.0f %9.2f\n", k, S[k], R[k], P[k], L[k] }
      if ("minimta" in S && "postfix" in S)
        printf "%-12s %9.2fx %8.2fx %8.2fx %8.2fx  (minimta / Postfix)\n", "ratio", S["minimta"] / S["postfix"], R["minimta"] / R["postfix"], P["minimta"] / P["postfix"], L["minimta"] / L["postfix"]
      if ("minimta-full" in S && "postfix" in S)
        printf "%-12s %9.2fx %8.2fx %8.2fx %8.2fx  (minimta-full / Postfix)\n", "ratio", S["minimta-full"] / S["postfix"], R["minimta-full"] / R["postfix"], P["minimta-full"] / P["postfix"], L["minimta-full"] / L["postfix"]
    }' "$RESULTS"
  echo "raw runs (server round start-up_s rss_KiB pss_KiB list_s entries):"
  cat "$RESULTS"
  echo "idle, empty queue, $SETTLE s after ready (median of $ROUNDS):"
  awk -F'\t' '
    function median(list,   n, a, i, j, t) {
      n = split(list, a, " ")
      for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
      return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    { rss[$1] = rss[$1] " " $3 / 1024; pss[$1] = pss[$1] " " $4 / 1024 }
    END {
      for (k in rss) { R[k] = median(rss[k]); P[k] = median(pss[k]); printf "%-12s RSS %5.0f MiB  PSS %5.0f MiB\n", k, R[k], P[k] }
      if ("minimta" in R && "postfix" in R) printf "%-12s RSS %5.2fx     PSS %5.2fx\n", "ratio", R["minimta"] / R["postfix"], P["minimta"] / P["postfix"]
    }' "$IDLE"
  echo "raw idle runs (server round rss_KiB pss_KiB):"
  cat "$IDLE"
} | tee "$REPORT"
say "written to $REPORT"
