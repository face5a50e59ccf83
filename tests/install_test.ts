/**
 * install.sh, the example config and the systemd unit.
 *
 * install.sh runs for real (as root) against throwaway roots: a temp dir with
 * the minimal etc/ of tests/fixtures/install, so `install.sh --root DIR` adds
 * the minimta user there and every owner is checked against DIR's ids. It runs
 * from a snapshot of the source tree, so edits made meanwhile by others cannot
 * make the "second run changes nothing" check flaky.
 *
 * Needs root, bash, systemd-sysusers and systemd-tmpfiles (install.sh makes the
 * user and folders with them), setpriv, unshare, mount and (for the unit)
 * systemd-analyze.
 * Missing, they skip loudly; with MINIMTA_REQUIRE_INTEROP=1 they fail.
 */
import assert from "node:assert/strict";
import { parse as parseYaml } from "yaml";
import { verifyPassword } from "../src/auth/mod.ts";
import { DEFAULTS, parseConfigText } from "../src/config/mod.ts";
import { type CliResult, freePorts, REQUIRE_INTEROP, requireTool, run } from "./_harness.ts";

const REPO = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const FIXTURE_ETC = `${REPO}/tests/fixtures/install/etc`;

function note(text: string): void {
  Deno.stderr.writeSync(new TextEncoder().encode(`install_test: ${text}\n`));
}

/** A test that needs root and tools: skipped loudly, or failed under MINIMTA_REQUIRE_INTEROP=1. */
function interopTest(
  name: string,
  needs: { root: boolean; tools: string[] },
  fn: () => Promise<void>,
): void {
  const ignore = requireTool(...(needs.root ? ["root:"] : []), ...needs.tools);
  Deno.test({ name, ignore, fn });
}

function ok(result: CliResult, what: string): CliResult {
  assert.equal(
    result.code,
    0,
    `${what} exited ${result.code}\n--- stdout\n${result.stdout}\n--- stderr\n${result.stderr}`,
  );
  return result;
}

/** A copy of what install.sh needs from the source tree, frozen for the test. */
async function snapshotSource(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "minimta-src-" });
  ok(
    await run("cp", [
      "-a",
      ...[
        "install.sh",
        "deno.json",
        "deno.lock",
        "main.ts",
        "src",
        "systemd",
        "minimta.example.yaml",
      ]
        .map((f) => `${REPO}/${f}`),
      dir,
    ]),
    "copying the source",
  );
  return dir;
}

/** A throwaway root: 0755 like a real /, with the fixture's minimal etc/. */
async function makeRoot(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "minimta-root-" });
  await Deno.chmod(dir, 0o755);
  await Deno.mkdir(`${dir}/etc`, { mode: 0o755 });
  for (
    const [name, mode] of [["passwd", 0o644], ["group", 0o644], ["shadow", 0o640], [
      "gshadow",
      0o640,
    ]] as const
  ) {
    await Deno.copyFile(`${FIXTURE_ETC}/${name}`, `${dir}/etc/${name}`);
    await Deno.chmod(`${dir}/etc/${name}`, mode);
  }
  return dir;
}

async function installSh(src: string, args: string[]): Promise<CliResult> {
  return await run("bash", [`${src}/install.sh`, ...args], { cwd: "/" });
}

/** Field `field` of NAME's line in DIR/etc/DB, or null. */
async function accountField(
  root: string,
  db: string,
  name: string,
  field: number,
): Promise<string | null> {
  const text = await Deno.readTextFile(`${root}/etc/${db}`);
  const line = text.split("\n").find((l) => l.startsWith(`${name}:`));
  return line ? line.split(":")[field] : null;
}

async function ids(root: string): Promise<{ uid: number; gid: number }> {
  const uid = await accountField(root, "passwd", "minimta", 2);
  const gid = await accountField(root, "group", "minimta", 2);
  assert.ok(uid !== null && gid !== null, "minimta is in DIR/etc/passwd and group");
  return { uid: Number(uid), gid: Number(gid) };
}

async function assertFile(
  path: string,
  want: { type: "file" | "dir"; mode: number; uid: number; gid: number },
): Promise<void> {
  const info = await Deno.lstat(path);
  assert.equal(info.isDirectory ? "dir" : info.isFile ? "file" : "other", want.type, path);
  assert.equal(
    (info.mode! & 0o7777).toString(8),
    want.mode.toString(8),
    `mode of ${path}`,
  );
  assert.equal(`${info.uid}:${info.gid}`, `${want.uid}:${want.gid}`, `owner of ${path}`);
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}

