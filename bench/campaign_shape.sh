#!/usr/bin/env bash
# bench/campaign_shape.sh — the campaign shape of issue 10, end to end: a
# campaign of one-recipient messages to many recipient domains whose MX
# records point at 3 receiving hosts, minimta against Postfix (each with its
# default delivery settings) on this machine, alternating in the same run.
#
#   bash bench/run.sh campaign-shape
#   BENCH_MESSAGES=2000 BENCH_DOMAINS=100 bash bench/campaign_shape.sh     # quick run
#   BENCH_ROUNDS=3 bash bench/campaign_shape.sh                            # 3 x (minimta, Postfix)
#
# Shape: BENCH_DOMAINS domains d1.test..dD.test; dI.test has one MX, chosen by
# I mod 3: mx.a.example (127.0.0.2), mx.b.example (127.0.0.3) or mx.c.example
# (127.0.0.4), each a Postfix `smtp-sink -c` on port BENCH_PORT_BASE+25 (port
# 25 may be the host's own MTA's; both servers are pointed at the port:
# minimta's delivery.port, Postfix's smtp_tcp_port). BENCH_MESSAGES messages of
# BENCH_SIZE bytes, recipient K = rK@dI.test with I = K mod D + 1 (every domain
# gets its share), are submitted by bench/lib/campaign_submit.py over
# BENCH_SESSIONS (10) concurrent sessions from a trusted loopback address,
# each session reused for all its messages. The sinks are restarted for each
# server's run.
#
# DNS: tests/fakes/fake_dns.py (dnspython, as bench/delivery.sh and
# bench/campaign_throttle.sh) on 127.0.0.154:53. minimta uses it through
# delivery.dns_servers; Postfix reads /etc/resolv.conf, so it is started in a
# private mount namespace (`unshare -m`) where /etc/resolv.conf is a bind
# mount of "nameserver 127.0.0.154" — the host's file is not touched.
#
# minimta: its defaults (delivery.concurrency 50, per_domain_concurrency 5,
#   connection reuse, queue.fsync true), plus only what the bench needs: listen
#   address, no TLS listener or local socket, trusted_networks 127.0.0.1/32
#   (relay without AUTH, like Postfix's mynetworks), a spool dir, and to reach
#   the sinks delivery.port, delivery.dns_servers and delivery.allow_loopback.
# Postfix 3.7: defaults for everything about destinations and delivery —
#   default_destination_concurrency_limit 20 (per domain),
#   initial_destination_concurrency 5, default_destination_recipient_limit 50,
#   default_destination_rate_delay 0s, default_process_limit 100 (so at most
#   100 smtp processes), smtp_connection_cache_on_demand yes (reuse_time_limit
#   300s, reuse_count_limit 0), qmgr_message_active_limit 20000,
#   in_flow_delay 1s — plus mynetworks 127.0.0.0/8 (relay), smtp_tcp_port =
#   the sinks' port, smtp_tls_security_level may (as the other benches; the
#   sinks offer no STARTTLS). Postfix always fsyncs; so does minimta here.
#
# Figures per server run:
#   time     first submission -> the three sinks' counters (smtp-sink -c,
#            polled every 10 ms by bench/lib/shape_wait.py) sum to N
#   msg/s    N / time; "submit s" is the submission phase alone
#   CPU      utime+stime over that interval, in seconds and ms/msg (minimta: the
#            deno process; Postfix: master and all its children, reaped ones
#            included — bench/lib/cpu.sh). Sinks, submitter and DNS not counted.
#   RSS      peak of the summed VmRSS of the process tree (Postfix: master and
#            every child, shared pages counted in each), sampled every 0.5 s;
#            PSS the same with smaps_rollup (shared pages split among users)
# Verification (the run fails with an error otherwise): every message reaches
# the sinks before BENCH_TIMEOUT; the queue is empty afterwards; then each
# sink's count is exactly its expected share and the total exactly N (no
# losses, no duplicates).
#
# Requirements: root (private Postfix, port 53, unshare -m), postfix with
# smtp-sink, Deno, /usr/bin/python3 with dnspython.
#
# Knobs (environment):
#   BENCH_MESSAGES=50000 BENCH_DOMAINS=1000 BENCH_ROUNDS=1 BENCH_SESSIONS=10
#   BENCH_SIZE=4096 BENCH_TIMEOUT=1800 (s per server run)
#   BENCH_SERVERS="minimta postfix"  (order of round 1; even rounds reverse it)
#   BENCH_PORT_BASE=43000 BENCH_TMPDIR=DIR BENCH_KEEP=1 BENCH_REPORT_SUFFIX=""
#   BENCH_MINIMTA_FLAGS="" BENCH_MINIMTA_ENTRY=main.ts
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
N=${BENCH_MESSAGES:-50000}
D=${BENCH_DOMAINS:-1000}
ROUNDS=${BENCH_ROUNDS:-1}
SESSIONS=${BENCH_SESSIONS:-10}
SIZE=${BENCH_SIZE:-4096}
TIMEOUT=${BENCH_TIMEOUT:-1800}
SERVERS=${BENCH_SERVERS:-"minimta postfix"}
PORT_BASE=${BENCH_PORT_BASE:-43000}
# shellcheck disable=SC2034 # used by bench/lib/minimta.sh
MINIMTA_FLAGS=${BENCH_MINIMTA_FLAGS:-}
# shellcheck disable=SC2034 # used by bench/lib/minimta.sh
MINIMTA_ENTRY=${BENCH_MINIMTA_ENTRY:-main.ts}
MX_PORT=$((PORT_BASE + 25))
DNS_IP=127.0.0.154
SINK_IPS=(127.0.0.2 127.0.0.3 127.0.0.4)
MX_NAMES=(mx.a.example mx.b.example mx.c.example)
OUT_DIR=$ROOT/bench/out
STAMP=$(date +%Y-%m-%d)
REPORT=$OUT_DIR/campaign-shape-$STAMP${BENCH_REPORT_SUFFIX:-}.txt
CLK_TCK=$(getconf CLK_TCK)
PY=/usr/bin/python3

