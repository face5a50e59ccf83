/**
 * Intake workers (`server.workers: 2`): the SMTP intake runs on two event
 * loops sharing the ports, and the daemon still acts as one server: mail
 * from many connections is all queued and delivered, limits and the AUTH
 * throttle count across workers, SIGHUP reaches every worker, SIGTERM ends
 * them all, and a worker that dies is restarted without losing mail it
 * acknowledged; the suppression list and per-user sending limits are the
 * main thread's one list and one count on every connection, and every
 * worker signs with the main thread's DKIM key (docs/testing.md W1–W8).
 */
import assert from "node:assert/strict";
import { hashPassword } from "../src/auth/mod.ts";
import { type ControlRequest, controlRequest } from "../src/cli/control.ts";
import {
  ALICE,
  freePorts,
  Mta,
  plainBlob,
  queuedId,
  requireTool,
  type SmtpDriver,
  waitFor,
} from "./_harness.ts";
import { cliOk } from "./_cli.ts";
import { deliveryConfig, isGone, submit } from "./_delivery.ts";
import { FakeDns, mxZone } from "./_dns.ts";
import { text } from "./_mime.ts";
import { FakeMx, loopbackNet } from "./_mx.ts";

const needs = requireTool("python3:dns");
const WORKERS = { workers: 2 };

async function withMx<T>(
  fn: (ctx: { dns: FakeDns; mx: FakeMx; port: number }) => Promise<T>,
): Promise<T> {
  const net = loopbackNet();
  const [port] = freePorts(1);
  await using dns = await FakeDns.start(mxZone("dest.test", "mx1.dest.test", net(2)));
  await using mx = await FakeMx.start(net(2), port, { name: "mx1.dest.test" });
  return await fn({ dns, mx, port });
}

/** Queue ids the MX received (from the Received: header the intake adds). */
async function deliveredIds(mx: FakeMx): Promise<Set<string>> {
  const ids = new Set<string>();
  for (const tx of await mx.accepted()) {
    for (const m of text(tx.data).matchAll(/\bid ([0-9A-Z]{16})\b/g)) ids.add(m[1]);
  }
  return ids;
}

/** Submits `count` messages, `parallel` connections at a time, one message per connection. */
async function submitMany(mta: Mta, count: number, parallel: number): Promise<string[]> {
  const ids: string[] = [];
  let next = 0;
  const client = async () => {
    while (next < count) {
      next++;
      ids.push(await submit(mta, { to: ["bob@dest.test"] }));
    }
  };
  await Promise.all(Array.from({ length: parallel }, client));
  return ids;
}

async function login(mta: Mta, who: { user: string; pass: string }): Promise<string> {
  using smtp = await mta.authedOrNot();
  return (await smtp.cmd(`AUTH PLAIN ${plainBlob("", who.user, who.pass)}`)).raw;
}

async function loginCode(mta: Mta, who: { user: string; pass: string }): Promise<number> {
  return Number((await login(mta, who)).slice(0, 3));
}

Deno.test({
  name: "W1: with two workers, mail over many connections is all queued and delivered",
  ignore: needs,
  async fn() {
    await withMx(async ({ dns, mx, port }) => {
      await using mta = await Mta.start({
        config: { server: WORKERS, delivery: deliveryConfig({ dns, port }) },
      });
      await waitFor("both workers", () => /Intake on 2 worker threads/.test(mta.stdout));
      const ids = await submitMany(mta, 40, 8);
      assert.equal(new Set(ids).size, 40);
      await waitFor("every message to reach the MX", async () => {
        const got = await deliveredIds(mx);
        return ids.every((id) => got.has(id));
      }, 60_000);
      for (const id of ids) await waitFor(`${id} to leave the queue`, () => isGone(mta, id));
      // The workers' events reach the main thread's mail log and metrics.
      const queued = mta.logs().filter((e) => e.event === "queued").map((e) => e.queue_id);
      assert.deepEqual(new Set(queued), new Set(ids));
      assert.equal(await mta.stop(), 0);
    });
  },
});

