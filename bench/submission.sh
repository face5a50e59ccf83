#!/usr/bin/env bash
# bench/submission.sh — submission throughput of minimta against Postfix's
# smtpd, on this machine, in the same run.
#
#   deno task bench                      # = bash bench/run.sh = this script
#   BENCH_MESSAGES=2000 BENCH_REPEATS=1 bash bench/submission.sh   # quick run
#
# Two modes, each against both servers, 4 KB messages, 20 concurrent sessions,
# fsync on in both (minimta `queue.fsync: true`; Postfix always fsyncs):
#   plain  trusted loopback client, no TLS/AUTH; driven by Postfix's
#          `smtp-source -s 20 -m N -l 4096` (one connection per message, HELO,
#          MAIL, RCPT, DATA, QUIT — smtp-source's default).
#   auth   STARTTLS + AUTH PLAIN; driven by bench/lib/auth_load.ts (Deno):
#          20 sessions, each EHLO, STARTTLS, EHLO, AUTH PLAIN, then MAIL/RCPT/
#          DATA one message at a time, reconnecting every BENCH_PER_CONN (100)
#          messages. The same client drives both servers.
# Each (mode, server) pair: fresh server + spool, BENCH_WARMUP messages, then
# BENCH_REPEATS runs of BENCH_MESSAGES messages; the table shows medians.
#
# Requirements (Debian/Ubuntu, run as root so a private Postfix can start):
#   apt-get install -y postfix sasl2-bin libsasl2-modules openssl procps
#   (postfix provides postfix, postconf, smtp-source; sasl2-bin saslpasswd2)
#   plus Deno 2.x on PATH with minimta's npm dependencies reachable/cached.
# The distribution's own Postfix instance is left alone: the benchmark runs a
# private instance (`postfix -c DIR`) on a high loopback port.
#
# Knobs (environment):
#   BENCH_MESSAGES=5000 BENCH_WARMUP=500 BENCH_REPEATS=3 BENCH_SESSIONS=20
#   BENCH_SIZE=4096 BENCH_PER_CONN=100 BENCH_MODES="plain auth"
#   BENCH_SERVERS="minimta postfix" BENCH_TMPDIR=DIR
#   BENCH_POSTFIX_QUEUE=hold|defer   what Postfix does with accepted mail (see below)
#   BENCH_PASSWORD=scrypt|plain      how minimta's users.json stores the password
#   BENCH_PORT_BASE=42500            ports BASE+1.. are used
#   BENCH_MINIMTA_FLAGS=""           extra `deno run` flags (e.g. --cpu-prof)
#   BENCH_WORKERS=auto               minimta's server.workers (auto, the default: no DKIM here, so 1 = no worker thread; 0 = one per CPU)
#   BENCH_MINIMTA_ENTRY=main.ts      minimta entry point, relative to the project
#                                    root (experiments: bench/lib/experiments/)
#   BENCH_KEEP=1                     keep the temp dir (logs, spools) for inspection
#   BENCH_PROFILE=1                  run minimta with --inspect and sample its main
#                                    thread with the V8 CPU profiler during run 1
#                                    (bench/lib/cpu_profile.ts); writes
#                                    bench/out/profile-<mode>-<date>.{txt,cpuprofile}.
#                                    The profiler costs some throughput: do not
#                                    compare profiled figures with unprofiled ones.
#
# Postfix must not deliver anywhere. BENCH_POSTFIX_QUEUE=hold (default) adds
# `smtpd_data_restrictions = check_client_access static:HOLD`: smtpd receives
# the message, cleanup writes and fsyncs the queue file (into hold/ instead of
# incoming/) and smtpd replies 250 — and qmgr never picks it up. That is exactly
# the work of minimta's intake (receive, write + fsync the spool files, reply).
# `defer` instead lets qmgr schedule every message and defer it
# (`defer_transports = smtp`): extra qmgr/bounce work comparable to what
# minimta's delivery engine will do once it runs in the same process (it will
# try each new message and fail at once on `delivery.dns_servers:
# ["127.0.0.1:9"]`, so nothing leaves the machine either way).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
N=${BENCH_MESSAGES:-5000}
WARMUP=${BENCH_WARMUP:-500}
REPS=${BENCH_REPEATS:-3}
SESSIONS=${BENCH_SESSIONS:-20}
SIZE=${BENCH_SIZE:-4096}
PER_CONN=${BENCH_PER_CONN:-100}
MODES=${BENCH_MODES:-"plain auth"}
SERVERS=${BENCH_SERVERS:-"minimta postfix"}
PF_QUEUE=${BENCH_POSTFIX_QUEUE:-hold}
PW_KIND=${BENCH_PASSWORD:-scrypt}
PORT_BASE=${BENCH_PORT_BASE:-42500}
MINIMTA_FLAGS=${BENCH_MINIMTA_FLAGS:-}
MINIMTA_ENTRY=${BENCH_MINIMTA_ENTRY:-main.ts}
PROFILE=${BENCH_PROFILE:-}
PROFILE_SECONDS=${BENCH_PROFILE_SECONDS:-5}
INSPECT=127.0.0.1:$((${BENCH_PORT_BASE:-42500} + 29))
[ -n "$PROFILE" ] && MINIMTA_FLAGS="$MINIMTA_FLAGS --inspect=$INSPECT"
OUT_DIR=$ROOT/bench/out
STAMP=$(date +%Y-%m-%d)
REPORT=$OUT_DIR/submission-$STAMP${BENCH_REPORT_SUFFIX:-}.txt
CLK_TCK=$(getconf CLK_TCK)

