# shellcheck shell=bash
# Sourced by bench/submission.sh and bench/delivery.sh: CPU accounting from /proc.

# ticks_of PID: clock ticks (utime+stime, plus cutime+cstime of reaped
# children) of a process; the comm field may contain spaces, so cut after
# the last ')'.
ticks_of() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
  echo "${stat##*) }" | awk '{ print $12 + $13 + $14 + $15 }'
}

# tree_ticks PID: all CPU used by a process tree so far: the root (with its
# reaped children) plus its live children. Postfix's master reaps
# smtpd/cleanup/... processes that exit (max_use), so their time moves into
# master's cutime+cstime.
tree_ticks() {
  local root=$1 total child
  total=$(ticks_of "$root")
  for child in $(pgrep -P "$root" || true); do
    total=$((total + $(ticks_of "$child")))
  done
  echo "$total"
}

now() { date +%s.%N; }
