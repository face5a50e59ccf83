# shellcheck shell=bash
# Sourced by bench/submission.sh and bench/delivery.sh: start and stop the
# minimta under test. The caller defines die(), ROOT, MINIMTA_FLAGS and
# MINIMTA_ENTRY, and writes DIR/config.yaml first.

# mta_launch DIR: starts `minimta serve` on DIR/config.yaml and waits until it
# listens; sets MINIMTA_PID to the deno process itself.
mta_launch() {
  local dir=$1 i
  # shellcheck disable=SC2086
  (cd "$dir" && exec deno run -A $MINIMTA_FLAGS "$ROOT/$MINIMTA_ENTRY" serve \
    --config "$dir/config.yaml" >"$dir/minimta.log" 2>&1) &
  MINIMTA_PID=$!
  for i in $(seq 1 1200); do # up to 120 s: start-up over a large queue is what bench/memory.sh times
    grep -q "minimta listening" "$dir/minimta.log" 2>/dev/null && break
    kill -0 "$MINIMTA_PID" 2>/dev/null || { tail -20 "$dir/minimta.log" >&2; die "minimta exited"; }
    sleep 0.1
  done
  grep -q "minimta listening" "$dir/minimta.log" || die "minimta did not start; see $dir/minimta.log"
  # The subshell exec'ed deno, so $! is the deno process itself.
  [ "$(cat "/proc/$MINIMTA_PID/comm")" = deno ] || die "unexpected minimta process"
}

stop_minimta() {
  kill -TERM "$MINIMTA_PID"; wait "$MINIMTA_PID" 2>/dev/null || true
  MINIMTA_PID=""
}

# queued_minimta DIR: messages in the spool under DIR (each is one file in msg/).
queued_minimta() { find "$1/spool/msg" -type f -name '*.eml' 2>/dev/null | wc -l; }