die() { echo "bench: FAILED: $*" >&2; exit 1; }
say() { echo "bench: $*" >&2; }
# shellcheck source=bench/lib/postfix.sh
. "$ROOT/bench/lib/postfix.sh"
# shellcheck source=bench/lib/minimta.sh
. "$ROOT/bench/lib/minimta.sh"
# shellcheck source=bench/lib/cpu.sh
. "$ROOT/bench/lib/cpu.sh"

# ---- preflight ---------------------------------------------------------------
[ -x /usr/bin/time ] || die "/usr/bin/time not found (apt-get install -y time)"
for tool in deno postfix postconf smtp-sink openssl unshare mount getconf; do
  command -v "$tool" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin:/sbin
  command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found (apt-get install -y postfix openssl util-linux)"
done
[ "$(id -u)" = 0 ] || die "must run as root (private Postfix, DNS on port 53, unshare -m)"
$PY -c 'import dns.message' 2>/dev/null || die "$PY lacks dnspython: apt-get install -y python3-dnspython"
{ [ "$N" -ge 1 ] && [ "$D" -ge 3 ] && [ "$ROUNDS" -ge 1 ] && [ "$SESSIONS" -ge 1 ]; } 2>/dev/null ||
  die "need BENCH_MESSAGES >= 1, BENCH_DOMAINS >= 3, BENCH_ROUNDS >= 1, BENCH_SESSIONS >= 1"
for s in $SERVERS; do case $s in minimta | postfix) ;; *) die "unknown server '$s'" ;; esac; done

# shellcheck source=bench/lib/workdir.sh
. "$ROOT/bench/lib/workdir.sh"
WORK=$(bench_workdir campaign-shape)
chmod 755 "$WORK"
MINIMTA_PID=""
DNS_PID=""
HOST_PIDS=()
PF_DIRS=()

