#!/usr/bin/env bash
# bench/campaign_throttle.sh — the campaign shape of issue 11: a campaign to
# many recipient domains whose MX records point at 3 receiving hosts, one of
# which (the "bigmail" provider) throttles like Gmail. minimta, with the
# provider configured, against Postfix with its default destination limits,
# one after the other on this machine, through the same DNS to the same hosts.
#
#   bash bench/run.sh campaign
#   BENCH_MESSAGES=600 BENCH_DOMAINS=60 BENCH_TIMEOUT=600 bash bench/campaign_throttle.sh
#
# Shape: BENCH_DOMAINS domains d1.test..dD.test; dI.test has one MX, chosen by
# I mod 3: mx1.bigmail.example (127.0.0.3, bench/lib/throttle_mx.py),
# mx.other1.example (127.0.0.4) or mx.other2.example (127.0.0.5), the last two
# Postfix's `smtp-sink`; all three listen on the same port. BENCH_MESSAGES
# messages (one recipient each, spread evenly over the domains, so a third go
# to bigmail) are submitted by bench/lib/campaign_submit.py over 10 sessions.
# The bigmail host answers `421 4.7.28 ... unusual rate` (and closes) at
# connect when more than BENCH_MX_CONNS (2) connections would be open, and at
# MAIL FROM once it has accepted BENCH_MX_RATE (100) messages in the last
# minute; it counts every 421 it sends ("throttle replies").
# The hosts are restarted for each server, so each starts with a clean window.
#
# DNS: tests/fakes/fake_dns.py (dnspython) on 127.0.0.153:53. minimta uses it
# via delivery.dns_servers. Postfix reads /etc/resolv.conf, so it is started
# in a private mount namespace (`unshare -m`) where /etc/resolv.conf is a
# bind mount of "nameserver 127.0.0.153" — the host's file is not touched.
#
# minimta: defaults, plus delivery.port, allow_loopback, dns_servers and
#   providers: [{name: bigmail, mx: [".bigmail.example"], connections: 2, rate: "90/m"}]
#   throttle_rules: [{provider: bigmail, match: "\\b4\\.7\\.28\\b", suspend: BENCH_SUSPEND (1m)}]
#   (the built-in 4.7.28 rule is scoped to the `google` provider).
# Postfix: defaults for everything about destinations
#   (default_destination_concurrency_limit 20, initial_destination_concurrency
#   5, default_process_limit 100, minimal_backoff_time 300s, queue_run_delay
#   300s, smtp connection cache on demand), smtp_tcp_port = the hosts' port.
#
# Figures per server: time from the first submission until all N messages are
# counted by the three hosts (or the count at BENCH_TIMEOUT), throttle replies
# the bigmail host sent, the peak open connections it saw, CPU (utime+stime of
# minimta's deno process / Postfix's master and all children) and peak RSS
# (PSS summed over the process tree, so shared pages count once; sampled every 0.5 s).
#
# What the full shape implies: 50,000 messages over 3 hosts put ~16,700 on
# bigmail; at 100 messages a minute that is at least 167 minutes for ANY
# sender that gets them all through — the run is bounded by the receiver's
# rate, and the figure of merit is the throttle replies drawn on the way.
#
# Requirements: root (private Postfix, port 53, unshare), postfix with
# smtp-sink, Deno, /usr/bin/python3 with dnspython.
#
# Knobs (environment):
#   BENCH_MESSAGES=50000 BENCH_DOMAINS=1000 BENCH_TIMEOUT=14400 (s per server)
#   BENCH_SERVERS="minimta postfix"  BENCH_MX_CONNS=2 BENCH_MX_RATE=100
#   BENCH_RATE="90/m" BENCH_CONNECTIONS=2 BENCH_SUSPEND=1m   (minimta's provider)
#   BENCH_PORT_BASE=42800 BENCH_TMPDIR=DIR BENCH_KEEP=1 BENCH_REPORT_SUFFIX=""
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
N=${BENCH_MESSAGES:-50000}
D=${BENCH_DOMAINS:-1000}
TIMEOUT=${BENCH_TIMEOUT:-14400}
SERVERS=${BENCH_SERVERS:-"minimta postfix"}
MX_CONNS=${BENCH_MX_CONNS:-2}
MX_RATE=${BENCH_MX_RATE:-100}
RATE=${BENCH_RATE:-90/m}
CONNECTIONS=${BENCH_CONNECTIONS:-2}
SUSPEND=${BENCH_SUSPEND:-1m}
PORT_BASE=${BENCH_PORT_BASE:-42800}
# shellcheck disable=SC2034 # used by bench/lib/minimta.sh
MINIMTA_FLAGS=${BENCH_MINIMTA_FLAGS:-}
# shellcheck disable=SC2034 # used by bench/lib/minimta.sh
MINIMTA_ENTRY=${BENCH_MINIMTA_ENTRY:-main.ts}
MX_PORT=$((PORT_BASE + 25))
DNS_IP=127.0.0.153
BIG_IP=127.0.0.3
SINK_IPS="127.0.0.4 127.0.0.5"
OUT_DIR=$ROOT/bench/out
STAMP=$(date +%Y-%m-%d)
REPORT=$OUT_DIR/campaign-$STAMP${BENCH_REPORT_SUFFIX:-}.txt
CLK_TCK=$(getconf CLK_TCK)
PY=/usr/bin/python3

