import assert from "node:assert/strict";
import {
  Authenticator,
  AuthThrottle,
  hashPassword,
  replaceFile,
  senderAllowed,
  type User,
  verifyPassword,
  writeUsersFile,
} from "./mod.ts";
import { formatUsers, parseJsonUsers, parseTxtUsers, UsersFileError } from "./users.ts";
import { DEFAULTS } from "../config/mod.ts";

/** The throttle settings of the default config; each test overrides what it checks. */
const throttleDefaults = {
  failureDelayMs: DEFAULTS.auth.failure_delay,
  maxPerConnection: DEFAULTS.auth.max_failures_per_connection,
  maxPerIp: DEFAULTS.auth.max_failures_per_ip,
  windowMs: DEFAULTS.auth.failure_window,
};

const alice: User = {
  username: "alice",
  password: "",
  email: "alice@ours.test",
  active: true,
  allowed_senders: null,
  admin: false,
};

Deno.test("scrypt hashes are PHC strings that verify only the right password", async () => {
  const hash = await hashPassword("s3cret");
  assert.match(hash, /^\$scrypt\$ln=15,r=8,p=1\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$/);
  assert.equal(await verifyPassword("s3cret", hash), true);
  assert.equal(await verifyPassword("s3cret ", hash), false);
  assert.notEqual(await hashPassword("s3cret"), hash, "salted");
});

Deno.test("plaintext passwords from old users files still verify", async () => {
  assert.equal(await verifyPassword("admin123", "admin123"), true);
  assert.equal(await verifyPassword("admin12", "admin123"), false);
});

Deno.test("users.json keeps the original format and rejects unknown keys", () => {
  const users = parseJsonUsers(
    '[{"username":"a","password":"p","email":"a@x.test","active":false,"allowed_senders":["@y.test"]}]',
    "u.json",
  );
  assert.equal(users[0].active, false);
  assert.deepEqual(users[0].allowed_senders, ["@y.test"]);
  assert.deepEqual(parseJsonUsers(formatUsers(users, "json"), "u.json"), users);
  assert.throws(
    () => parseJsonUsers('[{"username":"a","password":"p","rol":"x"}]', "u.json"),
    /\[0\]\.rol: unknown key/,
  );
  assert.throws(
    () =>
      parseJsonUsers('[{"username":"a","password":"p"},{"username":"A","password":"q"}]', "u.json"),
    UsersFileError,
  );
});

Deno.test("users.txt reads user:password lines and comments", () => {
  const users = parseTxtUsers("# staff\nbob@ours.test:pw:with:colons\n\ncarol:x\n", "u.txt");
  assert.deepEqual(users.map((u) => [u.username, u.password, u.email]), [[
    "bob@ours.test",
    "pw:with:colons",
    "bob@ours.test",
  ], ["carol", "x", null]]);
  assert.throws(() => parseTxtUsers("nocolon\n", "u.txt"), /line 1/);
});

Deno.test("senders: own address and domain by default; sub-addresses; nothing else", () => {
  assert.equal(senderAllowed(alice, "alice@ours.test"), true);
  assert.equal(senderAllowed(alice, "ALICE@OURS.TEST"), true);
  assert.equal(senderAllowed(alice, "news@ours.test"), true, "the email's domain");
  assert.equal(senderAllowed(alice, "ceo@other.test"), false);
  assert.equal(senderAllowed(alice, "alice@sub.ours.test"), false);
  assert.equal(senderAllowed(alice, ""), false);
  const strict = { ...alice, allowed_senders: ["alice@ours.test"] };
  assert.equal(senderAllowed(strict, "alice+list@ours.test"), true);
  assert.equal(senderAllowed(strict, "bob@ours.test"), false);
  assert.equal(senderAllowed(alice, "alice@оurs.test"), false, "Cyrillic о homograph");
});