async function sha256(path: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", await Deno.readFile(path));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Every entry under DIR: type, mode, owner, size, mtime, ctime and content hash. */
async function listing(dir: string): Promise<string[]> {
  const lines: string[] = [];
  const walk = async (rel: string): Promise<void> => {
    for await (const entry of Deno.readDir(`${dir}${rel}`)) {
      const path = `${rel}/${entry.name}`;
      const info = await Deno.lstat(`${dir}${path}`);
      const kind = info.isDirectory ? "d" : info.isSymlink ? "l" : "f";
      const hash = info.isFile ? await sha256(`${dir}${path}`) : "";
      lines.push(
        `${path} ${kind} ${
          (info.mode! & 0o7777).toString(8)
        } ${info.uid}:${info.gid} ${info.size} ` +
          `${info.mtime?.getTime()} ${info.ctime?.getTime()} ${hash}`,
      );
      if (info.isDirectory) await walk(path);
    }
  };
  await walk("");
  return lines.sort();
}

function startPermissions(denoJson: string): string[] {
  const start: string = JSON.parse(denoJson).tasks.start;
  return start.split(" ").filter((w) =>
    w.startsWith("--allow-") || w.startsWith("--v8-flags=") || w === "--no-prompt"
  );
}

function passwordsIn(text: string): string[] {
  return [...text.matchAll(/^\s*password: (\S+)$/gm)].map((m) => m[1]);
}

/** The installed config with its system paths mapped into DIR, so it can be checked there. */
function mappedConfig(text: string, root: string): string {
  return text.replaceAll("/etc/minimta/", `${root}/etc/minimta/`)
    .replaceAll("/var/spool/minimta", `${root}/var/spool/minimta`);
}

/**
 * Runs the installed program as DIR's minimta user, in a mount namespace
 * where DIR/usr (program, source, Deno, module cache) and DIR/etc/minimta are
 * read-only bind mounts, as under the unit's ProtectSystem=strict and
 * ReadOnlyPaths=/etc/minimta. First proves, as root, that the cache really
 * cannot be written there.
 */
async function runHardened(root: string, args: string[]): Promise<CliResult> {
  const { uid, gid } = await ids(root);
  const q = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;
  const script = [
    `mount --bind -o ro ${q(`${root}/usr`)} ${q(`${root}/usr`)}`,
    `mount --bind -o ro ${q(`${root}/etc/minimta`)} ${q(`${root}/etc/minimta`)}`,
    `if touch ${
      q(`${root}/usr/local/lib/minimta/deno_dir/probe`)
    } 2>/dev/null; then echo "cache is writable" >&2; exit 99; fi`,
    `exec env -i PATH=/usr/bin:/bin HOME=/nonexistent setpriv --reuid=${uid} --regid=${gid} --clear-groups ` +
    `${q(`${root}/usr/local/bin/minimta`)} ${args.map(q).join(" ")}`,
  ].join("\n");
  return await run("unshare", ["--mount", "--propagation", "private", "sh", "-c", script], {
    cwd: "/",
  });
}

interopTest(
  "install.sh: shellcheck-clean and valid bash",
  { root: false, tools: ["bash", "shellcheck"] },
  async () => {
    ok(await run("bash", ["-n", `${REPO}/install.sh`]), "bash -n install.sh");
    ok(await run("shellcheck", [`${REPO}/install.sh`]), "shellcheck install.sh");
  },
);

interopTest(
  "install.sh --root: from source (launcher), idempotent, hardened launcher, --binary over it, --uninstall, --purge",
  {
    root: true,
    tools: [
      "bash",
      "systemd-sysusers",
      "systemd-tmpfiles",
      "userdel",
      "groupdel",
      "setpriv",
      "unshare",
      "mount",
      "hostname",
    ],
  },
  async () => {
    const started = Date.now();
    const src = await snapshotSource();
    const root = await makeRoot();
    const hostPasswd = await sha256("/etc/passwd");
    const hostGroup = await sha256("/etc/group");
    try {
      // --- first run: from source
      let first = ok(await installSh(src, ["--root", root]), "install.sh --root (first run)");
      if (/compiled with deno compile/.test(first.stdout)) {
        note("deno compile worked here; installing again with --no-compile to test the launcher");
        first = ok(
          await installSh(src, ["--root", root, "--no-compile", "--rebuild"]),
          "install.sh --no-compile --rebuild",
        );
      } else {
        assert.match(first.stdout, /could not download the Deno runtime base/);
        assert.match(first.stdout, /Falling back to the launcher/);
      }
      assert.match(first.stdout, /created the system user minimta/);
      assert.match(first.stdout, /systemd: skipped \(--root\)/);

      const { uid, gid } = await ids(root);
      assert.notEqual(uid, 999, "uid 999 is taken in DIR, so systemd-sysusers read DIR's passwd");
      assert.ok(uid > 0 && uid < 1000 && gid > 0 && gid < 1000, `system ids (${uid}:${gid})`);
      assert.match((await accountField(root, "passwd", "minimta", 6))!, /\/nologin$|\/false$/);
      assert.equal(await accountField(root, "passwd", "minimta", 5), "/var/spool/minimta");
      assert.ok((await accountField(root, "shadow", "minimta", 1))?.startsWith("!"), "no password");
      assert.equal(await sha256("/etc/passwd"), hostPasswd, "the host's /etc/passwd is untouched");
      assert.equal(await sha256("/etc/group"), hostGroup, "the host's /etc/group is untouched");

      // Files, modes and owners (DIR's numeric ids).
      const R = (p: string) => `${root}${p}`;
      await assertFile(R("/etc/minimta"), { type: "dir", mode: 0o750, uid: 0, gid });
      await assertFile(R("/etc/minimta/certs"), { type: "dir", mode: 0o750, uid: 0, gid });
      await assertFile(R("/etc/minimta/certs/server.crt"), {
        type: "file",
        mode: 0o644,
        uid: 0,
        gid,
      });
      await assertFile(R("/etc/minimta/certs/server.key"), {
        type: "file",
        mode: 0o640,
        uid: 0,
        gid,
      });
      await assertFile(R("/etc/minimta/config.yaml"), { type: "file", mode: 0o640, uid: 0, gid });
      await assertFile(R("/etc/minimta/users.json"), { type: "file", mode: 0o640, uid: 0, gid });
      await assertFile(R("/var/spool/minimta"), { type: "dir", mode: 0o700, uid, gid });
      await assertFile(R("/usr/local/bin/minimta"), { type: "file", mode: 0o755, uid: 0, gid: 0 });
      await assertFile(R("/usr/local/lib/minimta/deno"), {
        type: "file",
        mode: 0o755,
        uid: 0,
        gid: 0,
      });
      await assertFile(R("/etc/systemd/system/minimta.service"), {
        type: "file",
        mode: 0o644,
        uid: 0,
        gid: 0,
      });
      assert.equal(
        await Deno.readTextFile(R("/etc/systemd/system/minimta.service")),
        await Deno.readTextFile(`${src}/systemd/minimta.service`),
      );
      for (const [from, to] of [["sysusers", "sysusers.d"], ["tmpfiles", "tmpfiles.d"]]) {
        const path = R(`/usr/local/lib/${to}/minimta.conf`);
        await assertFile(path, { type: "file", mode: 0o644, uid: 0, gid: 0 });
        assert.equal(
          await Deno.readTextFile(path),
          await Deno.readTextFile(`${src}/systemd/minimta.${from}`),
        );
      }
      assert.equal(
        await Deno.readTextFile(R("/usr/local/share/doc/minimta/minimta.example.yaml")),
        await Deno.readTextFile(`${src}/minimta.example.yaml`),
      );
      assert.match(
        await Deno.readTextFile(R("/etc/minimta/certs/server.crt")),
        /BEGIN CERTIFICATE/,
      );
      assert.match(await Deno.readTextFile(R("/etc/minimta/certs/server.key")), /PRIVATE KEY/);

      // The launcher: the start task's permissions, exactly, and the source without tests.
      const launcher = await Deno.readTextFile(R("/usr/local/bin/minimta"));
      assert.ok(launcher.startsWith("#!/bin/sh\n"));
      const perms = startPermissions(await Deno.readTextFile(`${src}/deno.json`));
      assert.ok(perms.length >= 4, `start task permissions: ${perms.join(" ")}`);
      assert.ok(
        launcher.includes(`  ${perms.join(" ")} \\\n`),
        "launcher uses the start task's flags",
      );
      assert.match(launcher, /run --cached-only --frozen/);
      assert.ok(await exists(R("/usr/local/lib/minimta/app/main.ts")));
      assert.ok(await exists(R("/usr/local/lib/minimta/deno_dir/npm")));
      const tests = await run("find", [R("/usr/local/lib/minimta/app"), "-name", "*_test.ts"]);
      assert.equal(tests.stdout, "", "no test files installed");

      // The config: production values and the real paths.
      const host = (await run("hostname", ["-f"])).stdout.trim() ||
        (await run("hostname", [])).stdout.trim();
      const configText = await Deno.readTextFile(R("/etc/minimta/config.yaml"));
      const config = parseConfigText(configText, "/etc/minimta/config.yaml");
      assert.equal(config.server.hostname, host);
      assert.equal(config.server.listen_addr, "0.0.0.0:587");
      assert.equal(config.server.listen_tls_addr, "0.0.0.0:465");
      assert.equal(config.queue.dir, "/var/spool/minimta");
      assert.equal(config.auth.users_file, "/etc/minimta/users.json");
      assert.equal(config.tls.cert_file, "/etc/minimta/certs/server.crt");
      assert.equal(config.tls.key_file, "/etc/minimta/certs/server.key");

      // One scrypt-hashed admin; its password was printed once and matches.
      const users = JSON.parse(await Deno.readTextFile(R("/etc/minimta/users.json")));
      assert.equal(users.length, 1);
      const admin = host.includes(".") ? `admin@${host}` : "admin@localhost.localdomain";
      assert.equal(users[0].username, admin);
      assert.match(users[0].password, /^\$scrypt\$/);
      const printed = passwordsIn(first.stdout);
      assert.equal(printed.length, 1, "the password is printed exactly once");
      assert.ok(printed[0].length >= 16);
      assert.ok(await verifyPassword(printed[0], users[0].password), "printed password matches");
      assert.ok(!first.stderr.includes(printed[0]), "password not on stderr");

      // The launcher as DIR's minimta user with a read-only cache and config.
      const version = ok(await runHardened(root, ["version"]), "hardened `minimta version`");
      assert.match(version.stdout, /^minimta \S+ \(deno /);
      const checkDir = await Deno.makeTempDir({ prefix: "minimta-check-" });
      try {
        await Deno.chmod(checkDir, 0o755);
        await Deno.writeTextFile(`${checkDir}/config.yaml`, mappedConfig(configText, root));
        const check = ok(
          await runHardened(root, ["config", "check", "--config", `${checkDir}/config.yaml`]),
          "hardened `minimta config check` (paths mapped into DIR)",
        );
        assert.match(check.stdout, /: OK/);
        assert.equal(
          JSON.parse(check.stdout.slice(check.stdout.indexOf("{"))).server.hostname,
          host,
        );
        const list = ok(
          await runHardened(root, ["user", "list", "--config", `${checkDir}/config.yaml`]),
          "hardened `minimta user list`",
        );
        assert.match(list.stdout, new RegExp(`^${admin.replaceAll(".", "\\.")}\\t.*hashed`, "m"));
      } finally {
        await Deno.remove(checkDir, { recursive: true });
      }

      // --- second run: nothing changes (contents, modes, owners, mtimes, ctimes)
      const before = await listing(root);
      const second = ok(await installSh(src, ["--root", root]), "install.sh (second run)");
      assert.match(second.stdout, /Nothing changed/);
      assert.doesNotMatch(second.stdout, /^\s*\+ /m, "no change lines");
      assert.equal(passwordsIn(second.stdout).length, 0, "no password printed again");
      assert.deepEqual(await listing(root), before, "the second run changed nothing under DIR");

      // --- a changed config (and users) survive a re-run
      const edited = configText.replace("level: info", "level: debug") + "# edited by the admin\n";
      await Deno.writeTextFile(R("/etc/minimta/config.yaml"), edited);
      const usersBefore = await sha256(R("/etc/minimta/users.json"));
      const keyBefore = await sha256(R("/etc/minimta/certs/server.key"));
      const third = ok(await installSh(src, ["--root", root]), "install.sh (after an edit)");
      assert.match(third.stdout, /config \/etc\/minimta\/config\.yaml exists \(kept/);
      assert.match(third.stdout, /Nothing changed/);
      assert.equal(await Deno.readTextFile(R("/etc/minimta/config.yaml")), edited);
      assert.equal(await sha256(R("/etc/minimta/users.json")), usersBefore);
      assert.equal(await sha256(R("/etc/minimta/certs/server.key")), keyBefore);

      // --- --binary over the launcher: the file is installed, the launcher files go
      const fake = await fakeBinary();
      try {
        const bin = ok(
          await installSh(src, ["--root", root, "--binary", fake.path]),
          "install.sh --binary (over a launcher install)",
        );
        assert.match(bin.stdout, /removed \/usr\/local\/lib\/minimta\//);
        assert.equal(await sha256(R("/usr/local/bin/minimta")), await sha256(fake.path));
        assert.ok(!(await exists(R("/usr/local/lib/minimta"))));
        assert.equal(await Deno.readTextFile(R("/etc/minimta/config.yaml")), edited);
        const again = ok(
          await installSh(src, ["--root", root, "--binary", fake.path]),
          "install.sh --binary (again)",
        );
        assert.match(again.stdout, /Nothing changed/);
      } finally {
        await Deno.remove(fake.dir, { recursive: true });
      }

      // --- --uninstall keeps config, keys, users and spool; --purge removes them
      await Deno.mkdir(R("/var/spool/minimta/meta"), { recursive: true });
      await Deno.writeTextFile(R("/var/spool/minimta/meta/queued.json"), "{}");
      const un = ok(
        await installSh(src, ["--root", root, "--uninstall"]),
        "install.sh --uninstall",
      );
      assert.match(un.stdout, /kept \/etc\/minimta/);
      for (
        const gone of [
          "/usr/local/bin/minimta",
          "/usr/local/lib/minimta",
          "/etc/systemd/system/minimta.service",
          "/usr/local/share/doc/minimta",
          "/usr/local/lib/sysusers.d/minimta.conf",
          "/usr/local/lib/tmpfiles.d/minimta.conf",
        ]
      ) {
        assert.ok(!(await exists(R(gone))), `${gone} removed`);
      }
      for (
        const kept of [
          "/etc/minimta/config.yaml",
          "/etc/minimta/users.json",
          "/etc/minimta/certs/server.key",
          "/var/spool/minimta/meta/queued.json",
        ]
      ) {
        assert.ok(await exists(R(kept)), `${kept} kept`);
      }
      assert.equal(await Deno.readTextFile(R("/etc/minimta/config.yaml")), edited);
      assert.ok(await accountField(root, "passwd", "minimta", 2), "user kept");
      const unAgain = ok(
        await installSh(src, ["--root", root, "--uninstall"]),
        "--uninstall again",
      );
      assert.match(unAgain.stdout, /Nothing changed/);

      const purge = ok(await installSh(src, ["--root", root, "--purge"]), "install.sh --purge");
      assert.match(purge.stdout, /1 queued message\(s\) dropped/);
      assert.ok(!(await exists(R("/etc/minimta"))));
      assert.ok(!(await exists(R("/var/spool/minimta"))));
      for (const db of ["passwd", "group", "shadow", "gshadow"]) {
        assert.equal(await accountField(root, db, "minimta", 0), null, `minimta gone from ${db}`);
        assert.equal(
          await accountField(root, db, "taken", 0),
          "taken",
          `other accounts kept in ${db}`,
        );
      }
      assert.equal(await sha256("/etc/passwd"), hostPasswd, "the host's /etc/passwd is untouched");
      note(`install.sh --root round trip took ${((Date.now() - started) / 1000).toFixed(1)} s`);
    } finally {
      await Deno.remove(root, { recursive: true });
      await Deno.remove(src, { recursive: true });
    }
  },
);

/**
 * The same install as on a real machine (no --root): in a private mount
 * namespace where /etc, /usr/local and /var are overlays whose upper layers
 * sit on a tmpfs, and /run/systemd is hidden. install.sh uses the host's
 * real paths, getent and the minimta user by name, runs `config check` on
 * /etc/minimta/config.yaml as that user, and the upper layers show exactly
 * what it wrote. Nothing reaches the host.
 */
const NAMESPACE_SCRIPT = `set -eu
ovl=$1 src=$2
mount -t tmpfs tmpfs "$ovl"
for d in etc usr/local var; do
  n=$(echo "$d" | tr / _)
  mkdir -p "$ovl/$n/upper" "$ovl/$n/work"
  mount -t overlay overlay -o "lowerdir=/$d,upperdir=$ovl/$n/upper,workdir=$ovl/$n/work" "/$d"
done
if [ -d /run/systemd ]; then mount -t tmpfs tmpfs /run/systemd; fi
changes() { (cd "$ovl" && find etc/upper usr_local/upper var/upper -mindepth 1 \\
  -printf '%p %y %m %U:%G %s %T@ %C@\\n' | LC_ALL=C sort); }
echo "=== first"; bash "$src/install.sh" --no-compile 2>&1
echo "=== changes"; changes
echo "=== second"; bash "$src/install.sh" 2>&1
echo "=== changes2"; changes
echo "=== passwd"; getent passwd minimta
# The daemon as the unit runs it (as minimta, /run/minimta made by RuntimeDirectory=),
# on loopback high ports, and sendmail as an unprivileged user who cannot read the config.
mount -t tmpfs -o mode=0755 tmpfs /run
install -d -m 0755 -o minimta -g minimta /run/minimta
sed -i "s/0.0.0.0:587/127.0.0.1:$3/; s/0.0.0.0:465/127.0.0.1:$4/" /etc/minimta/config.yaml
env -i PATH=/usr/bin:/bin HOME=/nonexistent setpriv --reuid=minimta --regid=minimta --clear-groups \
  /usr/local/bin/minimta serve --config /etc/minimta/config.yaml >"$ovl/serve.log" 2>&1 &
daemon=$!
for _ in $(seq 300); do [ -S /run/minimta/submit.sock ] && break; sleep 0.1; done
echo "=== local-sendmail"
stat -c '%a %U %F' /run/minimta/submit.sock
printf 'Subject: nightly job\n\nAll done.\n' | env -i PATH=/usr/bin:/bin HOME=/nonexistent USER=nobody \
  setpriv --reuid=nobody --regid=nogroup --clear-groups /usr/local/bin/minimta sendmail -oi ops@example.net 2>&1 \
  && echo "sendmail: ok"
echo "=== local-queue"
/usr/local/bin/minimta queue list --json --config /etc/minimta/config.yaml 2>&1
kill -TERM "$daemon"; wait "$daemon" || true
echo "=== serve-log"; cat "$ovl/serve.log"
umount /run
echo "=== purge"; bash "$src/install.sh" --purge 2>&1
echo "=== passwd-after"; cat /etc/passwd /etc/group
echo "=== left"; ls -d /etc/minimta /var/spool/minimta /usr/local/bin/minimta /usr/local/lib/minimta 2>&1 || true
echo "=== end"
`;

function sections(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of text.split(/^=== /m).slice(1)) {
    const nl = part.indexOf("\n");
    out[part.slice(0, nl)] = part.slice(nl + 1);
  }
  return out;
}

interopTest(
  "install.sh on the real paths (overlay mount namespace): config check as minimta, idempotent, touches only its files",
  {
    root: true,
    tools: [
      "bash",
      "systemd-sysusers",
      "systemd-tmpfiles",
      "userdel",
      "groupdel",
      "unshare",
      "mount",
      "getent",
      "setpriv",
    ],
  },
  async () => {
    for (const path of ["/etc/minimta", "/usr/local/bin/minimta", "/var/spool/minimta"]) {
      if (await exists(path)) {
        if (REQUIRE_INTEROP) assert.fail(`${path} exists on this host`);
        note(`SKIPPED the overlay test: ${path} exists on this host`);
        return;
      }
    }
    const src = await snapshotSource();
    const ovl = await Deno.makeTempDir({ prefix: "minimta-ovl-" });
    const hostPasswd = await Deno.readTextFile("/etc/passwd");
    const hostGroup = await Deno.readTextFile("/etc/group");
    try {
      const result = await run("unshare", [
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        NAMESPACE_SCRIPT,
        "sh",
        ovl,
        src,
        ...freePorts(2).map(String),
      ], { cwd: "/" });
      const out = sections(result.stdout);
      assert.equal(result.code, 0, `${result.stdout}\n${result.stderr}`);
      assert.ok("end" in out, result.stdout);
      const first = out.first;
      assert.match(first, /created the system user minimta/);
      assert.match(first, /ok: `minimta version` as minimta/);
      assert.match(
        first,
        /ok: `minimta config check --config \/etc\/minimta\/config\.yaml` as minimta: # \/etc\/minimta\/config\.yaml: OK/,
      );
      assert.match(first, /systemd is not running here/);
      assert.equal(passwordsIn(first).length, 1);
      assert.match(
        out.passwd,
        /^minimta:x:\d+:\d+:[^:]*:\/var\/spool\/minimta:\S*(nologin|false)$/m,
      );

      // What install.sh wrote on the system: only its own files and the account databases.
      const touched = out.changes.trim().split("\n")
        .map((l) => l.split(" ")[0].replace(/^(\w+)\/upper\//, "$1/"));
      const allowed = new RegExp(
        "^(etc/(passwd|group|shadow|gshadow)-?|etc/\\.pwd\\.lock|etc/minimta(/.*)?" +
          "|etc/systemd(/system(/minimta\\.service)?)?" +
          "|usr_local/(bin|lib|share)(/minimta(/.*)?|/doc(/minimta(/.*)?)?)?" +
          "|usr_local/lib/(sysusers|tmpfiles)\\.d(/minimta\\.conf)?" +
          "|var/spool(/minimta)?|var/log(/(lastlog|faillog))?)$",
      );
      for (const path of touched) assert.match(path, allowed, `install.sh wrote ${path}`);

      // Any local user's sendmail reaches the daemon through /run/minimta/submit.sock.
      assert.match(out["local-sendmail"], /^666 minimta socket$/m, out["serve-log"]);
      assert.match(out["local-sendmail"], /queued as [0-9A-Z]+/, out["serve-log"]);
      assert.match(out["local-sendmail"], /sendmail: ok/);
      const queued = JSON.parse(out["local-queue"]) as { from: string; recipients: unknown[] }[];
      assert.equal(queued.length, 1, out["local-queue"]);
      assert.match(queued[0].from, /^nobody@/, "the sender is the local user at this host");

      assert.match(out.second, /Nothing changed/);
      assert.equal(out.changes2, out.changes, "the second run wrote nothing");

      assert.match(out.purge, /removed the user minimta/);
      assert.equal(out["passwd-after"], hostPasswd + hostGroup, "purge restores passwd and group");
      assert.equal(
        out.left.split("\n").filter((l) => l && !/No such file/.test(l)).length,
        0,
        out.left,
      );
    } finally {
      await Deno.remove(ovl, { recursive: true });
      await Deno.remove(src, { recursive: true });
    }
    assert.equal(await Deno.readTextFile("/etc/passwd"), hostPasswd, "the host is untouched");
    assert.ok(!(await exists("/etc/minimta")), "the host is untouched");
  },
);

/**
 * A stand-in for a compiled minimta: a shell script that answers `version`,
 * writes a fake certificate for `tls selfsigned` and a users file for
 * `user add` (reading the users_file from the --config install.sh passes),
 * and logs each call with the caller's uid.
 */
async function fakeBinary(): Promise<{ dir: string; path: string; log: string }> {
  const dir = await Deno.makeTempDir({ prefix: "minimta-fake-" });
  await Deno.chmod(dir, 0o755);
  const log = `${dir}/calls.log`;
  await Deno.writeTextFile(log, "");
  await Deno.chmod(log, 0o666);
  const path = `${dir}/minimta-x86_64-unknown-linux-gnu`;
  await Deno.writeTextFile(
    path,
    `#!/bin/sh
# fake compiled minimta (tests/install_test.ts)
echo "$(id -u) $*" >>'${log}'
case "$1" in
version) echo "minimta 0.0.0-fake (compiled)" ;;
tls) printf 'FAKE CERTIFICATE\\n' >"$4"; (umask 077; printf 'FAKE PRIVATE KEY\\n' >"$6") ;;
user)
  read -r password
  for arg in "$@"; do config=$arg; done # --config FILE comes last
  file=$(sed -n 's/^  users_file: "\\(.*\\)"$/\\1/p' "$config")
  printf '[{"username":"%s","password":"$scrypt$fake$%s","email":"%s","active":true}]\\n' "$3" "\${#password}" "$3" >"$file"
  echo "Added user $3" ;;
*) exit 2 ;;
esac
`,
  );
  await Deno.chmod(path, 0o755);
  return { dir, path, log };
}

interopTest(
  "install.sh --root --binary PATH: installs that file, creates config, cert and users with it",
  { root: true, tools: ["bash", "systemd-sysusers", "systemd-tmpfiles", "setpriv"] },
  async () => {
    const src = await snapshotSource();
    const root = await makeRoot();
    const fake = await fakeBinary();
    try {
      const first = ok(
        await installSh(src, [
          "--root",
          root,
          "--binary",
          fake.path,
          "--hostname",
          "mail.test.example",
        ]),
        "install.sh --binary",
      );
      assert.match(first.stdout, /minimta 0\.0\.0-fake/);
      assert.doesNotMatch(first.stdout, /deno compile|launcher/i, "no build from source");
      const { gid } = await ids(root);
      await assertFile(`${root}/usr/local/bin/minimta`, {
        type: "file",
        mode: 0o755,
        uid: 0,
        gid: 0,
      });
      assert.equal(await sha256(`${root}/usr/local/bin/minimta`), await sha256(fake.path));
      assert.ok(!(await exists(`${root}/usr/local/lib/minimta`)), "no launcher files");
      await assertFile(`${root}/etc/minimta/certs/server.key`, {
        type: "file",
        mode: 0o640,
        uid: 0,
        gid,
      });
      await assertFile(`${root}/etc/minimta/users.json`, {
        type: "file",
        mode: 0o640,
        uid: 0,
        gid,
      });
      const config = parseConfigText(
        await Deno.readTextFile(`${root}/etc/minimta/config.yaml`),
        "config.yaml",
      );
      assert.equal(config.server.hostname, "mail.test.example");
      const users = JSON.parse(await Deno.readTextFile(`${root}/etc/minimta/users.json`));
      assert.equal(users[0].username, "admin@mail.test.example");
      const printed = passwordsIn(first.stdout);
      assert.equal(printed.length, 1);
      assert.equal(
        users[0].password,
        `$scrypt$fake$${printed[0].length}`,
        "password went via stdin",
      );
      const calls = await Deno.readTextFile(fake.log);
      assert.match(calls, /^0 tls selfsigned --cert \S+\/etc\/minimta\/certs\/server\.crt --key /m);
      assert.match(
        calls,
        /^0 user add admin@mail\.test\.example --admin --password-stdin --config /m,
      );
      const { uid } = await ids(root);
      assert.match(
        calls,
        new RegExp(`^${uid} version$`, "m"),
        "smoke test ran as DIR's minimta uid",
      );
      assert.ok(!calls.includes(printed[0]), "the password is not on a command line");

      const before = await listing(root);
      const second = ok(
        await installSh(src, [
          "--root",
          root,
          "--binary",
          fake.path,
          "--hostname",
          "mail.test.example",
        ]),
        "install.sh --binary (second run)",
      );
      assert.match(second.stdout, /Nothing changed/);
      assert.deepEqual(await listing(root), before);
    } finally {
      await Deno.remove(root, { recursive: true });
      await Deno.remove(src, { recursive: true });
      await Deno.remove(fake.dir, { recursive: true });
    }
  },
);

Deno.test("minimta.example.yaml: every key, each at its default, and valid", async () => {
  const text = await Deno.readTextFile(`${REPO}/minimta.example.yaml`);
  const raw = parseYaml(text) as Record<string, unknown>;
  const keys = (value: unknown, path = ""): string[] =>
    value !== null && typeof value === "object" && !Array.isArray(value)
      ? Object.entries(value).flatMap(([k, v]) => [`${path}${k}`, ...keys(v, `${path}${k}.`)])
      : [];
  assert.deepEqual(
    keys(raw).sort(),
    keys(DEFAULTS).sort(),
    "the example has exactly the known keys",
  );
  const parsed = parseConfigText(text, "minimta.example.yaml");
  const expected = structuredClone(DEFAULTS);
  expected.server.hostname = "mail.example.com";
  assert.deepEqual(JSON.parse(JSON.stringify(parsed)), JSON.parse(JSON.stringify(expected)));
});

interopTest(
  "systemd unit: systemd-analyze verify (ExecStart pointed at a stand-in executable)",
  { root: true, tools: ["systemd-analyze"] },
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "minimta-unit-" });
    try {
      const unit = await Deno.readTextFile(`${REPO}/systemd/minimta.service`);
      assert.match(
        unit,
        /^ExecStart=\/usr\/local\/bin\/minimta serve --config \/etc\/minimta\/config\.yaml$/m,
      );
      await Deno.writeTextFile(`${dir}/minimta`, "#!/bin/sh\nexit 0\n", { mode: 0o755 });
      await Deno.chmod(`${dir}/minimta`, 0o755);
      await Deno.writeTextFile(
        `${dir}/minimta.service`,
        unit.replaceAll("/usr/local/bin/minimta", `${dir}/minimta`),
      );
      const result = await run("systemd-analyze", ["verify", `${dir}/minimta.service`]);
      assert.equal(result.code, 0, result.stderr);
      assert.equal(result.stderr.trim(), "", "no warnings");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

interopTest(
  "systemd unit: systemd-analyze security exposure <= 2.5",
  { root: true, tools: ["systemd-analyze"] },
  async () => {
    const result = ok(
      await run("systemd-analyze", [
        "security",
        "--offline=true",
        `${REPO}/systemd/minimta.service`,
      ]),
      "systemd-analyze security",
    );
    const match = /Overall exposure level for minimta\.service: (\d+(?:\.\d+)?)/.exec(
      result.stdout,
    );
    assert.ok(match, result.stdout.slice(-500));
    const score = Number(match[1]);
    note(`systemd-analyze security exposure of minimta.service: ${score}`);
    assert.ok(score <= 2.5, `exposure ${score} > 2.5`);
  },
);