Deno.test({
  name: "W2: a worker that dies is restarted; every message that got 250 is delivered",
  ignore: needs,
  async fn() {
    await withMx(async ({ dns, mx, port }) => {
      await using mta = await Mta.start({
        config: { server: WORKERS, delivery: deliveryConfig({ dns, port }) },
        env: { MINIMTA_TEST_HOOKS: "1" },
      });
      const acknowledged: string[] = [];
      let failures = 0;
      let stop = false;
      // Clients keep submitting; one whose connection the dying worker drops tries again.
      const client = async () => {
        while (!stop) {
          try {
            acknowledged.push(await submit(mta, { to: ["bob@dest.test"] }));
          } catch {
            failures++;
          }
        }
      };
      const clients = Array.from({ length: 6 }, client);
      await waitFor("some mail to be queued", () => acknowledged.length >= 10);
      const crash = await controlRequest(mta.spoolDir, {
        command: "test-crash-worker" as ControlRequest["command"],
      });
      assert.equal(crash?.ok, true, JSON.stringify(crash));
      await waitFor(
        "the worker to be restarted",
        () => /Intake worker 1 restarted/.test(mta.stdout),
      );
      const atRestart = acknowledged.length;
      await waitFor(
        "mail to be queued after the restart",
        () => acknowledged.length >= atRestart + 10,
      );
      stop = true;
      await Promise.all(clients);
      assert.match(mta.stdout, /Intake worker 1 stopped: .*crash requested by a test/);
      // And it still takes mail over fresh connections, on both workers.
      acknowledged.push(...await submitMany(mta, 10, 5));
      await waitFor(
        "every acknowledged message to reach the MX",
        async () => {
          const got = await deliveredIds(mx);
          return acknowledged.every((id) => got.has(id));
        },
        90_000,
        async () => {
          const got = await deliveredIds(mx);
          return `missing: ${acknowledged.filter((id) => !got.has(id)).join(" ")}`;
        },
      );
      assert.equal(await mta.stop(), 0);
    });
  },
});

Deno.test("W3: SIGHUP reaches every worker: a new user logs in on any connection", async () => {
  await using mta = await Mta.start({ config: { server: WORKERS } });
  const dave = { user: "dave@ours.test", pass: "dave-Secret-77qq" };
  assert.equal(await loginCode(mta, dave), 535);
  const users = JSON.parse(await Deno.readTextFile(`${mta.dir}/users.json`));
  users.push({
    username: dave.user,
    password: await hashPassword(dave.pass),
    email: dave.user,
    active: true,
  });
  await Deno.writeTextFile(`${mta.dir}/users.json`, JSON.stringify(users));
  Deno.kill(mta.pid, "SIGHUP");
  await waitFor("the reload", () => /Reloaded \d+ users/.test(mta.stdout));
  // Connections are spread over both workers by the kernel; each must know dave.
  const codes = await Promise.all(Array.from({ length: 12 }, () => loginCode(mta, dave)));
  assert.deepEqual(codes, Array(12).fill(235));
  assert.equal(await mta.stop(), 0);
});

Deno.test("W4: SIGTERM ends every worker: idle sessions get 421, a message in progress its 250, exit 0", async () => {
  await using mta = await Mta.start({ config: { server: WORKERS } });
  const idle = await Promise.all(Array.from({ length: 4 }, () => mta.authed()));
  const busy = await mta.authed();
  await busy.cmd(`MAIL FROM:<${ALICE.user}>`, 250);
  await busy.cmd("RCPT TO:<bob@dest.test>", 250);
  await busy.cmd("DATA", 354);
  const stopped = mta.stop();
  for (const smtp of idle) {
    const reply = await smtp.reply();
    assert.equal(reply.code, 421);
    assert.match(reply.raw, /4\.3\.2/);
    smtp.close();
  }
  await busy.write(`From: ${ALICE.user}\r\nTo: bob@dest.test\r\nSubject: last\r\n\r\nbye\r\n.\r\n`);
  const done = await busy.expect(250);
  const closing = await busy.reply();
  assert.equal(closing.code, 421);
  busy.close();
  assert.equal(await stopped, 0);
  assert.ok(await Deno.stat(mta.emlPath(queuedId(done.raw))), "the last message is in the spool");
});

Deno.test("W5: the per-IP AUTH failure limit counts across workers", async () => {
  await using mta = await Mta.start({
    config: {
      server: WORKERS,
      auth: { max_failures_per_ip: 10, max_failures_per_connection: 2, failure_delay: "10ms" },
    },
  });
  const wrong = { user: ALICE.user, pass: "not-the-password" };
  // Ten connections, one failure each, spread by the kernel over both workers.
  for (let i = 0; i < 10; i++) {
    const reply = await login(mta, { ...wrong, pass: `${wrong.pass}-${i}` });
    // The tenth failure uses up the address's allowance: that connection is closed.
    assert.match(reply, i < 9 ? /^535 / : /^421 .*closing connection/, `failure ${i + 1}`);
  }
  const replies = await Promise.all(Array.from({ length: 6 }, () => login(mta, ALICE)));
  for (const reply of replies) {
    assert.match(
      reply,
      /^421 .*from your address/,
      "the eleventh attempt is refused on every worker",
    );
  }
  assert.equal(await mta.stop(), 0);
});

