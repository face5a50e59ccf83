#!/usr/bin/env bash
# bench/delivery.sh — end-to-end throughput (submission + queue + delivery) of
# minimta against Postfix, both relaying to Postfix's `smtp-sink` on loopback,
# on this machine, in the same run.
#
#   bash bench/run.sh delivery           # = deno task bench delivery
#   BENCH_SUITE=delivery deno task bench
#   BENCH_MESSAGES=2000 BENCH_REPEATS=1 BENCH_DOMAINS=1 bash bench/delivery.sh   # quick run
#
# What one run measures: BENCH_MESSAGES 4 KB messages are submitted by
# smtp-source over BENCH_SESSIONS (20) concurrent sessions from a trusted
# loopback address (one recipient each, spread evenly over BENCH_DOMAINS
# recipient domains d1.test..dN.test: one smtp-source process per domain, with
# SESSIONS/N sessions each), and the server delivers them to one smtp-sink
# (127.0.0.2:BASE+25). The clock runs from just before the first submission
# to the moment the sink's counter (`smtp-sink -c`, polled every 5 ms by
# bench/lib/sink_count.py) reaches all N. msg/s = N / that time. "sub msg/s"
# is the submission phase alone (until the last smtp-source exits): when it is
# much higher than msg/s, delivery is the bottleneck.
# CPU ms/msg: utime+stime of the server over that interval (minimta: the deno
# process; Postfix: master and all its children — smtpd, cleanup, qmgr,
# trivial-rewrite, smtp, scache, ...). smtp-sink, smtp-source and the fake DNS
# server are not counted for either side. Peak RSS: minimta's VmHWM at the end.
# Both with fsync on (minimta `queue.fsync: true`; Postfix always fsyncs).
# After every run both queues must be empty (checked; then `minimta queue
# stats --json` and `postqueue -p` are recorded in the report).
#
# Servers (BENCH_SERVERS):
#   postfix        private instance (postfix -c DIR), relayhost = [127.0.0.2]:PORT
#                  (a literal: no DNS), smtp_tls_security_level = may (the sink
#                  offers no STARTTLS, so plaintext — the same as minimta's
#                  default `delivery.tls: opportunistic`).
#   minimta-dns    delivery.port = sink port, allow_loopback, dns_servers = the
#                  fake DNS (tests/fakes/fake_dns.py) serving "dK.test MX 10
#                  mx.sink.test", "mx.sink.test A 127.0.0.2": the real MX path.
#   minimta-relay  delivery.relay_host = 127.0.0.2:PORT: no DNS at all.
# Concurrency: minimta delivery.concurrency = BENCH_CONCURRENCY (50),
# per_domain_concurrency = BENCH_PER_DOMAIN (5), so it opens up to
# min(50, 5 x domains) connections to the sink. Postfix queues everything for
# ONE destination (the relayhost), so its default_destination_concurrency_limit
# is set to the same total, min(CONCURRENCY, PER_DOMAIN x domains): both
# sides may hold the same number of connections to the sink. (Postfix still
# starts at initial_destination_concurrency = 5 and ramps up, its default.)
# Both reuse connections (minimta's session pool, Postfix's scache).
#
# Requirements: as bench/submission.sh (root, postfix with smtp-source and
# smtp-sink, Deno) plus /usr/bin/python3 with dnspython (tests/fakes/fake_dns.py).
#
# Knobs (environment):
#   BENCH_MESSAGES=5000 BENCH_WARMUP=500 BENCH_REPEATS=3 BENCH_SESSIONS=20
#   BENCH_SIZE=4096 BENCH_DOMAINS="1 5" BENCH_CONCURRENCY=50 BENCH_PER_DOMAIN=5
#   BENCH_SERVERS="postfix minimta-relay minimta-dns" BENCH_TMPDIR=DIR
#   BENCH_PORT_BASE=42600            ports BASE+1.. on 127.0.0.1/127.0.0.2 are used
#   BENCH_TIMEOUT=300                seconds to wait for one run's deliveries
#   BENCH_MINIMTA_FLAGS=""           extra `deno run` flags
#   BENCH_WORKERS=auto               minimta's server.workers (the default auto: one per CPU with DKIM on, else 1)
#   BENCH_MINIMTA_ENTRY=main.ts      minimta entry point relative to the project root
#   BENCH_KEEP=1                     keep the temp dir (logs, spools)
#   BENCH_PROFILE=1                  sample minimta's main thread with the V8 CPU
#                                    profiler (bench/lib/cpu_profile.ts) for
#                                    BENCH_PROFILE_SECONDS (5) during run 1 of each
#                                    minimta server; writes bench/out/profile-
#                                    delivery-<server>-<domains>d-<date>.{txt,cpuprofile}.
#                                    Profiled figures are not comparable to unprofiled ones.
#   BENCH_REPORT_SUFFIX=""           appended to the report name (delivery-<date><suffix>.txt)
#   BENCH_DKIM=1                     "DKIM on": both sign every message with the same RSA 2048
#                                    key (d=ours.test, s=bench, relaxed/relaxed): minimta with
#                                    its `dkim` key; Postfix through OpenDKIM as an smtpd milter
#                                    (Debian opendkim: apt-get install -y opendkim;
#                                    OpenDKIM's CPU counts for Postfix). Report suffix "-dkim".
#                                    The sink then dumps every message (smtp-sink -d, into a
#                                    tmpfs dir: /dev/shm); after each server's runs,
#                                    bench/lib/dkim_check.py checks that every message it sent
#                                    carries a DKIM-Signature d=ours.test s=bench and that
#                                    BENCH_DKIM_SAMPLE (20) of them, at random, verify with
#                                    tests/fakes/dkim_verify.py (python3-dkim) against the key;
#                                    the run fails if not (result in the report's notes).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
N=${BENCH_MESSAGES:-5000}
WARMUP=${BENCH_WARMUP:-500}
REPS=${BENCH_REPEATS:-3}
SESSIONS=${BENCH_SESSIONS:-20}
SIZE=${BENCH_SIZE:-4096}
DOMAIN_SET=${BENCH_DOMAINS:-"1 5"}
CONC=${BENCH_CONCURRENCY:-50}
PER_DOMAIN=${BENCH_PER_DOMAIN:-5}
SERVERS=${BENCH_SERVERS:-"postfix minimta-relay minimta-dns"}
PORT_BASE=${BENCH_PORT_BASE:-42600}
TIMEOUT=${BENCH_TIMEOUT:-300}
MINIMTA_FLAGS=${BENCH_MINIMTA_FLAGS:-}
MINIMTA_ENTRY=${BENCH_MINIMTA_ENTRY:-main.ts}
PROFILE=${BENCH_PROFILE:-}
PROFILE_SECONDS=${BENCH_PROFILE_SECONDS:-5}
INSPECT=127.0.0.1:$((PORT_BASE + 29))
[ -n "$PROFILE" ] && MINIMTA_FLAGS="$MINIMTA_FLAGS --inspect=$INSPECT"
SINK_IP=127.0.0.2
SINK_PORT=$((PORT_BASE + 25))
DNS_PORT=$((PORT_BASE + 53))
OUT_DIR=$ROOT/bench/out
STAMP=$(date +%Y-%m-%d)
DKIM=${BENCH_DKIM:-}
DKIM_PORT=$((PORT_BASE + 26))
DKIM_SAMPLE=${BENCH_DKIM_SAMPLE:-20}
REPORT=$OUT_DIR/delivery-$STAMP${DKIM:+-dkim}${BENCH_REPORT_SUFFIX:-}.txt
CLK_TCK=$(getconf CLK_TCK)
PY=/usr/bin/python3