Deno.test("authenticator refuses inactive users and caches successful logins", async () => {
  let now = 0;
  const auth = new Authenticator([{ ...alice, password: await hashPassword("pw") }, {
    ...alice,
    username: "old",
    password: "pw",
    active: false,
  }], { now: () => now, cacheTtlMs: 1000 });
  assert.deepEqual(await auth.verify("nobody", "pw"), { ok: false, reason: "unknown_user" });
  assert.deepEqual(await auth.verify("old", "pw"), { ok: false, reason: "inactive" });
  assert.equal((await auth.verify("alice", "bad")).ok, false);
  const t0 = performance.now();
  assert.equal((await auth.verify("Alice", "pw")).ok, true);
  const slow = performance.now() - t0;
  const t1 = performance.now();
  assert.equal((await auth.verify("alice", "pw")).ok, true);
  assert.ok(performance.now() - t1 < slow / 4, "second login served from the cache");
  assert.equal(
    (await auth.verify("alice", "bad")).ok,
    false,
    "cache never accepts another password",
  );
  now = 2000;
  assert.equal((await auth.verify("alice", "pw")).ok, true);
});

Deno.test("throttle delays failures more and more, closes the connection, then blocks the IP", () => {
  const t = new AuthThrottle({
    ...throttleDefaults,
    failureDelayMs: 100,
    maxPerConnection: 3,
    maxPerIp: 5,
    now: () => 0,
  });
  const v = [1, 2, 3].map((n) => t.failure("192.0.2.1", "alice", n));
  assert.deepEqual(v.map((x) => x.delayMs), [100, 200, 400]);
  assert.deepEqual(v.map((x) => x.disconnect), [false, false, true]);
  t.failure("192.0.2.1", "bob", 1);
  assert.equal(t.blocked("192.0.2.1"), false);
  t.failure("192.0.2.1", "carol", 1);
  assert.equal(t.blocked("192.0.2.1"), true);
  assert.equal(t.blocked("192.0.2.9"), false, "other clients unaffected");
});

Deno.test("throttle counts an attempt before its check: parallel guesses stop at the limit", () => {
  const t = new AuthThrottle({ ...throttleDefaults, maxPerIp: 3, now: () => 0 });
  const ip = "192.0.2.1";
  const held = ["g1", "g2", "g3"].map((k) => t.reserve(ip, k));
  assert.ok(held.every((a) => a !== null), "the first three are admitted");
  assert.equal(t.reserve(ip, "g4"), null, "the fourth, still unanswered, is refused");
  assert.ok(t.reserve(ip, "g1"), "the same credentials as a check in flight share its slot");
  held[0]!.succeeded("alice");
  held[0]!.succeeded("alice");
  assert.equal(t.blocked(ip), false, "a success gives its slot back, once");
  held[1]!.failed("bob", 1);
  held[2]!.failed("bob", 1);
  assert.ok(t.reserve(ip, "g5"), "two failures and one slot left");
  assert.equal(t.blocked(ip), true);
  assert.equal(t.reserve(ip, "g1"), null, "nothing in flight to share any more");
});

Deno.test("editing users.txt keeps comments, blank lines and order", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/users.txt`;
    await Deno.writeTextFile(path, "# cron jobs\nbob@ours.test:old\n\n# apps\ncarol:x\n", {
      mode: 0o640,
    });
    const users = parseTxtUsers(await Deno.readTextFile(path), path);
    users[0] = { ...users[0], password: "new" };
    await writeUsersFile(path, [...users.slice(0, 1), {
      ...users[0],
      username: "dave",
      password: "d",
    }]);
    assert.equal(
      await Deno.readTextFile(path),
      "# cron jobs\nbob@ours.test:new\n\n# apps\ndave:d\n",
    );
    assert.equal((await Deno.stat(path)).mode! & 0o777, 0o640, "mode kept");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("replaceFile() swaps the text in whole, keeps an old file's mode and gives a new one 0600", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/minimta.yaml`;
    await replaceFile(path, "a: 1\n");
    assert.equal(Deno.statSync(path).mode! & 0o777, 0o600);
    await Deno.chmod(path, 0o640);
    await replaceFile(path, "a: 2\n");
    assert.equal(await Deno.readTextFile(path), "a: 2\n");
    assert.equal(Deno.statSync(path).mode! & 0o777, 0o640);
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["minimta.yaml"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