Deno.test("W6: the per-IP connection limit counts across workers", async () => {
  await using mta = await Mta.start({
    config: { server: { ...WORKERS, max_connections_per_ip: 4 } },
  });
  // The readiness probe's connections are released by message from the
  // worker that had them; wait until the address's count is back to zero.
  const open = await fourAdmitted(mta);
  for (let i = 0; i < 6; i++) {
    using extra = await mta.connect();
    const reply = await extra.reply();
    assert.equal(reply.code, 421, `connection ${i + 5}: ${reply.raw}`);
  }
  for (const smtp of open) smtp.close();
  assert.equal(await mta.stop(), 0);
});

/**
 * Four connections that each got their 220. Until the workers have
 * reported the end of the start-up probe's connections, a fourth may still
 * be refused; then all are closed and tried again, within 5 s.
 */
async function fourAdmitted(mta: Mta): Promise<SmtpDriver[]> {
  const deadline = Date.now() + 5_000;
  for (;;) {
    const open: SmtpDriver[] = [];
    let refused = false;
    for (let i = 0; i < 4 && !refused; i++) {
      const smtp = await mta.connect();
      const reply = await smtp.reply();
      if (reply.code === 220) open.push(smtp);
      else {
        refused = true;
        smtp.close();
      }
    }
    if (!refused) return open;
    for (const smtp of open) smtp.close();
    if (Date.now() > deadline) throw new Error("4 connections were not admitted within 5 s");
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Connections opened at once: the kernel spreads them over both workers (SO_REUSEPORT). */
const SPREAD = 8;

/** The RCPT reply for `address` on each of `SPREAD` authenticated connections open at once. */
async function rcptEverywhere(mta: Mta, address: string): Promise<string[]> {
  const open = await Promise.all(Array.from({ length: SPREAD }, () => mta.authed()));
  try {
    return await Promise.all(open.map(async (smtp) => {
      await smtp.cmd(`MAIL FROM:<${ALICE.user}>`, 250);
      const reply = await smtp.cmd(`RCPT TO:<${address}>`);
      await smtp.cmd("RSET", 250);
      return reply.raw;
    }));
  } finally {
    for (const smtp of open) smtp.close();
  }
}

Deno.test({
  name:
    "W7: with two workers, a suppressed address is refused and a per_hour limit holds on every connection",
  ignore: needs,
  async fn() {
    const net = loopbackNet();
    const [port] = freePorts(1);
    await using dns = await FakeDns.start({
      "dest.test": { MX: [[10, "mx.dest.test"]] },
      "ours.test": { MX: [[10, "mx.dest.test"]] }, // the DSN to alice is delivered too
      "mx.dest.test": { A: [net(2)] },
    });
    await using _mx = await FakeMx.start(net(2), port, {
      name: "mx.dest.test",
      rcpt: { "gone@dest.test": "550 5.1.1 <gone@dest.test>: No such user here" },
    });
    await using mta = await Mta.start({
      noStart: true,
      config: {
        server: WORKERS,
        delivery: deliveryConfig({ dns, port, retry_schedule: ["1h"] }),
      },
    });
    await Deno.writeTextFile(
      `${mta.dir}/users.json`,
      JSON.stringify([{
        username: ALICE.user,
        password: await hashPassword(ALICE.pass),
        email: ALICE.user,
        active: true,
        limits: { per_hour: 3, per_day: 1000 },
      }]),
      { mode: 0o600 },
    );
    await mta.launch();

    // A real hard bounce, found by the delivery engine in the main thread.
    const gone = await submit(mta, { to: ["gone@dest.test"] });
    await waitFor("the bounce", () => isGone(mta, gone));
    await waitFor(
      "the suppression",
      async () => JSON.parse(await cliOk(mta, ["suppress", "list", "--json"])).length === 1,
    );
    for (const raw of await rcptEverywhere(mta, "gone@dest.test")) {
      assert.match(raw, /^550 5\.1\.1 <gone@dest\.test>: address suppressed after a hard bounce/);
    }
    // Edits while running are seen by every worker at once.
    await cliOk(mta, ["suppress", "remove", "gone@dest.test"]);
    for (const raw of await rcptEverywhere(mta, "gone@dest.test")) assert.match(raw, /^250 /);
    await cliOk(mta, ["suppress", "add", "ann@dest.test"]);
    for (const raw of await rcptEverywhere(mta, "ann@dest.test")) assert.match(raw, /^550 /);

    // per_hour 3, and one was sent: two more messages, on whichever connections, then 452.
    const open = await Promise.all(Array.from({ length: SPREAD }, () => mta.authed()));
    const send = async (smtp: SmtpDriver, n: number): Promise<string> => {
      await smtp.cmd(`MAIL FROM:<${ALICE.user}>`, 250);
      const rcpt = await smtp.cmd(`RCPT TO:<r${n}@dest.test>`);
      if (rcpt.code !== 250) return rcpt.raw;
      await smtp.cmd("DATA", 354);
      await smtp.write(`From: <${ALICE.user}>\r\nSubject: ${n}\r\n\r\nHi.\r\n.\r\n`);
      return (await smtp.reply()).raw;
    };
    const replies: string[] = [];
    try {
      for (const [n, smtp] of open.entries()) replies.push(await send(smtp, n));
    } finally {
      for (const smtp of open) smtp.close();
    }
    assert.equal(replies.filter((r) => r.startsWith("250 ")).length, 2, replies.join("\n"));
    for (const raw of replies.slice(2)) {
      assert.match(raw, /^452 4\.7\.1 sending limit of 3 per hour reached/);
    }
    assert.equal(await mta.stop(), 0);
  },
});

Deno.test({
  name:
    "W8: with two workers, every connection signs with the main thread's DKIM key, before and after a rotation switch",
  ignore: needs,
  async fn() {
    // Nothing listens on the MX: every message stays deferred in the spool, to be read there.
    const [port] = freePorts(1);
    const mxDomain = mxZone("dest.test", "mx1.dest.test", loopbackNet()(2));
    await using dns = await FakeDns.start(mxDomain);
    await using mta = await Mta.start({
      dkim: ["rsa"],
      noStart: true,
      config: {
        server: WORKERS,
        delivery: deliveryConfig({ dns, port, retry_schedule: ["1h"] }),
      },
    });
    const old = mta.dkim[0];
    const published = { ...mxDomain, "srsa._domainkey.ours.test": { TXT: [old.dnsTxt] } };
    await dns.setZone(published);
    const config = await mta.config();
    await Deno.writeTextFile(
      mta.configPath,
      JSON.stringify({ ...config, dkim_rotation_check: "1s" }, null, 2),
    );
    await mta.launch();
    /** The s= of the stored messages, submitted over `SPREAD` connections at once. */
    let sent = 0;
    const selectors = async () => {
      const ids = await Promise.all(
        Array.from({ length: SPREAD }, () => submit(mta, { to: [`bob${++sent}@dest.test`] })),
      );
      return await Promise.all(ids.map(async (id) => {
        const stored = text(await mta.readEml(id));
        return /^DKIM-Signature:[^]*?\bs=([^;\s]+)/m.exec(stored)?.[1];
      }));
    };

    // `dkim rotate` edits the dkim entries and reloads the daemon (SIGHUP path): still the old key.
    const out = await cliOk(mta, ["dkim", "rotate", "--domain", "ours.test"]);
    const record = /^(\S+)\._domainkey\.ours\.test\. IN TXT \(([^)]*)\)/m.exec(out);
    assert.ok(record, out);
    const next = record[1];
    assert.deepEqual(await selectors(), Array(SPREAD).fill("srsa"));

    // The new record appears in DNS: the main thread switches, and so does every worker.
    await dns.setZone({
      ...published,
      [`${next}._domainkey.ours.test`]: {
        TXT: [[...record[2].matchAll(/"([^"]*)"/g)].map((m) => m[1]).join("")],
      },
    });
    await waitFor("the daemon to switch", () => mta.stdout.includes(`signs with selector ${next}`));
    assert.deepEqual(await selectors(), Array(SPREAD).fill(next));
    assert.equal(await mta.stop(), 0);
  },
});

Deno.test({
  name:
    "W9: by default (server.workers: auto) a daemon that signs runs one intake worker per CPU (at most 4), one that does not runs none",
  async fn() {
    const cpus = Math.min(navigator.hardwareConcurrency || 1, 4);
    {
      await using mta = await Mta.start({ dkim: ["rsa"] });
      const id = await submit(mta, { to: ["bob@dest.test"] });
      assert.match(text(await mta.readEml(id)), /^DKIM-Signature:/m);
      if (cpus > 1) {
        assert.match(mta.stdout, new RegExp(`Intake on ${cpus} worker threads`));
      } else assert.doesNotMatch(mta.stdout, /worker threads/);
      assert.equal(await mta.stop(), 0);
    }
    {
      await using mta = await Mta.start();
      await submit(mta, { to: ["bob@dest.test"] });
      assert.doesNotMatch(
        mta.stdout,
        /worker threads/,
        "no DKIM key: everything in the main thread",
      );
      assert.equal(await mta.stop(), 0);
    }
  },
});