die() { echo "bench: $*" >&2; exit 1; }
# shellcheck source=bench/lib/postfix.sh
. "$ROOT/bench/lib/postfix.sh"
# shellcheck source=bench/lib/minimta.sh
. "$ROOT/bench/lib/minimta.sh"
say() { echo "bench: $*" >&2; }

# ---- preflight ---------------------------------------------------------------
for tool in deno postfix postconf smtp-source saslpasswd2 openssl awk getconf; do
  command -v "$tool" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin:/sbin
  command -v "$tool" >/dev/null 2>&1 ||
    die "'$tool' not found. Install: apt-get install -y postfix sasl2-bin libsasl2-modules openssl procps (and Deno 2.x; bench/packages.txt lists every bench package)"
done
[ "$(id -u)" = 0 ] || die "must run as root (a private Postfix instance needs it)"
ls /usr/lib/*/sasl2/libsasldb.so* >/dev/null 2>&1 ||
  die "Cyrus sasldb plugin missing: apt-get install -y libsasl2-modules-db libsasl2-modules"
for m in $MODES; do case $m in plain|auth) ;; *) die "unknown mode '$m'";; esac; done
for s in $SERVERS; do case $s in minimta|postfix) ;; *) die "unknown server '$s'";; esac; done
case $PF_QUEUE in hold|defer) ;; *) die "BENCH_POSTFIX_QUEUE must be hold or defer";; esac

# shellcheck source=bench/lib/workdir.sh
. "$ROOT/bench/lib/workdir.sh"
WORK=$(bench_workdir bench)
chmod 755 "$WORK"   # Postfix daemons (user postfix) read the sasldb under it
MINIMTA_PID=""
PF_DIRS=()

cleanup() {
  local rc=$?
  set +e
  if [ -n "$MINIMTA_PID" ] && kill -0 "$MINIMTA_PID" 2>/dev/null; then
    kill -TERM "$MINIMTA_PID"; wait "$MINIMTA_PID" 2>/dev/null
  fi
  for d in "${PF_DIRS[@]}"; do
    postfix -c "$d/etc" stop >/dev/null 2>&1 || postfix -c "$d/etc" abort >/dev/null 2>&1
  done
  if [ "${BENCH_KEEP:-}" = 1 ]; then say "kept $WORK"; else rm -rf "$WORK"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "work dir $WORK; caching minimta's dependencies"
(cd "$ROOT" && deno cache main.ts bench/lib/auth_load.ts bench/lib/make_users.ts) >/dev/null 2>&1 ||
  die "deno cache failed (are minimta's npm dependencies reachable?)"

# ---- shared material: a CA and a server certificate (RSA 2048) ----------------
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=minimta bench CA" \
  -keyout "$WORK/ca.key" -out "$WORK/ca.crt" >/dev/null 2>&1
openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
  -keyout "$WORK/server.key" -out "$WORK/server.csr" >/dev/null 2>&1
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' >"$WORK/ext.cnf"
openssl x509 -req -in "$WORK/server.csr" -CA "$WORK/ca.crt" -CAkey "$WORK/ca.key" \
  -CAcreateserial -days 2 -extfile "$WORK/ext.cnf" -out "$WORK/server.crt" >/dev/null 2>&1
chmod 644 "$WORK/server.crt" "$WORK/ca.crt"

# ---- CPU accounting: ticks_of, tree_ticks, now (bench/lib/cpu.sh) ----------
# shellcheck source=bench/lib/cpu.sh
. "$ROOT/bench/lib/cpu.sh"
queued_postfix() {
  find "$1/queue/incoming" "$1/queue/active" "$1/queue/deferred" "$1/queue/hold" \
    -type f 2>/dev/null | wc -l
}

# ---- minimta -----------------------------------------------------------------
start_minimta() { # dir mode port
  local dir=$1 mode=$2 port=$3 trusted='[]'
  mkdir -p "$dir"
  [ "$mode" = plain ] && trusted='["127.0.0.1/32"]'
  (cd "$ROOT" && deno run -A bench/lib/make_users.ts "$dir/users.json" user secret \
    user@ours.test "$PW_KIND")
  cat >"$dir/config.yaml" <<EOF
server:
  hostname: bench.ours.test
  listen_addr: "127.0.0.1:$port"
  listen_tls_addr: ""
  local_socket: "" # never the host's /run/minimta
  trusted_networks: $trusted
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
  dns_servers: ["127.0.0.1:9"]
log:
  level: info
  format: json
EOF
  mta_launch "$dir"
}

# ---- Postfix -----------------------------------------------------------------
start_postfix() { # dir mode port
  local dir=$1 mode=$2 port=$3 etc=$1/etc
  pf_prepare "$dir" "$port"
  local nets=127.0.0.0/8
  [ "$mode" = auth ] && nets=192.0.2.1/32 # loopback is not trusted: AUTH is required
  local -a conf
  mapfile -t conf < <(pf_base_conf "$dir")
  conf+=(
    "relayhost ="
    "mynetworks = $nets"
    "smtpd_relay_restrictions = permit_mynetworks permit_sasl_authenticated reject_unauth_destination"
  )
  if [ "$PF_QUEUE" = hold ]; then
    conf+=("smtpd_data_restrictions = check_client_access static:HOLD")
  else
    conf+=("defer_transports = smtp")
  fi
  if [ "$mode" = auth ]; then
    conf+=(
      "smtpd_tls_cert_file = $WORK/server.crt"
      "smtpd_tls_key_file = $WORK/server.key"
      "smtpd_tls_security_level = may"
      "smtpd_tls_auth_only = yes"
      "smtpd_sasl_auth_enable = yes"
      "smtpd_sasl_type = cyrus"
      "smtpd_sasl_path = smtpd"
      "cyrus_sasl_config_path = $etc/sasl"
      "smtpd_sasl_local_domain = ours.test"
      "smtpd_sasl_security_options = noanonymous"
    )
    mkdir -p "$etc/sasl"
    cat >"$etc/sasl/smtpd.conf" <<EOF
pwcheck_method: auxprop
auxprop_plugin: sasldb
mech_list: PLAIN LOGIN
sasldb_path: $dir/sasldb2
EOF
    echo -n secret | saslpasswd2 -p -c -f "$dir/sasldb2" -u ours.test user
    # smtpd runs as user postfix (and, here, not chrooted): it must read the db.
    chown root:postfix "$dir/sasldb2"; chmod 640 "$dir/sasldb2"
  fi
  postconf -c "$etc" -e "${conf[@]}"
  pf_start "$dir" "$port"
}

stop_postfix() { pf_stop "$1"; } # dir

# ---- load --------------------------------------------------------------------
drive() { # mode port count -> runs the load client, fails on any error
  local mode=$1 port=$2 count=$3
  if [ "$mode" = plain ]; then
    smtp-source -s "$SESSIONS" -m "$count" -l "$SIZE" -f from@ours.test -t to@example.test \
      "127.0.0.1:$port" >"$WORK/client.log" 2>&1 || { cat "$WORK/client.log" >&2; return 1; }
  else
    (cd "$ROOT" && deno run -A bench/lib/auth_load.ts --port "$port" --ca "$WORK/ca.crt" \
      --sessions "$SESSIONS" --messages "$count" --size "$SIZE" --per-conn "$PER_CONN" \
      --user user --pass secret --from user@ours.test --to to@example.test) \
      >"$WORK/client.log" 2>&1 || { cat "$WORK/client.log" >&2; return 1; }
  fi
}

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
awk '$1 > 1.0 { exit 1 }' /proc/loadavg ||
  say "warning: load average $LOAD_START before the benchmark; results will be noisy"
RESULTS=$WORK/results.tsv
NOTES=$WORK/notes.txt
: >"$RESULTS"; : >"$NOTES"

measure() { # mode server
  local mode=$1 server=$2 dir=$WORK/$2-$1 port pid rep
  if [ "$server" = minimta ]; then
    port=$((PORT_BASE + 1)); start_minimta "$dir" "$mode" "$port"; pid=$MINIMTA_PID
  else
    port=$((PORT_BASE + 2)); start_postfix "$dir" "$mode" "$port"; pid=$PF_MASTER
  fi
  say "$mode/$server: warm-up $WARMUP messages on 127.0.0.1:$port"
  drive "$mode" "$port" "$WARMUP" || die "$mode/$server: warm-up failed"
  local count_fn=queued_$server
  for rep in $(seq 1 "$REPS"); do
    local q0 q1 c0 c1 t0 t1 load
    q0=$($count_fn "$dir")
    local prof_pid=""
    if [ -n "$PROFILE" ] && [ "$server" = minimta ] && [ "$rep" = 1 ]; then
      mkdir -p "$OUT_DIR"
      (cd "$ROOT" && deno run -A bench/lib/cpu_profile.ts --inspect "$INSPECT" \
        --seconds "$PROFILE_SECONDS" --out "$OUT_DIR/profile-$mode-$STAMP.cpuprofile" \
        >"$OUT_DIR/profile-$mode-$STAMP.txt" 2>&1) &
      prof_pid=$!
      sleep 0.3
    fi
    load=$(cut -d' ' -f1 /proc/loadavg)
    c0=$(tree_ticks "$pid"); t0=$(now)
    drive "$mode" "$port" "$N" || die "$mode/$server: run $rep failed"
    t1=$(now); c1=$(tree_ticks "$pid")
    if [ -n "$prof_pid" ]; then
      wait "$prof_pid" || say "profiler failed; see $OUT_DIR/profile-$mode-$STAMP.txt"
      say "profile: $OUT_DIR/profile-$mode-$STAMP.txt"
    fi
    q1=$($count_fn "$dir")
    [ $((q1 - q0)) -eq "$N" ] || die "$mode/$server: run $rep queued $((q1 - q0)) of $N messages"
    local line
    line=$(awk -v m="$mode" -v s="$server" -v r="$rep" -v n="$N" -v t0="$t0" -v t1="$t1" \
      -v c="$((c1 - c0))" -v hz="$CLK_TCK" -v load="$load" \
      'BEGIN { printf "%s\t%s\t%d\t%d\t%.3f\t%.1f\t%.3f\t%s\n", m, s, r, n, t1 - t0, n / (t1 - t0), c * 1000 / hz / n, load }')
    echo "$line" >>"$RESULTS"
    say "$mode/$server run $rep: $(echo "$line" | awk -F'\t' '{ printf "%s msg in %s s = %s msg/s, %s CPU ms/msg", $4, $5, $6, $7 }')"
  done
  if [ "$server" = minimta ]; then
    local hwm
    hwm=$(awk '/^VmHWM/ { print $2 }' "/proc/$pid/status")
    printf '%s\t%s\tpeak_rss_kb\t%s\n' "$mode" "$server" "$hwm" >>"$RESULTS"
    echo "$mode/minimta: $(grep -c '"event":"delivery"' "$dir/minimta.log" || true) delivery attempts" \
      "logged by its delivery engine during the $(((REPS * N) + WARMUP)) submissions" >>"$NOTES"
    stop_minimta
  else
    stop_postfix "$dir"
  fi
}

for mode in $MODES; do
  for server in $SERVERS; do measure "$mode" "$server"; done
done

mkdir -p "$OUT_DIR"
{
  echo "minimta submission benchmark, $(date -u '+%Y-%m-%d %H:%M UTC') on $(hostname)"
  echo "$(nproc) CPUs ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)), $(uname -r)," \
    "$(deno --version | head -1), Postfix $(postconf -d -h mail_version)"
  echo "load average at start: $LOAD_START (1-min loadavg before each run is in the raw runs;"
  echo "  anything well above 1 means other work shared this machine and skews the figures)"
  echo "spool filesystem: $(df -T "$WORK" | awk 'NR == 2 { print $2 " on " $1 }')"
  echo "$N messages x $REPS runs (median shown) after $WARMUP warm-up; $SIZE-byte bodies;" \
    "$SESSIONS sessions; fsync on; Postfix queue: $PF_QUEUE; minimta password: $PW_KIND"
  echo "plain: smtp-source (new connection per message), trusted loopback, no TLS/AUTH"
  echo "auth:  bench/lib/auth_load.ts, STARTTLS + AUTH PLAIN, $PER_CONN messages per connection"
  echo "CPU: utime+stime of the server processes (minimta: the deno process; Postfix: master"
  echo "     and every child: smtpd, cleanup, qmgr, trivial-rewrite, anvil, tlsmgr, postlogd...)"
  echo
  deno run "$ROOT/bench/lib/report.ts" <"$RESULTS"
  echo
  echo "minimta's delivery engine runs in the same process (delivery.dns_servers: 127.0.0.1:9,"
  echo "so each attempt fails locally on a DNS timeout and is deferred; nothing leaves the machine):"
  cat "$NOTES"
  echo
  echo "raw runs (mode, server, run, messages, seconds, msg/s, CPU ms/msg, loadavg before):"
  grep -v peak_rss "$RESULTS"
} >"$REPORT"
cat "$REPORT"
say "written to $REPORT"