die() { echo "bench: $*" >&2; exit 1; }
say() { echo "bench: $*" >&2; }
# shellcheck source=bench/lib/postfix.sh
. "$ROOT/bench/lib/postfix.sh"
# shellcheck source=bench/lib/minimta.sh
. "$ROOT/bench/lib/minimta.sh"
# shellcheck source=bench/lib/cpu.sh
. "$ROOT/bench/lib/cpu.sh"

# ---- preflight ---------------------------------------------------------------
for tool in deno postfix postconf smtp-sink openssl unshare mount getconf; do
  command -v "$tool" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin:/sbin
  command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found (apt-get install -y postfix openssl util-linux)"
done
[ "$(id -u)" = 0 ] || die "must run as root (private Postfix, DNS on port 53, unshare -m)"
$PY -c 'import dns.message' 2>/dev/null || die "$PY lacks dnspython: apt-get install -y python3-dnspython"
{ [ "$N" -ge 1 ] && [ "$D" -ge 3 ]; } 2>/dev/null || die "need BENCH_MESSAGES >= 1 and BENCH_DOMAINS >= 3"
for s in $SERVERS; do case $s in minimta | postfix) ;; *) die "unknown server '$s'" ;; esac; done

# shellcheck source=bench/lib/workdir.sh
. "$ROOT/bench/lib/workdir.sh"
WORK=$(bench_workdir campaign)
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
  if [ "${BENCH_KEEP:-}" = 1 ]; then say "kept $WORK"; else rm -rf "$WORK"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "work dir $WORK; $N messages to $D domains; timeout ${TIMEOUT}s per server"
(cd "$ROOT" && deno cache main.ts bench/lib/make_users.ts) >/dev/null 2>&1 ||
  die "deno cache failed (are minimta's npm dependencies reachable?)"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=localhost" \
  -keyout "$WORK/server.key" -out "$WORK/server.crt" >/dev/null 2>&1

