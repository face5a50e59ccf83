#!/usr/bin/env bash
# .ci/smoke_binary.sh BINARY — what a compiled minimta must do before a release
# publishes it (.github/workflows/release.yml runs it once per target):
#   1. `minimta version` prints the version;
#   2. `minimta config check` accepts the embedded default (no config file);
#   3. `minimta serve` takes one message over STARTTLS + AUTH (swaks) and
#      delivers it through relay_host to Postfix's smtp-sink, which dumps it.
# Needs swaks (with IO::Socket::SSL) and smtp-sink (postfix).
# tests/release_workflow_test.ts runs it against the source with the same permissions.
set -euo pipefail
[ $# -eq 1 ] || {
  echo "usage: $0 BINARY" >&2
  exit 2
}
bin=$(realpath "$1")
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() {
  echo "smoke: FAIL: $*" >&2
  [ -f "$work/serve.log" ] && tail -20 "$work/serve.log" >&2
  exit 1
}
# Waits until something listens on 127.0.0.1:$1.
wait_port() {
  for _ in $(seq 150); do
    (: </dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
    sleep 0.2
  done
  fail "nothing listens on 127.0.0.1:$1"
}

echo "== $bin version"
version=$("$bin" version) || fail "version exited $?"
echo "$version"
grep -qE '^minimta [0-9]+\.[0-9]+\.[0-9]+' <<<"$version" || fail "unexpected version output"

echo "== $bin config check (embedded default)"
# An empty folder and no MINIMTA_CONFIG: the embedded default (unless /etc/minimta exists).
check=$(cd "$work" && env -u MINIMTA_CONFIG "$bin" config check) || fail "config check exited $?"
head -1 <<<"$check"
grep -qE '^# .*: OK$' <<<"$check" || fail "config check did not say OK"

echo "== $bin serve, one message through smtp-sink"
# Fixed ports on a fresh CI machine; tests/release_workflow_test.ts passes free ones.
submit_port=${SMOKE_SUBMIT_PORT:-2587}
sink_port=${SMOKE_SINK_PORT:-2526}
mkdir -m 0777 "$work/sink"
chmod 0755 "$work"
sink_user=()
# smtp-sink drops privileges to "nobody" when started as root; it must write the dumps.
[ "$(id -u)" -eq 0 ] && sink_user=(-u nobody)
smtp-sink "${sink_user[@]}" -d "$work/sink/%M." "127.0.0.1:$sink_port" 10 &
pids+=($!)
cat >"$work/config.yaml" <<EOF
server:
  hostname: smoke.minimta.test
  listen_addr: 127.0.0.1:$submit_port
  listen_tls_addr: ""
  local_socket: ""
tls:
  cert_file: $work/cert.pem
  key_file: $work/key.pem
auth:
  users_file: $work/users.json
queue:
  dir: $work/spool
delivery:
  relay_host: 127.0.0.1:$sink_port
  retry_schedule: [1s]
log:
  format: text
EOF
"$bin" tls selfsigned --cert "$work/cert.pem" --key "$work/key.pem" --hostname smoke.minimta.test
password="smoke-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
"$bin" user add smoke@minimta.test --password-stdin --config "$work/config.yaml" <<<"$password"
"$bin" serve --config "$work/config.yaml" >"$work/serve.log" 2>&1 &
pids+=($!)
wait_port "$sink_port"
wait_port "$submit_port"
token="smoke-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
swaks --server "127.0.0.1:$submit_port" --tls --auth PLAIN \
  --auth-user smoke@minimta.test --auth-password "$password" \
  --from smoke@minimta.test --to someone@example.org \
  --header "Subject: $token" --body "release smoke test $token" >"$work/swaks.log" 2>&1 ||
  fail "swaks could not submit: $(tail -5 "$work/swaks.log")"
for _ in $(seq 150); do
  if grep -rqs "Subject: $token" "$work/sink"; then
    echo "   delivered: smtp-sink has the message"
    echo "smoke: OK $bin"
    exit 0
  fi
  sleep 0.2
done
fail "the message did not reach smtp-sink within 30 s"
