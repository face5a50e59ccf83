#!/usr/bin/env bash
# install.sh — install, update or remove minimta on Debian, Ubuntu, Fedora or Arch.
#
#   sudo ./install.sh                      build from this source tree (needs Deno) and install
#   sudo ./install.sh --binary PATH        install a compiled minimta (`deno task compile`, a release)
#   sudo ./install.sh --uninstall          remove program and unit; keep config, keys, users, spool
#   sudo ./install.sh --uninstall --purge  also remove /etc/minimta, the spool and the minimta user
#   sudo ./install.sh --root DIR ...       act on DIR as the root file system (no systemd steps)
#
# The user and the folders come from systemd's own drop-ins, systemd/minimta.sysusers
# and systemd/minimta.tmpfiles, applied with systemd-sysusers and systemd-tmpfiles.
#
# Running it again is safe: it changes only what differs, never overwrites an
# existing config, certificate, key or users file, and says "Nothing changed"
# when everything is already in place. Run with --help for all options.
set -euo pipefail
umask 022

readonly BIN=/usr/local/bin/minimta
readonly LIB=/usr/local/lib/minimta # launcher install: app/ (source), deno, deno_dir/ (cache)
readonly UNIT=/etc/systemd/system/minimta.service
readonly SYSUSERS=/usr/local/lib/sysusers.d/minimta.conf
readonly TMPFILES=/usr/local/lib/tmpfiles.d/minimta.conf
readonly DOC=/usr/local/share/doc/minimta
readonly ETC=/etc/minimta
readonly CERT=/etc/minimta/certs/server.crt
readonly KEY=/etc/minimta/certs/server.key
readonly CONFIG=/etc/minimta/config.yaml
readonly USERS=/etc/minimta/users.json
readonly SPOOL=/var/spool/minimta
readonly ACCOUNT=minimta
readonly CLEAN_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=""
BINARY=""
HOSTNAME_ARG=""
UNINSTALL=0
PURGE=0
NO_COMPILE=0
REBUILD=0
CHANGES=0
PROGRAM_CHANGED=0
UNIT_CHANGED=0
TMP=""
NEW_LIB=""