stop_hosts() {
  local p
  for p in "${HOST_PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  HOST_PIDS=()
}
cleanup() {
  local rc=$?
  set +e
  if [ -n "$MINIMTA_PID" ] && kill -0 "$MINIMTA_PID" 2>/dev/null; then
    kill -TERM "$MINIMTA_PID"; wait "$MINIMTA_PID" 2>/dev/null
  fi
  for d in "${PF_DIRS[@]}"; do
    postfix -c "$d/etc" stop >/dev/null 2>&1 || postfix -c "$d/etc" abort >/dev/null 2>&1
  done
  stop_hosts
  [ -n "$DNS_PID" ] && kill "$DNS_PID" 2>/dev/null && wait "$DNS_PID" 2>/dev/null
  if [ "${BENCH_KEEP:-}" = 1 ] || [ "$rc" != 0 ]; then say "kept $WORK"; else rm -rf "$WORK"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "work dir $WORK; $N messages to $D domains on 3 hosts; $ROUNDS round(s) of: $SERVERS"
(cd "$ROOT" && deno cache main.ts bench/lib/make_users.ts) >/dev/null 2>&1 ||
  die "deno cache failed (are minimta's npm dependencies reachable?)"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=localhost" \
  -keyout "$WORK/server.key" -out "$WORK/server.crt" >/dev/null 2>&1
(cd "$ROOT" && deno run -A bench/lib/make_users.ts "$WORK/users.json" user secret user@ours.test plain)

# ---- DNS: D domains, one MX each on one of the 3 hosts ------------------------
$PY - "$D" "${MX_NAMES[@]}" "${SINK_IPS[@]}" >"$WORK/zone.json" <<'PYZONE'
import json, sys
d, names, ips = int(sys.argv[1]), sys.argv[2:5], sys.argv[5:8]
zone = {n: {"A": [ip]} for n, ip in zip(names, ips)}
for i in range(1, d + 1):
    zone[f"d{i}.test"] = {"MX": [[10, names[i % 3]]]}
json.dump(zone, sys.stdout)
PYZONE
$PY "$ROOT/tests/fakes/fake_dns.py" --listen "$DNS_IP" --port 53 --zone "$WORK/zone.json" \
  >"$WORK/dns.out" 2>"$WORK/dns.err" &
DNS_PID=$!
for _ in $(seq 1 100); do grep -q READY "$WORK/dns.out" 2>/dev/null && break; sleep 0.1; done
grep -q READY "$WORK/dns.out" || { cat "$WORK/dns.err" >&2; die "fake DNS did not start on $DNS_IP:53"; }
printf 'nameserver %s\noptions timeout:2 attempts:2\n' "$DNS_IP" >"$WORK/resolv.conf"
# Messages per host, as campaign_submit.py spreads them (recipient K -> domain K mod D + 1).
read -r -a SHARE < <($PY -c "n, d = $N, $D
c = [0, 0, 0]
for k in range(n): c[(k % d + 1) % 3] += 1
print(*c)")
say "messages per host (${MX_NAMES[*]}): ${SHARE[*]}"

# ---- receiving hosts (fresh for each server run) --------------------------------
start_hosts() { # dir
  local dir=$1 ip
  mkdir -p "$dir"
  for ip in "${SINK_IPS[@]}"; do
    smtp-sink -c -u nobody "$ip:$MX_PORT" 1000 >"$dir/sink-$ip.out" 2>"$dir/sink-$ip.err" &
    HOST_PIDS+=($!)
  done
  for ip in "${SINK_IPS[@]}"; do
    for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/$ip/$MX_PORT") 2>/dev/null && break; sleep 0.1; done
    (exec 3<>"/dev/tcp/$ip/$MX_PORT") 2>/dev/null || die "receiving host $ip:$MX_PORT did not start"
  done
}
sink_counts() { # dir -> "a b c"
  local ip out=()
  for ip in "${SINK_IPS[@]}"; do
    out+=("$($PY "$ROOT/bench/lib/sink_count.py" "$1/sink-$ip.out")")
  done
  echo "${out[*]}"
}
# Connections each sink accepted (sess=N of its counter line; the start-up probes included).
sink_sessions() { # dir -> total
  local ip total=0 s
  for ip in "${SINK_IPS[@]}"; do
    s=$(tail -c 200 "$1/sink-$ip.out" | tr '\r' '\n' | grep -o 'sess=[0-9]*' | tail -1 | cut -d= -f2 || true)
    total=$((total + ${s:-0}))
  done
  echo "$total"
}

# ---- minimta: defaults + what the bench needs ---------------------------------------
start_minimta() { # dir port
  local dir=$1 port=$2
  cat >"$dir/config.yaml" <<YAML
server:
  hostname: bench.ours.test
  listen_addr: "127.0.0.1:$port"
  listen_tls_addr: ""
  local_socket: "" # never the host's /run/minimta
  trusted_networks: ["127.0.0.1/32"]
tls:
  cert_file: $WORK/server.crt
  key_file: $WORK/server.key
auth:
  users_file: $WORK/users.json
queue:
  dir: $dir/spool
  fsync: true
delivery:
  port: $MX_PORT
  dns_servers: ["$DNS_IP:53"]
  allow_loopback: true
YAML
  mta_launch "$dir"
}

# ---- Postfix: default destination limits, in its own mount namespace --------------
start_postfix() { # dir port
  local dir=$1 port=$2 etc=$1/etc
  pf_prepare "$dir" "$port"
  local -a conf
  mapfile -t conf < <(pf_base_conf "$dir")
  postconf -c "$etc" -e "${conf[@]}" \
    "mynetworks = 127.0.0.0/8" \
    "smtpd_relay_restrictions = permit_mynetworks reject_unauth_destination" \
    "smtp_tls_security_level = may" \
    "smtp_tcp_port = $MX_PORT"
  pf_start "$dir" "$port" "$WORK/resolv.conf"
}
queued_postfix() {
  find "$1/queue/maildrop" "$1/queue/incoming" "$1/queue/active" "$1/queue/deferred" \
    "$1/queue/hold" -type f 2>/dev/null | wc -l
}

# ---- one server run -----------------------------------------------------------------
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
awk '$1 > 1.0 { exit 1 }' /proc/loadavg ||
  say "warning: load average $LOAD_START before the benchmark; results will be noisy"
RESULTS=$WORK/results.tsv
NOTES=$WORK/notes.txt
: >"$RESULTS"; : >"$NOTES"

measure() { # round server
  local round=$1 server=$2 dir=$WORK/r$1-$2 port pid c0 c1 t0 tsub
  mkdir -p "$dir"
  start_hosts "$dir/hosts"
  sleep 0.5 # the start-up probes' sessions end
  local sess0; sess0=$(sink_sessions "$dir/hosts")
  if [ "$server" = postfix ]; then
    port=$((PORT_BASE + 2)); start_postfix "$dir" "$port"; pid=$PF_MASTER
  else
    port=$((PORT_BASE + 1)); start_minimta "$dir" "$port"; pid=$MINIMTA_PID
  fi
  local load started; load=$(cut -d' ' -f1 /proc/loadavg); started=$(date -u '+%H:%M:%S')
  say "round $round/$server: submitting $N messages (started $started UTC, load $load)"
  $PY "$ROOT/bench/lib/shape_wait.py" "$N" "$TIMEOUT" "$pid" "$dir"/hosts/sink-*.out \
    >"$dir/wait.json" 2>"$dir/wait.err" &
  local waiter=$!
  c0=$(tree_ticks "$pid"); t0=$(now)
  /usr/bin/time -f '%U %S' -o "$dir/submit.time" \
    $PY "$ROOT/bench/lib/campaign_submit.py" 127.0.0.1 "$port" "$N" "$D" "$SESSIONS" "$SIZE" \
    >"$dir/submit.log" 2>&1 || { cat "$dir/submit.log" >&2; die "$server: submission failed"; }
  tsub=$(now)
  say "round $round/$server: submitted in $(awk -v a="$t0" -v b="$tsub" 'BEGIN { printf "%.1f", b - a }') s; waiting for the sinks (at most ${TIMEOUT}s)"
  if ! wait "$waiter"; then
    cat "$dir/wait.err" >&2
    die "round $round/$server: the sinks got $(sink_counts "$dir/hosts") (sum of ${SHARE[*]} expected = $N) in ${TIMEOUT}s; see $dir"
  fi
  c1=$(tree_ticks "$pid")
  local ended; ended=$(date -u '+%H:%M:%S')
  local hwm=""
  [ "$server" = minimta ] && hwm=$(awk '/^VmHWM/ { print $2 }' "/proc/$pid/status")
  # The queue must empty, then the counts must be exact: no loss, no duplicate.
  local fn=queued_$server i
  for i in $(seq 1 1200); do [ "$($fn "$dir")" = 0 ] && break; sleep 0.1; done
  [ "$($fn "$dir")" = 0 ] || die "round $round/$server: $($fn "$dir") messages still queued 120 s after the sinks got all $N"
  sleep 1
  local -a got
  read -r -a got < <(sink_counts "$dir/hosts")
  local total=$((got[0] + got[1] + got[2]))
  [ "$total" = "$N" ] || die "round $round/$server: the sinks counted $total messages (${got[*]}), $N were submitted"
  for i in 0 1 2; do
    [ "${got[$i]}" = "${SHARE[$i]}" ] ||
      die "round $round/$server: ${MX_NAMES[$i]} counted ${got[$i]}, expected ${SHARE[$i]} (all: ${got[*]} vs ${SHARE[*]})"
  done
  # Connections the server opened to the sinks: smtp-sink counts a session when it ends, and
  # both servers keep idle ones open (minimta's pool, Postfix's scache): counted after the stop.
  if [ "$server" = postfix ]; then pf_stop "$dir"; else stop_minimta; fi
  sleep 0.5
  local conns=$(($(sink_sessions "$dir/hosts") - sess0))
  local line
  line=$($PY - "$round" "$server" "$N" "$t0" "$tsub" "$c1" "$c0" "$CLK_TCK" "$load" "$conns" "$dir/wait.json" "$started" "$ended" <<'PYLINE'
import json, sys
rnd, server, n, t0, tsub, c1, c0, hz, load, conns, path, started, ended = sys.argv[1:]
w = json.load(open(path))
n, t0 = int(n), float(t0)
secs = w["t"] - t0
cpu_s = (int(c1) - int(c0)) / int(hz)
print("\t".join(str(x) for x in [
    rnd, server, n, f"{secs:.2f}", f"{n / secs:.1f}", f"{float(tsub) - t0:.2f}", f"{cpu_s:.2f}",
    f"{cpu_s * 1000 / n:.3f}", f"{w['peak_rss_kb'] / 1024:.1f}", f"{w['peak_pss_kb'] / 1024:.1f}",
    w["peak_procs"], conns, load, started, ended]))
PYLINE
)
  echo "$line" >>"$RESULTS"
  say "round $round/$server: $(echo "$line" | awk -F'\t' '{ printf "%s messages in %s s = %s msg/s; CPU %s s (%s ms/msg); peak RSS %s MiB (PSS %s MiB, %s processes); %s connections to the sinks", $3, $4, $5, $7, $8, $9, $10, $11, $12 }')"
  if [ "$server" = postfix ]; then
    echo "round $round/postfix: sinks ${got[*]}; submitter CPU $(awk '{ print $1 + $2 }' "$dir/submit.time") s; maillog: $(grep -c 'status=sent' "$dir/maillog" || true) sent," \
      "$(grep -c 'status=deferred' "$dir/maillog" || true) deferred," \
      "$(grep -c 'status=bounced' "$dir/maillog" || true) bounced" >>"$NOTES"
  else
    echo "round $round/minimta: sinks ${got[*]}; submitter CPU $(awk '{ print $1 + $2 }' "$dir/submit.time") s; VmHWM $((hwm / 1024)) MiB; log:" \
      "$(grep -c '"outcome":"delivered"' "$dir/minimta.log" || true) delivered," \
      "$(grep -c '"outcome":"transient"' "$dir/minimta.log" || true) deferred," \
      "$(grep -c '"outcome":"bounced"' "$dir/minimta.log" || true) bounced" >>"$NOTES"
  fi
  stop_hosts
}

read -r -a ORDER <<<"$SERVERS"
for round in $(seq 1 "$ROUNDS"); do
  if [ $((round % 2)) = 0 ]; then
    for ((j = ${#ORDER[@]} - 1; j >= 0; j--)); do measure "$round" "${ORDER[$j]}"; done
  else
    for s in "${ORDER[@]}"; do measure "$round" "$s"; done
  fi
done

mkdir -p "$OUT_DIR"
{
  echo "minimta campaign-shape benchmark (issue 10), $(date -u '+%Y-%m-%d %H:%M UTC') on $(hostname)"
  echo "$(nproc) CPUs ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)), $(uname -r)," \
    "$(deno --version | head -1), Postfix $(postconf -d -h mail_version)"
  echo "load average at start: $LOAD_START, at end: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "spool filesystem: $(df -T "$WORK" | awk 'NR == 2 { print $2 " on " $1 }')"
  echo "$N one-recipient messages of $SIZE bytes to $D domains, submitted over $SESSIONS reused sessions"
  echo "  (trusted loopback); MX -> 3 smtp-sinks ${SINK_IPS[*]} port $MX_PORT; per sink: ${SHARE[*]}"
  echo "minimta: default delivery settings (concurrency 50, per_domain_concurrency 5), fsync on"
  echo "Postfix: default destination settings (concurrency limit 20/domain, initial 5, process limit 100,"
  echo "  connection cache on demand, in_flow_delay 1s), fsync always; DNS: fake_dns.py for both"
  echo "time: first submission -> all N counted by the sinks; verified: queue empty, sinks' counts exact"
  echo "CPU: utime+stime of the tree (minimta: deno; Postfix: master + all children); RSS/PSS: peak of the"
  echo "  tree's sum, sampled every 0.5 s"
  echo
  printf '%-5s %-8s %7s %8s %8s %9s %7s %7s %8s %8s %6s %6s %6s  %s\n' round server messages seconds msg/s submit_s CPU_s ms/msg RSS_MiB PSS_MiB procs conns load "window (UTC)"
  awk -F'\t' '{ printf "%-5s %-8s %7s %8s %8s %9s %7s %7s %8s %8s %6s %6s %6s  %s-%s\n", $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15 }' "$RESULTS"
  echo
  sort -t$'\t' -k2,2 "$RESULTS" | awk -F'\t' '
    function median(list,   n, a, i, j, t) {
      n = split(list, a, " ")
      for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
      return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    { s[$2] = s[$2] " " $4; r[$2] = r[$2] " " $5; c[$2] = c[$2] " " $7; m[$2] = m[$2] " " $8
      rss[$2] = rss[$2] " " $9; pss[$2] = pss[$2] " " $10; k[$2]++ }
    END {
      for (x in s) {
        S[x] = median(s[x]); R[x] = median(r[x]); C[x] = median(c[x]); M[x] = median(m[x]); RSS[x] = median(rss[x]); P[x] = median(pss[x])
        printf "%-8s median of %d: %.1f s, %.0f msg/s, CPU %.1f s (%.2f ms/msg), peak RSS %.0f MiB, PSS %.0f MiB\n", x, k[x], S[x], R[x], C[x], M[x], RSS[x], P[x]
      }
      if (("minimta" in S) && ("postfix" in S))
        printf "minimta/Postfix: time %.2fx, msg/s %.2fx, CPU %.2fx, peak RSS %.2fx, PSS %.2fx\n",
          S["minimta"] / S["postfix"], R["minimta"] / R["postfix"], C["minimta"] / C["postfix"], RSS["minimta"] / RSS["postfix"], P["minimta"] / P["postfix"]
    }'
  echo
  cat "$NOTES"
  echo
  echo "raw (round, server, messages, seconds, msg/s, submit s, CPU s, CPU ms/msg, peak RSS MiB, peak PSS MiB, peak processes, connections to the sinks, loadavg before, start, end):"
  cat "$RESULTS"
} >"$REPORT"
cat "$REPORT"
say "written to $REPORT"