die() { echo "bench: $*" >&2; exit 1; }
# shellcheck source=bench/lib/postfix.sh
. "$ROOT/bench/lib/postfix.sh"
# shellcheck source=bench/lib/minimta.sh
. "$ROOT/bench/lib/minimta.sh"
say() { echo "bench: $*" >&2; }

# ---- preflight ---------------------------------------------------------------
for tool in deno postfix postconf postqueue smtp-source smtp-sink openssl awk getconf; do
  command -v "$tool" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin:/sbin
  command -v "$tool" >/dev/null 2>&1 ||
    die "'$tool' not found. Install: apt-get install -y postfix openssl procps (and Deno 2.x; bench/packages.txt lists every bench package)"
done
[ "$(id -u)" = 0 ] || die "must run as root (a private Postfix instance needs it)"
for s in $SERVERS; do
  case $s in postfix | minimta-relay | minimta-dns) ;; *) die "unknown server '$s'" ;; esac
done
case " $SERVERS " in
  *" minimta-dns "*) $PY -c 'import dns.message' 2>/dev/null ||
    die "$PY lacks dnspython (needed by tests/fakes/fake_dns.py): apt-get install -y python3-dnspython" ;;
esac
for d in $DOMAIN_SET; do [ "$d" -ge 1 ] 2>/dev/null || die "bad BENCH_DOMAINS entry '$d'"; done
if [ -n "$DKIM" ]; then
  $PY "$ROOT/tests/fakes/dkim_verify.py" --check 2>/dev/null ||
    die "BENCH_DKIM=1 checks the signatures with python3-dkim: apt-get install -y python3-dkim python3-nacl"