usage() {
  cat <<EOF
Usage: install.sh [options]

Installs minimta as ${BIN} with the systemd unit ${UNIT}, the system user
"${ACCOUNT}" (${SYSUSERS}, for systemd-sysusers), ${ETC}/ (config, users,
self-signed certificate, created only when absent) and the spool ${SPOOL}
(folders: ${TMPFILES}, for systemd-tmpfiles).

  --binary PATH   install this compiled minimta instead of building from source
  --no-compile    from source: skip \`deno compile\` and install the launcher
                  (Deno + the source + a pre-filled module cache under ${LIB})
  --rebuild       from source: build again even if the source is unchanged
  --hostname NAME server.hostname for a new config (default: \`hostname -f\`)
  --root DIR      install into DIR as if it were / (systemd-sysusers and
                  systemd-tmpfiles --root DIR; no service is started)
  --uninstall     remove the program, its files and the unit; keep ${ETC},
                  ${SPOOL} and the user
  --purge         with --uninstall: also remove ${ETC}, ${SPOOL} (queued mail
                  is lost) and the user and group
  -h, --help      this text
EOF
}

say() { printf '%s\n' "$*"; }
did() {
  CHANGES=$((CHANGES + 1))
  printf '  + %s\n' "$*"
}
same() { printf '  = %s\n' "$*"; }
warn() { printf 'install.sh: warning: %s\n' "$*" >&2; }
die() {
  printf 'install.sh: error: %s\n' "$*" >&2
  exit 1
}

# The path of a system path inside the target root.
r() { printf '%s%s' "${ROOT}" "$1"; }

cleanup() {
  if [[ -n "${NEW_LIB}" && -d "${NEW_LIB}" ]]; then rm -rf -- "${NEW_LIB}"; fi
  if [[ -n "${TMP}" && -d "${TMP}" ]]; then rm -rf -- "${TMP}"; fi
}
trap cleanup EXIT

parse_args() {
  while (($#)); do
    case "$1" in
      --binary)
        [[ $# -ge 2 ]] || die "--binary needs a file"
        BINARY=$2
        shift
        ;;
      --binary=*) BINARY=${1#--binary=} ;;
      --root)
        [[ $# -ge 2 ]] || die "--root needs a directory"
        ROOT=$2
        shift
        ;;
      --root=*) ROOT=${1#--root=} ;;
      --hostname)
        [[ $# -ge 2 ]] || die "--hostname needs a name"
        HOSTNAME_ARG=$2
        shift
        ;;
      --hostname=*) HOSTNAME_ARG=${1#--hostname=} ;;
      --uninstall) UNINSTALL=1 ;;
      --purge) PURGE=1 ;;
      --no-compile) NO_COMPILE=1 ;;
      --rebuild) REBUILD=1 ;;
      -h | --help)
        usage
        exit 0
        ;;
      *)
        usage >&2
        printf '\ninstall.sh: error: unknown option "%s"\n' "$1" >&2
        exit 2
        ;;
    esac
    shift
  done
  if ((PURGE)); then UNINSTALL=1; fi
  if [[ -n "${ROOT}" ]]; then
    [[ -d "${ROOT}" ]] || die "--root ${ROOT}: no such directory"
    ROOT=$(cd "${ROOT}" && pwd -P)
    if [[ "${ROOT}" == / ]]; then ROOT=""; fi
  fi
  if [[ -n "${BINARY}" ]]; then
    ((UNINSTALL == 0)) || die "--binary makes no sense with --uninstall"
    [[ -f "${BINARY}" ]] || die "--binary ${BINARY}: no such file"
    BINARY=$(cd "$(dirname "${BINARY}")" && pwd -P)/$(basename "${BINARY}")
  fi
}

# ---------------------------------------------------------------------------
# Accounts and folders: systemd's own drop-ins (systemd/minimta.sysusers and
# systemd/minimta.tmpfiles), applied with systemd-sysusers and systemd-tmpfiles,
# both of which take --root DIR and read DIR's passwd and group there.

# Prints field 3 (the id) of NAME's line in the passwd or group database.
account_id() {
  local db=$1 name=$2
  if [[ -n "${ROOT}" ]]; then
    [[ -f "${ROOT}/etc/${db}" ]] || return 0
    awk -F: -v n="${name}" '$1 == n { print $3; exit }' "${ROOT}/etc/${db}"
  else
    getent "${db}" "${name}" | cut -d: -f3 || true
  fi
}

# Runs systemd-sysusers or systemd-tmpfiles (with --root DIR) on a drop-in of the target.
systemd_tool() { # TOOL ARGS... DROP_IN
  local tool=$1
  shift
  command -v "${tool}" >/dev/null || die "${tool} is not installed (it comes with systemd; on Debian and Ubuntu: apt-get install systemd)"
  "${tool}" ${ROOT:+--root "${ROOT}"} "$@"
}

install_drop_in() { # FROM PATH WHAT
  [[ -f "$1" ]] || die "$1 is missing: run install.sh from the minimta source tree or release folder"
  if install_file "$1" "$2" 0644; then did "installed $2 ($3)"; else same "$2 is up to date"; fi
}

ensure_accounts() {
  local user_line
  if [[ -n "${ROOT}" ]]; then
    [[ -f "${ROOT}/etc/passwd" ]] || die "--root: ${ROOT}/etc/passwd is missing (give DIR a minimal etc/passwd, group, shadow)"
  fi
  install_drop_in "${SRC}/systemd/minimta.sysusers" "${SYSUSERS}" "the system user, for systemd-sysusers"
  install_drop_in "${SRC}/systemd/minimta.tmpfiles" "${TMPFILES}" "the folders, for systemd-tmpfiles"
  if [[ -n "$(account_id passwd "${ACCOUNT}")" ]]; then
    same "user ${ACCOUNT} exists (uid $(account_id passwd "${ACCOUNT}"), gid $(account_id group "${ACCOUNT}"))"
  else
    systemd_tool systemd-sysusers "$(r "${SYSUSERS}")" >"${TMP}/sysusers.out" 2>&1 ||
      die "systemd-sysusers ${SYSUSERS} failed: $(cat "${TMP}/sysusers.out")"
    [[ -n "$(account_id passwd "${ACCOUNT}")" ]] ||
      die "systemd-sysusers ran but there is no user ${ACCOUNT}: $(cat "${TMP}/sysusers.out")"
    if [[ -n "${ROOT}" ]]; then
      user_line=$(grep "^${ACCOUNT}:" "${ROOT}/etc/passwd")
    else
      user_line=$(getent passwd "${ACCOUNT}")
    fi
    did "created the system user ${ACCOUNT} with systemd-sysusers (uid $(account_id passwd "${ACCOUNT}"), gid $(account_id group "${ACCOUNT}"), home $(cut -d: -f6 <<<"${user_line}"), shell $(cut -d: -f7 <<<"${user_line}"), no password)"
  fi
  MT_UID=$(account_id passwd "${ACCOUNT}")
  MT_GID=$(account_id group "${ACCOUNT}")
  [[ -n "${MT_UID}" && -n "${MT_GID}" ]] || die "could not find the ids of ${ACCOUNT}"
}

# Creates or fixes the folders of the tmpfiles.d drop-in and reports each change.
ensure_dirs() {
  local path paths before=() after i
  mapfile -t paths < <(awk '$1 == "d" { print $2 }' "$(r "${TMPFILES}")")
  for path in "${paths[@]}"; do before+=("$(stat -c '0%a %u:%g' "$(r "${path}")" 2>/dev/null || printf 'absent')"); done
  systemd_tool systemd-tmpfiles --create "$(r "${TMPFILES}")" >"${TMP}/tmpfiles.out" 2>&1 ||
    die "systemd-tmpfiles --create ${TMPFILES} failed: $(cat "${TMP}/tmpfiles.out")"
  for i in "${!paths[@]}"; do
    path=${paths[i]}
    after=$(stat -c '0%a %u:%g' "$(r "${path}")" 2>/dev/null) || die "systemd-tmpfiles did not create ${path}"
    if [[ "${before[i]}" == absent ]]; then
      did "created ${path}/ (${after})"
    elif [[ "${before[i]}" != "${after}" ]]; then
      did "set ${path} to ${after} (was ${before[i]})"
    fi
  done
}

remove_accounts() {
  local prefix=()
  if [[ -n "${ROOT}" ]]; then prefix=(--prefix "${ROOT}"); fi
  if [[ -n "$(account_id passwd "${ACCOUNT}")" ]]; then
    userdel "${prefix[@]}" "${ACCOUNT}" 2>"${TMP}/userdel.err" || die "userdel failed: $(cat "${TMP}/userdel.err")"
    did "removed the user ${ACCOUNT}"
  fi
  if [[ -n "$(account_id group "${ACCOUNT}")" ]]; then
    groupdel "${prefix[@]}" "${ACCOUNT}" 2>"${TMP}/groupdel.err" || die "groupdel failed: $(cat "${TMP}/groupdel.err")"
    did "removed the group ${ACCOUNT}"
  fi
}

# ---------------------------------------------------------------------------
# Files: create or fix, and say what changed.

fix_owner_mode() { # PATH MODE UID GID
  local path=$1 mode=$2 uid=$3 gid=$4 file have_mode have_uid have_gid
  file=$(r "${path}")
  read -r have_mode have_uid have_gid < <(stat -c '%a %u %g' "${file}")
  if ((8#${have_mode} != 8#${mode} || have_uid != uid || have_gid != gid)); then
    chown "${uid}:${gid}" "${file}"
    chmod "${mode}" "${file}"
    did "set ${path} to ${mode} ${uid}:${gid} (was 0${have_mode} ${have_uid}:${have_gid})"
  fi
}

# Installs FROM as PATH (mode, root-owned) unless it is already identical.
install_file() { # FROM PATH MODE -> returns 0 when changed, 1 when identical
  local from=$1 path=$2 mode=$3 dest
  dest=$(r "${path}")
  if [[ -f "${dest}" ]] && cmp -s "${from}" "${dest}"; then
    fix_owner_mode "${path}" "${mode}" 0 0
    return 1
  fi
  mkdir -p "$(dirname "${dest}")"
  install -m "${mode}" -o 0 -g 0 "${from}" "${dest}.new-$$"
  mv -f "${dest}.new-$$" "${dest}"
  return 0
}

# ---------------------------------------------------------------------------
# The program: a compiled binary, or the launcher that runs the source.

find_deno() {
  local candidate
  for candidate in "$(command -v deno || true)" "${DENO_INSTALL:-${HOME:-/root}/.deno}/bin/deno" \
    "$(getent passwd "${SUDO_USER:-root}" | cut -d: -f6)/.deno/bin/deno"; do
    if [[ -n "${candidate}" && -x "${candidate}" && ! -d "${candidate}" ]]; then
      readlink -f "${candidate}"
      return
    fi
  done
}

install_binary() {
  local version
  version=$(env -i PATH="${CLEAN_PATH}" "${BINARY}" version 2>&1) ||
    die "--binary ${BINARY} does not run here (\`${BINARY} version\` failed: ${version}); wrong architecture?"
  say "Installing the compiled program ${BINARY} (${version})"
  if install_file "${BINARY}" "${BIN}" 0755; then
    did "installed ${BIN} from ${BINARY}"
    PROGRAM_CHANGED=1
  else
    same "${BIN} is identical to ${BINARY}"
  fi
  remove_launcher_files "a compiled binary is installed now"
}

remove_launcher_files() {
  if [[ -e "$(r "${LIB}")" ]]; then
    rm -rf -- "$(r "${LIB}")"
    did "removed ${LIB}/ ($1)"
  fi
}

# The source files the program needs: config, lock file, entry point, src/ without tests.
stage_source() {
  local dest=$1 file
  mkdir -p "${dest}"
  for file in deno.json deno.lock main.ts; do
    [[ -f "${SRC}/${file}" ]] || die "${SRC}/${file} is missing: run install.sh from the minimta source tree, or pass --binary PATH"
    cp "${SRC}/${file}" "${dest}/${file}"
  done
  (cd "${SRC}" && find src -type f ! -name '*_test.ts' -print0) | while IFS= read -r -d '' file; do
    mkdir -p "${dest}/$(dirname "${file}")"
    cp "${SRC}/${file}" "${dest}/${file}"
  done
  chmod -R u=rwX,go=rX "${dest}"
}

source_stamp() { # DENO STAGED_APP PERMS
  {
    "$1" --version | head -1
    printf 'perms %s\n' "$3"
    (cd "$2" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
  } | sha256sum | cut -d' ' -f1
}

write_launcher() { # FILE PERMS
  cat >"$1" <<EOF
#!/bin/sh
# minimta launcher, written by install.sh because \`deno compile\` could not be
# used on this machine. It runs the source in ${LIB}/app with the Deno copy in
# ${LIB}/deno, the module cache ${LIB}/deno_dir (filled at install time and
# only read here, so it works on a read-only /usr) and exactly the
# permissions of \`deno task start\`. Re-run install.sh to update it.
set -eu
lib=\$(dirname "\$(dirname "\$(readlink -f "\$0")")")/lib/minimta
DENO_DIR="\$lib/deno_dir"
DENO_NO_UPDATE_CHECK=1
export DENO_DIR DENO_NO_UPDATE_CHECK
exec "\$lib/deno" run --cached-only --frozen --config "\$lib/app/deno.json" \\
  $2 \\
  "\$lib/app/main.ts" "\$@"
EOF
}

build_from_source() {
  local deno perms stamp stamp_file have_stamp log mode="" lib
  deno=$(find_deno)
  [[ -n "${deno}" ]] || die "Deno is not installed, so minimta cannot be built from source. Install Deno (https://docs.deno.com/runtime/getting_started/installation/) or pass --binary PATH (a compiled minimta from \`deno task compile\` or a release)."
  [[ -f "${SRC}/deno.json" && -f "${SRC}/main.ts" ]] ||
    die "${SRC} is not the minimta source tree (no deno.json/main.ts); pass --binary PATH"
  perms=$(cd "${SRC}" && "${deno}" eval --quiet 'const t = JSON.parse(Deno.readTextFileSync("deno.json")).tasks.start;
console.log(t.split(" ").filter((w) => w.startsWith("--allow-") || w.startsWith("--v8-flags=") || w === "--no-prompt").join(" "))')
  [[ "${perms}" == *--allow-* ]] || die "could not read the permission flags of the start task from ${SRC}/deno.json"
  say "Building from source ${SRC} with $("${deno}" --version | head -1) (${deno})"
  say "  permissions (from deno.json's start task): ${perms}"

  stage_source "${TMP}/app"
  stamp=$(source_stamp "${deno}" "${TMP}/app" "${perms}")
  lib=$(r "${LIB}")
  stamp_file="${lib}/install.stamp"
  have_stamp=$(cat "${stamp_file}" 2>/dev/null || true)

  if ((REBUILD == 0)) && [[ "${have_stamp}" == "compiled ${stamp} "* && -f "$(r "${BIN}")" ]] &&
    [[ "${have_stamp##* }" == "$(sha256sum <"$(r "${BIN}")" | cut -d' ' -f1)" ]]; then
    same "${BIN} was compiled from this same source and Deno (use --rebuild to build again)"
    return
  fi
  if ((REBUILD == 0)) && [[ "${have_stamp}" == "launcher ${stamp}" ]] &&
    diff -rq "${TMP}/app" "${lib}/app" >/dev/null 2>&1 && cmp -s "${deno}" "${lib}/deno"; then
    write_launcher "${TMP}/launcher" "${perms}"
    if install_file "${TMP}/launcher" "${BIN}" 0755; then
      did "rewrote the launcher ${BIN}"
      PROGRAM_CHANGED=1
    else
      same "the launcher ${BIN}, the source in ${LIB}/app and its module cache are up to date"
    fi
    return
  fi

  if ((NO_COMPILE == 0)); then
    say "  deno compile ..."
    local perm_args
    read -ra perm_args <<<"${perms}"
    if log=$(cd "${SRC}" && timeout 600 "${deno}" compile --no-check "${perm_args[@]}" --include src/cli/intake_worker.ts --output "${TMP}/minimta" main.ts 2>&1); then
      mode=compiled
    elif grep -qiE 'dl\.deno\.land|denort|error sending request|dns error|connect|timed out|download' <<<"${log}"; then
      say "  deno compile could not download the Deno runtime base (denort) for this machine:"
      say "    $(sed 's/\x1b\[[0-9;]*m//g; s/^ *[0-9]*: //' <<<"${log}" | grep -iE 'error sending request|dns error|dl\.deno\.land' | head -1)"
      say "  Falling back to the launcher: Deno + the source + a pre-filled module cache under ${LIB}."
      say "  (To compile offline, point DENORT_BIN at a denort binary of the same Deno version and run with --rebuild.)"
    else
      printf '%s\n' "${log}" | tail -20 >&2
      die "deno compile failed (see above)"
    fi
  fi

  if [[ "${mode}" == compiled ]]; then
    if install_file "${TMP}/minimta" "${BIN}" 0755; then
      did "installed ${BIN} (compiled with deno compile)"
      PROGRAM_CHANGED=1
    else
      same "${BIN} is identical to the new build"
    fi
    remove_launcher_files "the compiled program replaces the launcher"
    mkdir -p "${lib}"
    printf 'compiled %s %s\n' "${stamp}" "$(sha256sum <"$(r "${BIN}")" | cut -d' ' -f1)" >"${stamp_file}"
    return
  fi

  # The launcher: build the new library next to the old one, then swap.
  mkdir -p "$(dirname "${lib}")"
  NEW_LIB="${lib}.new-$$"
  rm -rf -- "${NEW_LIB}"
  mkdir -p "${NEW_LIB}"
  cp -a "${TMP}/app" "${NEW_LIB}/app"
  install -m 0755 "${deno}" "${NEW_LIB}/deno"
  say "  filling the module cache (deno cache --frozen) ..."
  if ! log=$(cd "${NEW_LIB}/app" && env DENO_DIR="${NEW_LIB}/deno_dir" DENO_NO_UPDATE_CHECK=1 \
    "${NEW_LIB}/deno" cache --frozen --config "${NEW_LIB}/app/deno.json" "${NEW_LIB}/app/main.ts" 2>&1); then
    printf '%s\n' "${log}" | tail -20 >&2
    die "deno cache failed: the npm packages in deno.lock could not be fetched (is registry.npmjs.org reachable?)"
  fi
  # Transpiled files are cached by path, and this is not the final path: drop them.
  rm -rf -- "${NEW_LIB}/deno_dir/gen"
  printf 'launcher %s\n' "${stamp}" >"${NEW_LIB}/install.stamp"
  chown -R 0:0 "${NEW_LIB}"
  chmod -R u=rwX,go=rX "${NEW_LIB}"
  chmod 0755 "${NEW_LIB}/deno"
  if [[ -e "${lib}" ]]; then
    mv "${lib}" "${lib}.old-$$"
    mv "${NEW_LIB}" "${lib}"
    rm -rf -- "${lib}.old-$$"
  else
    mv "${NEW_LIB}" "${lib}"
  fi
  NEW_LIB=""
  did "installed the source, Deno $("${deno}" --version | head -1 | cut -d' ' -f2) and its module cache ($(du -sh "${lib}" | cut -f1)) in ${LIB}/"
  write_launcher "${TMP}/launcher" "${perms}"
  install_file "${TMP}/launcher" "${BIN}" 0755 || true
  did "installed the launcher ${BIN} (deno run --cached-only with the start task's permissions)"
  PROGRAM_CHANGED=1
}

# ---------------------------------------------------------------------------
# Configuration, certificate, users.

pick_hostname() {
  local name=${HOSTNAME_ARG}
  if [[ -z "${name}" ]]; then name=$(hostname -f 2>/dev/null || hostname 2>/dev/null || cat /etc/hostname 2>/dev/null || true); fi
  [[ -n "${name}" ]] || name=localhost
  [[ "${name}" =~ ^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$ ]] ||
    die "\"${name}\" is not a usable host name; pass --hostname mail.example.com"
  printf '%s' "${name}"
}

# Runs the installed program as root with a clean environment.
run_minimta() { env -i PATH="${CLEAN_PATH}" LANG=C.UTF-8 "$(r "${BIN}")" "$@"; }

# Runs a command as the minimta user (numeric ids, so it works with --root).
as_minimta() {
  if command -v setpriv >/dev/null; then
    env -i PATH="${CLEAN_PATH}" LANG=C.UTF-8 HOME=/nonexistent \
      setpriv --reuid="${MT_UID}" --regid="${MT_GID}" --clear-groups "$@"
  elif [[ -z "${ROOT}" ]] && command -v runuser >/dev/null; then
    env -i PATH="${CLEAN_PATH}" LANG=C.UTF-8 HOME=/nonexistent runuser -u "${ACCOUNT}" -- "$@"
  else
    return 127
  fi
}

ensure_certificate() {
  local cert key
  cert=$(r "${CERT}")
  key=$(r "${KEY}")
  if [[ -f "${cert}" && -f "${key}" ]]; then
    same "certificate ${CERT} and key ${KEY} exist (kept)"
    return
  fi
  if [[ -f "${cert}" || -f "${key}" ]]; then
    warn "only one of ${CERT} and ${KEY} exists; not touching them. Remove it to get a new self-signed pair, or install both."
    return
  fi
  run_minimta tls selfsigned --cert "${cert}" --key "${key}" --hostname "${HOST}" >/dev/null
  chown "0:${MT_GID}" "${cert}" "${key}"
  chmod 0644 "${cert}"
  chmod 0640 "${key}"
  did "created a self-signed certificate for ${HOST}: ${CERT} (0644) and ${KEY} (0640 root:${ACCOUNT}); replace them with a real certificate when you have one"
}

ensure_config() {
  local file
  file=$(r "${CONFIG}")
  if [[ -f "${file}" ]]; then
    same "config ${CONFIG} exists (kept as it is)"
    return
  fi
  cat >"${file}.new-$$" <<EOF
# minimta configuration, written by install.sh. It holds only what differs
# from the built-in defaults; every key, with its default and meaning, is in
# ${DOC}/minimta.example.yaml. After a change:
#   minimta config check --config ${CONFIG} && systemctl restart minimta
server:
  hostname: ${HOST}                   # banner, EHLO, Received, DSN sender
  listen_addr: "0.0.0.0:587"          # STARTTLS submission
  listen_tls_addr: "0.0.0.0:465"      # implicit TLS submission; "" turns it off
tls:
  cert_file: ${CERT}
  key_file: ${KEY}
auth:
  users_file: ${USERS}     # minimta user add|passwd|list|remove
queue:
  dir: ${SPOOL}
log:
  level: info
  format: json                        # JSON lines on stdout, for journald
EOF
  chown "0:${MT_GID}" "${file}.new-$$"
  chmod 0640 "${file}.new-$$"
  mv -f "${file}.new-$$" "${file}"
  did "wrote ${CONFIG} (0640 root:${ACCOUNT}; hostname ${HOST}, listeners 0.0.0.0:587 and 0.0.0.0:465)"
}

ensure_users() {
  local file admin password conf out
  file=$(r "${USERS}")
  if [[ -f "${file}" ]]; then
    same "users file ${USERS} exists (kept)"
    return
  fi
  if [[ "${HOST}" == *.* ]]; then admin="admin@${HOST}"; else admin="admin@localhost.localdomain"; fi
  password=$(head -c 18 /dev/urandom | base64 | tr -d '+/=\n')
  # A throwaway config pointing at the target's files (so --root never touches the host's).
  conf="${TMP}/user-add.yaml"
  printf 'server:\n  hostname: "%s"\nauth:\n  users_file: "%s"\nqueue:\n  dir: "%s"\n' \
    "${HOST}" "${file}" "$(r "${SPOOL}")" >"${conf}"
  out=$(printf '%s\n' "${password}" | run_minimta user add "${admin}" --admin --password-stdin --config "${conf}") ||
    die "minimta user add failed: ${out}"
  chown "0:${MT_GID}" "${file}"
  chmod 0640 "${file}"
  did "wrote ${USERS} (0640 root:${ACCOUNT}): ${out}"
  cat <<EOF

  ==================================================================
  Submission login (the password is shown only this once; store it now):
    username: ${admin}
    password: ${password}
  Change it with: minimta user passwd ${admin}
  ==================================================================

EOF
}

# The daemon runs as minimta and must read its config, users, certificate and key.
check_readable() {
  local path bad=()
  for path in "${CONFIG}" "${USERS}" "${CERT}" "${KEY}"; do
    if [[ -e "$(r "${path}")" ]] && ! as_minimta test -r "$(r "${path}")"; then bad+=("${path}"); fi
  done
  if ((${#bad[@]})); then
    warn "the ${ACCOUNT} user cannot read: ${bad[*]} (fix with: chgrp ${ACCOUNT} FILE && chmod g+r FILE)"
    return 1
  fi
}

smoke_test() {
  local out
  if ! command -v setpriv >/dev/null && [[ -n "${ROOT}" || -z "$(command -v runuser)" ]]; then
    say "  (setpriv not found: skipped running minimta as the ${ACCOUNT} user)"
    return
  fi
  out=$(cd / && as_minimta "$(r "${BIN}")" version 2>&1) ||
    die "the installed program does not run as the ${ACCOUNT} user: ${out}"
  say "  ok: \`minimta version\` as ${ACCOUNT} (uid ${MT_UID}): ${out}"
  check_readable || die "fix the file permissions above and run install.sh again"
  say "  ok: ${ACCOUNT} can read the config, users file, certificate and key"
  if [[ -z "${ROOT}" ]]; then
    out=$(cd / && as_minimta "${BIN}" config check --config "${CONFIG}" 2>&1) ||
      die "the config does not validate (as the ${ACCOUNT} user): ${out}"
    say "  ok: \`minimta config check --config ${CONFIG}\` as ${ACCOUNT}: $(head -1 <<<"${out}")"
  fi
}

# ---------------------------------------------------------------------------
# systemd

systemd_running() { [[ -z "${ROOT}" && -d /run/systemd/system ]]; }

install_unit() {
  [[ -f "${SRC}/systemd/minimta.service" ]] ||
    die "${SRC}/systemd/minimta.service is missing: run install.sh from the minimta source tree or release folder"
  if install_file "${SRC}/systemd/minimta.service" "${UNIT}" 0644; then
    did "installed the unit ${UNIT}"
    UNIT_CHANGED=1
  else
    same "unit ${UNIT} is up to date"
  fi
  if [[ -f "${SRC}/minimta.example.yaml" ]]; then
    if install_file "${SRC}/minimta.example.yaml" "${DOC}/minimta.example.yaml" 0644; then
      did "installed ${DOC}/minimta.example.yaml (every config key with its default)"
    fi
  fi
  if [[ -f "${SRC}/README.md" ]] && install_file "${SRC}/README.md" "${DOC}/README.md" 0644; then
    did "installed ${DOC}/README.md"
  fi
}

start_service() {
  if [[ -n "${ROOT}" ]]; then
    say "  systemd: skipped (--root). In the target system run: systemctl daemon-reload && systemctl enable --now minimta"
    return
  fi
  if ! systemd_running; then
    say "  systemd is not running here, so nothing was enabled or started. Start minimta with your init system, as root:"
    say "    setpriv --reuid=${ACCOUNT} --regid=${ACCOUNT} --init-groups --inh-caps=+net_bind_service --ambient-caps=+net_bind_service \\"
    say "      ${BIN} serve --config ${CONFIG}"
    return
  fi
  if ((UNIT_CHANGED)); then
    systemctl daemon-reload
    did "systemctl daemon-reload"
  fi
  if ! systemctl is-enabled --quiet minimta.service 2>/dev/null; then
    systemctl enable --now minimta.service
    did "enabled and started minimta.service"
  elif ! systemctl is-active --quiet minimta.service; then
    systemctl start minimta.service
    did "started minimta.service"
  elif ((PROGRAM_CHANGED || UNIT_CHANGED)); then
    systemctl restart minimta.service
    did "restarted minimta.service (new program or unit)"
  else
    same "minimta.service is enabled and running"
  fi
  if ! systemctl is-active --quiet minimta.service; then
    warn "minimta.service is not running; see: journalctl -u minimta -n 50"
  fi
}

selinux_relabel() {
  if [[ -z "${ROOT}" ]] && command -v restorecon >/dev/null; then
    restorecon -R "${BIN}" "${LIB}" "${UNIT}" "${ETC}" "${SPOOL}" 2>/dev/null || true
  fi
}

# ---------------------------------------------------------------------------

do_install() {
  say "Installing minimta${ROOT:+ into ${ROOT}}"
  ensure_accounts
  if [[ -n "${BINARY}" ]]; then install_binary; else build_from_source; fi
  ensure_dirs
  HOST=$(pick_hostname)
  if [[ "${HOST}" != *.* && ! -f "$(r "${CONFIG}")" ]]; then
    warn "host name \"${HOST}\" is not fully qualified; set server.hostname in ${CONFIG} (or use --hostname)"
  fi
  ensure_certificate
  ensure_config
  ensure_users
  install_unit
  selinux_relabel
  say "Checking"
  smoke_test
  start_service
  if ((CHANGES == 0)); then
    say "Nothing changed: minimta is already installed and up to date."
  else
    say "Done: ${CHANGES} change(s). Config: ${CONFIG}; spool: ${SPOOL}; logs: journalctl -u minimta"
  fi
}

do_uninstall() {
  local path queued
  say "Removing minimta${ROOT:+ from ${ROOT}}$( ((PURGE)) && printf ' (purge)')"
  if systemd_running && systemctl cat minimta.service >/dev/null 2>&1; then
    if systemctl is-enabled --quiet minimta.service 2>/dev/null || systemctl is-active --quiet minimta.service; then
      systemctl disable --now minimta.service
      did "stopped and disabled minimta.service"
    fi
  fi
  for path in "${BIN}" "${LIB}" "${UNIT}" "${DOC}" "${SYSUSERS}" "${TMPFILES}"; do
    if [[ -e "$(r "${path}")" || -L "$(r "${path}")" ]]; then
      rm -rf -- "$(r "${path}")"
      did "removed ${path}"
      if [[ "${path}" == "${UNIT}" ]]; then UNIT_CHANGED=1; fi
    fi
  done
  if ((UNIT_CHANGED)) && systemd_running; then
    systemctl daemon-reload
    did "systemctl daemon-reload"
  fi
  if ((PURGE)); then
    if [[ -d "$(r "${SPOOL}")" ]]; then
      queued=0
      if [[ -d "$(r "${SPOOL}")/meta" ]]; then queued=$(find "$(r "${SPOOL}")/meta" -name '*.json' | wc -l); fi
      rm -rf -- "$(r "${SPOOL}")"
      did "removed the spool ${SPOOL} (${queued} queued message(s) dropped)"
    fi
    if [[ -d "$(r "${ETC}")" ]]; then
      rm -rf -- "$(r "${ETC}")"
      did "removed ${ETC} (config, users, certificate, keys)"
    fi
    remove_accounts
  else
    for path in "${ETC}" "${SPOOL}"; do
      if [[ -e "$(r "${path}")" ]]; then same "kept ${path} (remove it with --purge)"; fi
    done
    if [[ -n "$(account_id passwd "${ACCOUNT}")" ]]; then same "kept the user ${ACCOUNT} (removed with --purge)"; fi
  fi
  if ((CHANGES == 0)); then say "Nothing changed: minimta is not installed."; else say "Done: ${CHANGES} change(s)."; fi
}

main() {
  parse_args "$@"
  [[ ${EUID} -eq 0 ]] || die "run as root (sudo $0 $*): it creates a system user and files owned by it"
  TMP=$(mktemp -d "${TMPDIR:-/tmp}/minimta-install.XXXXXX")
  if ((UNINSTALL)); then do_uninstall; else do_install; fi
}

main "$@"