# ---- DNS: D domains, one MX each on one of the 3 hosts ------------------------
# shellcheck disable=SC2086 # SINK_IPS: two words
$PY - "$D" "$BIG_IP" $SINK_IPS >"$WORK/zone.json" <<'PYZONE'
import json, sys
d, ips = int(sys.argv[1]), sys.argv[2:]
names = ["mx1.bigmail.example", "mx.other1.example", "mx.other2.example"]
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
# Messages per host, as the submitter spreads them (recipient K -> domain K mod D + 1).
SHARE=$($PY -c "import sys; n,d=$N,$D; c=[0,0,0]
for k in range(n): c[(k % d + 1) % 3]+=1
print(*c)")
say "messages per host (bigmail other1 other2): $SHARE"

# ---- receiving hosts (fresh for each server) -----------------------------------
start_hosts() { # dir
  local dir=$1 ip
  mkdir -p "$dir"
  $PY "$ROOT/bench/lib/throttle_mx.py" --listen "$BIG_IP" --port "$MX_PORT" --stats "$dir/bigmail.json" \
    --max-conns "$MX_CONNS" --max-per-min "$MX_RATE" >"$dir/bigmail.out" 2>"$dir/bigmail.err" &
  HOST_PIDS+=($!)
  for ip in $SINK_IPS; do
    smtp-sink -c -u nobody "$ip:$MX_PORT" 1000 >"$dir/sink-$ip.out" 2>"$dir/sink-$ip.err" &
    HOST_PIDS+=($!)
  done
  for ip in $BIG_IP $SINK_IPS; do
    for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/$ip/$MX_PORT") 2>/dev/null && break; sleep 0.1; done
    (exec 3<>"/dev/tcp/$ip/$MX_PORT") 2>/dev/null || die "receiving host $ip:$MX_PORT did not start"
  done
  sleep 0.5 # let the probes above close before counting connections
  # The probes counted as sessions; start the throttle counters from here.
}

# ---- minimta -----------------------------------------------------------------
start_minimta() { # dir port
  local dir=$1 port=$2
  (cd "$ROOT" && deno run -A bench/lib/make_users.ts "$dir/users.json" user secret user@ours.test plain)
  cat >"$dir/config.yaml" <<YAML
server:
  hostname: bench.ours.test
  listen_addr: "127.0.0.1:$port"
  listen_tls_addr: ""
  local_socket: ""
  trusted_networks: ["127.0.0.1/32"]
tls:
  cert_file: $WORK/server.crt
  key_file: $WORK/server.key
auth:
  users_file: $dir/users.json
queue:
  dir: $dir/spool
  fsync: true
delivery:
  port: $MX_PORT
  dns_servers: ["$DNS_IP:53"]
  allow_loopback: true
  providers:
    - name: bigmail
      mx: [".bigmail.example"]
      connections: $CONNECTIONS
      rate: "$RATE"
  throttle_rules:
    - provider: bigmail
      match: "\\\\b4\\\\.7\\\\.28\\\\b"
      suspend: $SUSPEND
log:
  level: info
  format: json
YAML
  mta_launch "$dir"
}

# ---- Postfix (default destination limits), in its own mount namespace ----------
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

# ---- one server ----------------------------------------------------------------
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
RESULTS=$WORK/results.tsv
NOTES=$WORK/notes.txt
: >"$RESULTS"; : >"$NOTES"

measure() { # server
  local server=$1 dir=$WORK/$1 port pid c0 c1 t0 tsub rc=0
  mkdir -p "$dir"
  start_hosts "$dir/hosts"
  if [ "$server" = postfix ]; then
    port=$((PORT_BASE + 2)); start_postfix "$dir" "$port"; pid=$PF_MASTER
  else
    port=$((PORT_BASE + 1)); start_minimta "$dir" "$port"; pid=$MINIMTA_PID
  fi
  local base
  base=$($PY -c 'import json,sys; print(json.load(open(sys.argv[1])).get("sessions",0))' "$dir/hosts/bigmail.json" 2>/dev/null || echo 0)
  say "$server: submitting $N messages"
  local load; load=$(cut -d' ' -f1 /proc/loadavg)
  c0=$(tree_ticks "$pid"); t0=$(now)
  $PY "$ROOT/bench/lib/campaign_submit.py" 127.0.0.1 "$port" "$N" "$D" 10 >"$dir/submit.log" 2>&1 ||
    { cat "$dir/submit.log" >&2; die "$server: submission failed"; }
  tsub=$(now)
  say "$server: submitted in $(awk -v a="$t0" -v b="$tsub" 'BEGIN { printf "%.1f", b - a }') s; waiting for delivery (at most ${TIMEOUT}s)"
  $PY "$ROOT/bench/lib/campaign_wait.py" "$N" "$TIMEOUT" "$pid" "$dir/hosts/bigmail.json" \
    "$dir"/hosts/sink-*.out >"$dir/wait.json" || rc=1
  c1=$(tree_ticks "$pid")
  [ "$rc" = 0 ] || say "$server: timed out"
  local line
  line=$($PY - "$server" "$N" "$t0" "$c1" "$c0" "$CLK_TCK" "$load" "$base" "$dir/wait.json" <<'PYLINE'
import json, sys
server, n, t0, c1, c0, hz, load, base, path = sys.argv[1:]
w = json.load(open(path))
secs = w["t"] - float(t0)
cpu_s = (int(c1) - int(c0)) / int(hz)
print("\t".join(str(x) for x in [
    server, n, w["delivered"], "done" if w["done"] else "timeout", f"{secs:.1f}",
    w.get("throttled", 0), w.get("throttled_connect", 0), w.get("throttled_mail", 0),
    w.get("peak_open", 0), w.get("sessions", 0) - int(base), f"{cpu_s:.1f}",
    f"{cpu_s * 1000 / max(1, w['delivered']):.2f}", w["peak_rss_kb"] // 1024, load]))
PYLINE
)
  echo "$line" >>"$RESULTS"
  say "$server: $(echo "$line" | awk -F'\t' '{ printf "%s/%s delivered (%s) in %s s; %s throttle replies; CPU %s s; peak RSS %s MiB", $3, $2, $4, $5, $6, $11, $13 }')"
  if [ "$server" = postfix ]; then
    echo "postfix: maillog: $(grep -c 'status=sent' "$dir/maillog" || true) sent," \
      "$(grep -c 'status=deferred' "$dir/maillog" || true) deferred" \
      "($(grep 'status=deferred' "$dir/maillog" | grep -c '4\.7\.28' || true) citing 4.7.28)," \
      "$(grep -c 'status=bounced' "$dir/maillog" || true) bounced" >>"$NOTES"
    pf_stop "$dir"
  else
    echo "minimta: log: $(grep -c '"outcome":"delivered"' "$dir/minimta.log" || true) delivered," \
      "$(grep -c '"outcome":"transient"' "$dir/minimta.log" || true) deferred," \
      "$(grep -c 'provider_suspended' "$dir/minimta.log" || true) provider_suspended events," \
      "$(grep -c '"outcome":"bounced"' "$dir/minimta.log" || true) bounced" >>"$NOTES"
    stop_minimta
  fi
  stop_hosts
}

for server in $SERVERS; do measure "$server"; done

mkdir -p "$OUT_DIR"
{
  echo "minimta campaign/throttle benchmark (issue 11), $(date -u '+%Y-%m-%d %H:%M UTC') on $(hostname)"
  echo "$(nproc) CPUs, $(uname -r), $(deno --version | head -1), Postfix $(postconf -d -h mail_version)"
  echo "load average at start: $LOAD_START, at end: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "$N messages to $D domains; per host (bigmail other1 other2): $SHARE"
  echo "bigmail answers 421 4.7.28 at > $MX_CONNS open connections or >= $MX_RATE messages in the last 60 s"
  echo "minimta: provider bigmail connections $CONNECTIONS, rate $RATE; rule 4.7.28 -> suspend $SUSPEND"
  echo "Postfix: default destination limits; timeout ${TIMEOUT}s per server"
  echo
  printf '%-8s %7s %10s %8s %9s %9s %8s %8s %9s %7s %8s\n' server messages delivered status seconds throttled "(conn" "mail)" peak_conn CPU_s "RSS_MiB"
  awk -F'\t' '{ printf "%-8s %7s %10s %8s %9s %9s %8s %8s %9s %7s %8s\n", $1, $2, $3, $4, $5, $6, $7, $8, $9, $11, $13 }' "$RESULTS"
  awk -F'\t' '
    { s[$1] = $5; th[$1] = $6; cpu[$1] = $11; rss[$1] = $13; del[$1] = $3; st[$1] = $4 }
    END {
      if (("minimta" in s) && ("postfix" in s)) {
        # a server that timed out has no total time: the ratio is then a bound
        le = (st["postfix"] == "timeout" && st["minimta"] == "done") ? "<= " : (st["minimta"] == "timeout" && st["postfix"] == "done") ? ">= " : ""
        printf "minimta/Postfix: time %s%.2fx, throttle replies %s/%s = %s, CPU %.2fx, peak RSS %.2fx, delivered %s/%s\n",
          le, s["minimta"] / s["postfix"], th["minimta"], th["postfix"],
          th["postfix"] ? sprintf("%.1f%%", 100 * th["minimta"] / th["postfix"]) : "n/a",
          cpu["postfix"] ? cpu["minimta"] / cpu["postfix"] : 0, rss["postfix"] ? rss["minimta"] / rss["postfix"] : 0,
          del["minimta"], del["postfix"]
      }
    }' "$RESULTS"
  echo
  cat "$NOTES"
  echo
  echo "raw (server, messages, delivered, status, seconds, throttled, at connect, at MAIL, peak open conns at bigmail, sessions at bigmail, CPU s, CPU ms/msg, peak RSS MiB, loadavg before):"
  cat "$RESULTS"
} >"$REPORT"
cat "$REPORT"
say "written to $REPORT"