fi

# shellcheck source=bench/lib/workdir.sh
. "$ROOT/bench/lib/workdir.sh"
WORK=$(bench_workdir delivery)
chmod 755 "$WORK"
MINIMTA_PID=""
SINK_PID=""
DNS_PID=""
PF_DIRS=()
DUMP=""

cleanup() {
  local rc=$?
  set +e
  if [ -n "$MINIMTA_PID" ] && kill -0 "$MINIMTA_PID" 2>/dev/null; then
    kill -TERM "$MINIMTA_PID"; wait "$MINIMTA_PID" 2>/dev/null
  fi
  for d in "${PF_DIRS[@]}"; do
    postfix -c "$d/etc" stop >/dev/null 2>&1 || postfix -c "$d/etc" abort >/dev/null 2>&1
  done
  [ -n "$SINK_PID" ] && kill "$SINK_PID" 2>/dev/null && wait "$SINK_PID" 2>/dev/null
  [ -n "$DNS_PID" ] && kill "$DNS_PID" 2>/dev/null && wait "$DNS_PID" 2>/dev/null
  [ -n "${DKIM_PID:-}" ] && kill "$DKIM_PID" 2>/dev/null && wait "$DKIM_PID" 2>/dev/null
  [ -n "$DUMP" ] && rm -rf "$DUMP"
  if [ "${BENCH_KEEP:-}" = 1 ]; then say "kept $WORK"; else rm -rf "$WORK"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "work dir $WORK; caching minimta's dependencies"
(cd "$ROOT" && deno cache main.ts bench/lib/make_users.ts bench/lib/delivery_report.ts) \
  >/dev/null 2>&1 || die "deno cache failed (are minimta's npm dependencies reachable?)"

# minimta needs a certificate for its (unused here) STARTTLS.
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=localhost" \
  -keyout "$WORK/server.key" -out "$WORK/server.crt" >/dev/null 2>&1

# ---- DKIM on: one key for both; OpenDKIM for Postfix ------------------------------
DKIM_PID=""
if [ -n "$DKIM" ]; then
  command -v opendkim >/dev/null 2>&1 || die "BENCH_DKIM=1 needs opendkim: apt-get install -y opendkim"
  openssl genrsa -out "$WORK/dkim.key" 2048 >/dev/null 2>&1
  chmod 600 "$WORK/dkim.key"
  cat >"$WORK/opendkim.conf" <<DKIMCONF
Syslog no
Background no
Mode s
Domain ours.test
Selector bench
KeyFile $WORK/dkim.key
Socket inet:$DKIM_PORT@127.0.0.1
InternalHosts 127.0.0.0/8
Canonicalization relaxed/relaxed
SignatureAlgorithm rsa-sha256
PidFile $WORK/opendkim.pid
# The work dir is under /var/tmp (world-writable), which OpenDKIM refuses by default.
RequireSafeKeys false
DKIMCONF
  opendkim -f -x "$WORK/opendkim.conf" >"$WORK/opendkim.log" 2>&1 &
  DKIM_PID=$!
  for _ in $(seq 1 50); do (exec 3<>"/dev/tcp/127.0.0.1/$DKIM_PORT") 2>/dev/null && break; sleep 0.1; done
  kill -0 "$DKIM_PID" 2>/dev/null || { cat "$WORK/opendkim.log" >&2; die "opendkim did not start"; }
  # The public half, as the TXT record bench._domainkey.ours.test would publish it.
  DKIM_PUB=$(openssl rsa -in "$WORK/dkim.key" -pubout -outform DER 2>/dev/null | base64 -w0)
  # Every message the sink gets is dumped here (tmpfs: no disk writes beside the servers' fsyncs).
  if [ -d /dev/shm ] && [ -w /dev/shm ]; then
    DUMP=$(mktemp -d /dev/shm/minimta-dkim-dump.XXXXXX)
  else
    DUMP=$WORK/dump; mkdir -p "$DUMP"
  fi
  chown nobody "$DUMP"
fi

# ---- CPU accounting: ticks_of, tree_ticks, now (bench/lib/cpu.sh) ----------
# shellcheck source=bench/lib/cpu.sh
. "$ROOT/bench/lib/cpu.sh"

# server_ticks SERVER PID: the server's CPU ticks so far; Postfix's include OpenDKIM's.
server_ticks() {
  local t
  t=$(tree_ticks "$2")
  [ "$1" = postfix ] && [ -n "$DKIM_PID" ] && t=$((t + $(ticks_of "$DKIM_PID")))
  echo "$t"
}

# ---- the sink and the fake DNS (shared by every server in the run) -------------
SINK_OUT=$WORK/sink.out
SINK_DUMP=()
[ -n "$DKIM" ] && SINK_DUMP=(-d "$DUMP/%H%M%S.")
smtp-sink -c -u nobody "${SINK_DUMP[@]}" "$SINK_IP:$SINK_PORT" 1000 >"$SINK_OUT" 2>"$WORK/sink.err" &
SINK_PID=$!
for _ in $(seq 1 50); do (exec 3<>"/dev/tcp/$SINK_IP/$SINK_PORT") 2>/dev/null && break; sleep 0.1; done
kill -0 "$SINK_PID" 2>/dev/null || { cat "$WORK/sink.err" >&2; die "smtp-sink did not start"; }
sink_count() { $PY "$ROOT/bench/lib/sink_count.py" "$SINK_OUT"; }
# Connections the sink has accepted so far (sess=N in the same counter line).
sink_sessions() { tail -c 200 "$SINK_OUT" | tr '\r' '\n' | grep -o 'sess=[0-9]*' | tail -1 | cut -d= -f2 || echo 0; }

MAX_DOMAINS=1
for d in $DOMAIN_SET; do [ "$d" -gt "$MAX_DOMAINS" ] && MAX_DOMAINS=$d; done
{
  echo '{'
  echo "  \"mx.sink.test\": {\"A\": [\"$SINK_IP\"]},"
  for i in $(seq 1 "$MAX_DOMAINS"); do
    sep=,; [ "$i" = "$MAX_DOMAINS" ] && sep=
    echo "  \"d$i.test\": {\"MX\": [[10, \"mx.sink.test\"]]}$sep"
  done
  echo '}'
} >"$WORK/zone.json"
case " $SERVERS " in
  *" minimta-dns "*)
    $PY "$ROOT/tests/fakes/fake_dns.py" --listen 127.0.0.1 --port "$DNS_PORT" \
      --zone "$WORK/zone.json" >"$WORK/dns.out" 2>"$WORK/dns.err" &
    DNS_PID=$!
    for _ in $(seq 1 100); do grep -q READY "$WORK/dns.out" 2>/dev/null && break; sleep 0.1; done
    grep -q READY "$WORK/dns.out" || { cat "$WORK/dns.err" >&2; die "fake DNS did not start"; }
    ;;
