# shellcheck shell=bash
# Sourced by bench/submission.sh and bench/delivery.sh: a private Postfix
# instance (`postfix -c DIR`) beside the distribution's own, non-chroot,
# logging to a file, on a loopback port. The caller defines die() and
# PF_DIRS (an array its exit trap stops).

# pf_prepare DIR PORT: folders, an empty main.cf, and a master.cf whose
# smtpd listens on 127.0.0.1:PORT.
pf_prepare() {
  local dir=$1 port=$2 etc=$1/etc
  mkdir -p "$etc" "$dir/queue" "$dir/data"
  chown postfix "$dir/data"
  : >"$etc/main.cf"
  cat >"$etc/master.cf" <<MASTER
# service type  private unpriv  chroot  wakeup  maxproc command
127.0.0.1:$port inet n     -       n       -       -       smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
MASTER
}

# pf_base_conf DIR: the main.cf settings both benchmarks share, one per line.
pf_base_conf() {
  local dir=$1
  printf '%s\n' \
    "compatibility_level = 3.6" \
    "queue_directory = $dir/queue" \
    "data_directory = $dir/data" \
    "myhostname = bench.ours.test" \
    "mydomain = ours.test" \
    "myorigin = ours.test" \
    "mydestination =" \
    "local_recipient_maps =" \
    "alias_maps =" \
    "alias_database =" \
    "inet_interfaces = 127.0.0.1" \
    "inet_protocols = ipv4" \
    "smtpd_peername_lookup = no" \
    "maillog_file = $dir/maillog" \
    "maillog_file_prefixes = $dir" \
    "syslog_name = postfix-bench" \
    "biff = no"
}

# pf_start DIR PORT [RESOLV_CONF]: check and start the instance, wait for its port; sets
# PF_MASTER. With RESOLV_CONF, Postfix starts in a private mount namespace where that file is
# /etc/resolv.conf, so its MX lookups go to the bench's DNS server.
pf_start() {
  local dir=$1 port=$2 resolv=${3:-} etc=$1/etc i
  PF_DIRS+=("$dir")
  postfix -c "$etc" check >"$dir/check.log" 2>&1 || { cat "$dir/check.log" >&2; die "postfix check failed"; }
  if [ -n "$resolv" ]; then
    # shellcheck disable=SC2016 # $1, $2 are the inner shell's
    unshare -m --propagation private sh -c \
      'mount --bind "$1" /etc/resolv.conf && exec postfix -c "$2" start' sh "$resolv" "$etc" \
      >"$dir/start.log" 2>&1 || { cat "$dir/start.log" >&2; die "postfix start (unshare -m) failed"; }
  else
    postfix -c "$etc" start >"$dir/start.log" 2>&1 || { cat "$dir/start.log" >&2; die "postfix start failed"; }
  fi
  for i in $(seq 1 100); do
    [ -s "$dir/queue/pid/master.pid" ] && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
  done
  PF_MASTER=$(tr -d ' ' <"$dir/queue/pid/master.pid")
  kill -0 "$PF_MASTER" || die "postfix master not running; see $dir/maillog"
}

# pf_stop DIR: stop the instance started from DIR and forget it.
pf_stop() {
  local i d keep=()
  postfix -c "$1/etc" stop >/dev/null 2>&1 || true
  for i in $(seq 1 100); do kill -0 "$PF_MASTER" 2>/dev/null || break; sleep 0.1; done
  for d in "${PF_DIRS[@]}"; do [ "$d" = "$1" ] || keep+=("$d"); done
  PF_DIRS=("${keep[@]+"${keep[@]}"}")
}