esac

# ---- minimta -----------------------------------------------------------------
start_minimta() { # dir route port domains
  local dir=$1 route=$2 port=$3 domains=$4 per
  mkdir -p "$dir"
  (cd "$ROOT" && deno run -A bench/lib/make_users.ts "$dir/users.json" user secret \
    user@ours.test plain)
  local delivery
  if [ "$route" = relay ]; then
    delivery="relay_host: \"$SINK_IP:$SINK_PORT\""
  else
    delivery="port: $SINK_PORT
  dns_servers: [\"127.0.0.1:$DNS_PORT\"]"
  fi
  cat >"$dir/config.yaml" <<EOF
server:
  hostname: bench.ours.test
  listen_addr: "127.0.0.1:$port"
  listen_tls_addr: ""
  local_socket: "" # never the host's /run/minimta
  trusted_networks: ["127.0.0.1/32"]
  workers: ${BENCH_WORKERS:-auto}
tls:
  cert_file: $WORK/server.crt
  key_file: $WORK/server.key
auth:
  users_file: $dir/users.json
queue:
  dir: $dir/spool
  fsync: true
delivery:
  $delivery
  allow_loopback: true
  concurrency: $CONC
  per_domain_concurrency: $PER_DOMAIN
log:
  level: info
  format: json
EOF
  if [ -n "$DKIM" ]; then
    printf 'dkim:\n  - domain: ours.test\n    selector: bench\n    private_key_file: %s\n' \
      "$WORK/dkim.key" >>"$dir/config.yaml"
  fi
  mta_launch "$dir"
}


# ---- Postfix -----------------------------------------------------------------
start_postfix() { # dir port domains
  local dir=$1 port=$2 domains=$3 etc=$1/etc
  pf_prepare "$dir" "$port"
  local limit=$((PER_DOMAIN * domains))
  [ "$limit" -gt "$CONC" ] && limit=$CONC
  local -a conf
  mapfile -t conf < <(pf_base_conf "$dir")
  postconf -c "$etc" -e "${conf[@]}" \
    "relayhost = [$SINK_IP]:$SINK_PORT" \
    "mynetworks = 127.0.0.0/8" \
    "smtpd_relay_restrictions = permit_mynetworks reject_unauth_destination" \
    "smtp_tls_security_level = may" \
    "default_destination_concurrency_limit = $limit" \
    "default_process_limit = $((CONC + SESSIONS + 50))"
  if [ -n "$DKIM" ]; then
    postconf -c "$etc" -e "smtpd_milters = inet:127.0.0.1:$DKIM_PORT" \
      "milter_default_action = tempfail"
  fi
  pf_start "$dir" "$port"
}

stop_postfix() { pf_stop "$1"; } # dir

queued_postfix() {
  find "$1/queue/maildrop" "$1/queue/incoming" "$1/queue/active" "$1/queue/deferred" \
    "$1/queue/hold" -type f 2>/dev/null | wc -l
}

# ---- load --------------------------------------------------------------------
# Submits COUNT messages over SESSIONS sessions, spread over DOMAINS recipient
# domains (one smtp-source per domain); fails on any client error.
drive() { # port count domains
  local port=$1 count=$2 domains=$3 i per sess rc=0 pids=()
  for i in $(seq 1 "$domains"); do
    per=$((count / domains)); [ "$i" -le $((count % domains)) ] && per=$((per + 1))
    sess=$((SESSIONS / domains)); [ "$i" -le $((SESSIONS % domains)) ] && sess=$((sess + 1))
    [ "$sess" -ge 1 ] || sess=1
    [ "$per" -ge 1 ] || continue
    smtp-source -s "$sess" -m "$per" -l "$SIZE" -f from@ours.test -t "to$i@d$i.test" \
      "127.0.0.1:$port" >"$WORK/client-$i.log" 2>&1 &
    pids+=($!)
  done
  for i in "${pids[@]}"; do wait "$i" || rc=1; done
  [ "$rc" = 0 ] || { cat "$WORK"/client-*.log >&2; return 1; }
}

# Waits (outside the timed interval) until the queue is empty.
drain() { # server dir
  local fn=queued_${1%%-*} i
  for i in $(seq 1 600); do
    [ "$($fn "$2")" = 0 ] && return 0
    sleep 0.1
  done
  return 1
}

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
awk '$1 > 1.0 { exit 1 }' /proc/loadavg ||
  say "warning: load average $LOAD_START before the benchmark; results will be noisy"
RESULTS=$WORK/results.tsv
NOTES=$WORK/notes.txt
: >"$RESULTS"; : >"$NOTES"
EXPECTED=0 # messages the sink must have received so far

# One (domains, server) pair: fresh server + spool, warm-up, REPS timed runs.
measure() { # domains server
  local domains=$1 server=$2 dir=$WORK/$2-$1d port pid rep
  if [ "$server" = postfix ]; then
    port=$((PORT_BASE + 2)); start_postfix "$dir" "$port" "$domains"; pid=$PF_MASTER
  else
    port=$((PORT_BASE + 1)); start_minimta "$dir" "${server#minimta-}" "$port" "$domains"
    pid=$MINIMTA_PID
  fi
  local sess0 msg0
  sess0=$(sink_sessions); msg0=$(sink_count)
  say "$domains domain(s)/$server: warm-up $WARMUP messages"
  drive "$port" "$WARMUP" "$domains" || die "$server: warm-up submission failed"
  EXPECTED=$((EXPECTED + WARMUP))
  $PY "$ROOT/bench/lib/sink_count.py" "$SINK_OUT" "$EXPECTED" "$TIMEOUT" >/dev/null ||
    die "$server: warm-up: the sink got $(sink_count) of $EXPECTED messages; see $dir"
  drain "$server" "$dir" || die "$server: queue not empty after the warm-up"
  for rep in $(seq 1 "$REPS"); do
    local c0 c1 t0 tsub t1 load got waiter prof_pid=""
    [ "$(sink_count)" = "$EXPECTED" ] || die "sink count $(sink_count), expected $EXPECTED"
    EXPECTED=$((EXPECTED + N))
    if [ -n "$PROFILE" ] && [ "$server" != postfix ] && [ "$rep" = 1 ]; then
      mkdir -p "$OUT_DIR"
      local pbase=$OUT_DIR/profile-delivery-$server-${domains}d-$STAMP
      (cd "$ROOT" && deno run -A bench/lib/cpu_profile.ts --inspect "$INSPECT" \
        --seconds "$PROFILE_SECONDS" --out "$pbase.cpuprofile" >"$pbase.txt" 2>&1) &
      prof_pid=$!
      sleep 0.5
    fi
    $PY "$ROOT/bench/lib/sink_count.py" "$SINK_OUT" "$EXPECTED" "$TIMEOUT" >"$WORK/wait.out" &
    waiter=$!
    load=$(cut -d' ' -f1 /proc/loadavg)
    c0=$(server_ticks "$server" "$pid"); t0=$(now)
    drive "$port" "$N" "$domains" || die "$server: run $rep: submission failed"
    tsub=$(now)
    wait "$waiter" || die "$server: run $rep: the sink got $(sink_count) of $EXPECTED messages in ${TIMEOUT}s; see $dir"
    c1=$(server_ticks "$server" "$pid")
    t1=$(cut -d' ' -f1 "$WORK/wait.out")
    if [ -n "$prof_pid" ]; then
      wait "$prof_pid" || say "profiler failed; see $pbase.txt"
      say "profile: $pbase.txt"
    fi
    got=$(cut -d' ' -f2 "$WORK/wait.out")
    [ "$got" = "$EXPECTED" ] || die "$server: run $rep: the sink counted $got, expected $EXPECTED (extra deliveries?)"
    drain "$server" "$dir" || die "$server: run $rep: queue not empty 60 s after the last delivery"
    local line
    line=$(awk -v d="$domains" -v s="$server" -v r="$rep" -v n="$N" -v t0="$t0" -v ts="$tsub" \
      -v t1="$t1" -v c="$((c1 - c0))" -v hz="$CLK_TCK" -v load="$load" \
      'BEGIN { printf "%s\t%s\t%d\t%d\t%.3f\t%.1f\t%.3f\t%s\t%.1f\n", d, s, r, n, t1 - t0, n / (t1 - t0), c * 1000 / hz / n, load, n / (ts - t0) }')
    echo "$line" >>"$RESULTS"
    say "$domains domain(s)/$server run $rep: $(echo "$line" | awk -F'\t' '{ printf "%s msg in %s s = %s msg/s end to end (submission phase %s msg/s), %s CPU ms/msg", $4, $5, $6, $9, $7 }')"
  done
  local sess1 msg1
  sess1=$(sink_sessions); msg1=$(sink_count)
  # DKIM on: did this server sign everything it sent? (its messages are the dump's; the
  # queue is empty, so the sink has closed every file)
  if [ -n "$DKIM" ]; then
    local verdict
    verdict=$($PY "$ROOT/bench/lib/dkim_check.py" "$DUMP" "$((msg1 - msg0))" "$DKIM_SAMPLE" \
      ours.test bench "$DKIM_PUB" "$ROOT/tests/fakes/dkim_verify.py" "$WORK/dkim-$server-${domains}d") ||
      die "$server: DKIM check failed ($verdict); sampled messages in $WORK/dkim-$server-${domains}d (BENCH_KEEP=1 keeps them)"
    say "$domains domain(s)/$server: DKIM: $verdict"
    echo "$domains domain(s)/$server: DKIM: $verdict" >>"$NOTES"
    find "$DUMP" -type f -delete
  fi
  echo "$domains domain(s)/$server: $((msg1 - msg0)) messages over $((sess1 - sess0)) connections to the sink" \
    "($(awk -v m="$((msg1 - msg0))" -v s="$((sess1 - sess0))" 'BEGIN { printf "%.1f", s ? m / s : 0 }') per connection)" >>"$NOTES"
  # Queue empty, the way an operator would check it.
  if [ "$server" = postfix ]; then
    echo "$domains domain(s)/postfix: postqueue -p: $(postqueue -c "$dir/etc" -p 2>&1 | tr '\n' ' ');" \
      "maillog: $(grep -c 'status=sent' "$dir/maillog" || true) sent," \
      "$(grep -c 'status=deferred' "$dir/maillog" || true) deferred" >>"$NOTES"
    stop_postfix "$dir"
  else
    local hwm
    hwm=$(awk '/^VmHWM/ { print $2 }' "/proc/$pid/status")
    printf '%s\t%s\tpeak_rss_kb\t%s\n' "$domains" "$server" "$hwm" >>"$RESULTS"
    echo "$domains domain(s)/$server: queue stats: $(cd "$ROOT" && deno run -A main.ts queue stats \
      --json --config "$dir/config.yaml" 2>&1 | tr -d ' \n');" \
      "log: $(grep -c '"outcome":"delivered"' "$dir/minimta.log" || true) delivered," \
      "$(grep -c '"outcome":"transient"' "$dir/minimta.log" || true) deferred" >>"$NOTES"
    stop_minimta
  fi
}

for domains in $DOMAIN_SET; do
  for server in $SERVERS; do measure "$domains" "$server"; done
done

mkdir -p "$OUT_DIR"
limits=""
for d in $DOMAIN_SET; do
  l=$((PER_DOMAIN * d)); [ "$l" -gt "$CONC" ] && l=$CONC
  limits="$limits ${d} domain(s): $l;"
done
{
  echo "minimta delivery benchmark (end to end), $(date -u '+%Y-%m-%d %H:%M UTC') on $(hostname)"
  echo "$(nproc) CPUs ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)), $(uname -r)," \
    "$(deno --version | head -1), Postfix $(postconf -d -h mail_version)"
  echo "load average at start: $LOAD_START, at end: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "  (1-min loadavg before each run is in the raw runs; well above 1 = shared machine, noisy)"
  echo "spool filesystem: $(df -T "$WORK" | awk 'NR == 2 { print $2 " on " $1 }')"
  echo "$N messages x $REPS runs (median shown) after $WARMUP warm-up; $SIZE-byte bodies; one"
  echo "  recipient each, spread over N domains; smtp-source, $SESSIONS sessions in all (new"
  echo "  connection per message), trusted loopback; fsync on in both"
  echo "delivery to one smtp-sink at $SINK_IP:$SINK_PORT, plaintext (sink has no STARTTLS);"
  echo "  minimta delivery.concurrency $CONC, per_domain_concurrency $PER_DOMAIN;"
  echo "  Postfix relayhost [$SINK_IP]:$SINK_PORT, default_destination_concurrency_limit =" \
    "the same total:$limits"
  echo "  minimta-dns: MX lookups at tests/fakes/fake_dns.py; minimta-relay: delivery.relay_host"
  echo "msg/s: N / (first submission -> sink counted the Nth message); sub msg/s: submission"
  echo "  phase only (N / time until the last smtp-source exited)"
  echo "CPU: utime+stime per message over that interval (minimta: the deno process; Postfix:"
  echo "     master and every child). Not counted: smtp-source, smtp-sink, fake DNS."
  echo
  deno run "$ROOT/bench/lib/delivery_report.ts" <"$RESULTS"
  echo
  echo "connections to the sink, and queues at the end of each server's runs:"
  cat "$NOTES"
  echo
  echo "raw runs (domains, server, run, messages, seconds, msg/s, CPU ms/msg, loadavg before, sub msg/s):"
  grep -v peak_rss "$RESULTS"
} >"$REPORT"
cat "$REPORT"
say "written to $REPORT"
