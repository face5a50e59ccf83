/**
 * The suppression list (issue 12): a recipient whose address does not exist
 * (550 5.1.1 from a real receiving server, tests/fakes/fake_mx.py) is put on
 * the list in the spool, with the remote reply and the sender's domain; the
 * next submission to it is refused at RCPT with 550 5.1.1 so the submitting
 * application learns at once; a policy refusal (5.7.1) never suppresses;
 * the list survives kill -9, is edited with `minimta suppress …` whether the
 * daemon runs or not, expires after `suppression.ttl`, shows on the status
 * page, and each addition is a signed `suppressed` webhook event.
 */
import assert from "node:assert/strict";
import { ALICE, freePorts, Mta, requireTool, waitFor } from "./_harness.ts";
import { assertCliError, cli, cliOk } from "./_cli.ts";
import { ADMIN_TOKEN, hmacHex, startWebMta, WebClient, WebhookReceiver } from "./_http.ts";
import { deliveryConfig, isGone, submit } from "./_delivery.ts";
import { FakeDns } from "./_dns.ts";
import { FakeMx, loopbackNet } from "./_mx.ts";

const needs = requireTool("python3:dns");
const SECRET = "whsec-" + crypto.randomUUID();

interface Entry {
  address: string;
  added_at: string;
  expires_at: string;
  source: string;
  reply: string;
  status: string | null;
  sender_domain: string | null;
  queue_id: string | null;
}

async function suppressed(mta: Mta): Promise<Entry[]> {
  return JSON.parse(await cliOk(mta, ["suppress", "list", "--json"]));
}

/** The reply to RCPT TO:<address> in a fresh authenticated transaction. */
async function rcptReply(mta: Mta, address: string): Promise<{ code: number; raw: string }> {
  const smtp = await mta.authed();
  try {
    await smtp.cmd(`MAIL FROM:<${ALICE.user}>`, 250);
    const reply = await smtp.cmd(`RCPT TO:<${address}>`);
    await smtp.cmd("QUIT");
    return reply;
  } finally {
    smtp.close();
  }
}

Deno.test({
  name:
    "suppression: 550 5.1.1 suppresses (kept across kill -9, webhook, status page), 5.7.1 does not",
  ignore: needs,
  async fn() {
    const net = loopbackNet();
    const [port] = freePorts(1);
    await using dns = await FakeDns.start({
      "dest.test": { MX: [[10, "mx.dest.test"]] },
      "ours.test": { MX: [[10, "mx.dest.test"]] }, // the DSNs to alice are delivered too
      "mx.dest.test": { A: [net(2)] },
    });
    await using _mx = await FakeMx.start(net(2), port, {
      name: "mx.dest.test",
      rcpt: {
        "gone@dest.test": "550 5.1.1 <gone@dest.test>: No such user here",
        "policy@dest.test": "550 5.7.1 Message rejected for policy reasons",
      },
    });
    await using hooks = WebhookReceiver.start();
    await using mta = await startWebMta({
      config: { delivery: deliveryConfig({ dns, port, retry_schedule: ["1h"] }) },
      webhooks: [{ url: hooks.url, events: ["suppressed"], secret: SECRET }],
    });
    const gone = await submit(mta, { to: ["gone@dest.test"] });
    const policy = await submit(mta, { to: ["policy@dest.test"] });
    await waitFor(
      "both messages to bounce",
      async () => (await isGone(mta, gone)) && (await isGone(mta, policy)),
    );

    const [entry, ...more] = await waitFor("the suppression", async () => {
      const list = await suppressed(mta);
      return list.length > 0 && list;
    });
    assert.deepEqual(more, [], `only the 5.1.1 address: ${JSON.stringify(more)}`);
    assert.equal(entry.address, "gone@dest.test");
    assert.equal(entry.source, "bounce");
    assert.equal(entry.status, "5.1.1");
    assert.equal(entry.sender_domain, "ours.test");
    assert.equal(entry.queue_id, gone);
    assert.match(entry.reply, /550 5\.1\.1 <gone@dest\.test>: No such user here/);
    assert.match(entry.reply, new RegExp(`mx\\.dest\\.test\\[${net(2).replaceAll(".", "\\.")}\\]`));
    assert.ok(Date.parse(entry.expires_at) - Date.parse(entry.added_at) === 30 * 86_400_000);

    // The next submission learns at RCPT, whatever the case of the domain.
    const refused = await rcptReply(mta, "gone@DEST.Test");
    assert.equal(refused.code, 550);
    assert.match(
      refused.raw,
      /^550 5\.1\.1 <gone@DEST\.Test>: address suppressed after a hard bounce on \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(.*550 5\.1\.1 <gone@dest\.test>: No such user here\)$/,
    );
    assert.equal((await rcptReply(mta, "policy@dest.test")).code, 250, "5.7.1 never suppresses");
    assert.equal((await rcptReply(mta, "Gone@dest.test")).code, 250, "local part as given");

    // One signed `suppressed` event at a real HTTP receiver, nothing else (only that was asked for).
    const [post] = await waitFor(
      "the suppressed webhook",
      () => hooks.received.length > 0 && hooks.received,
    );
    assert.equal(post.headers["x-minimta-event"], "suppressed");
    assert.equal(post.headers["x-minimta-signature"], `sha256=${await hmacHex(SECRET, post.body)}`);
    const event = JSON.parse(post.body);
    assert.equal(event.event, "suppressed");
    assert.equal(event.recipient, "gone@dest.test");
    assert.equal(event.queue_id, gone);
    assert.equal(event.sender, ALICE.user);
    assert.equal(event.reply.code, 550);
    assert.equal(event.reply.status, "5.1.1");
    assert.equal(hooks.received.length, 1);

    // The status page lists and searches it.
    const web = await WebClient.forMta(mta);
    assert.equal((await web.login("token", ADMIN_TOKEN)).status, 303);
    const page = await web.page("/suppressions?q=dest.test");
    assert.equal(page.status, 200);
    assert.match(page.body, /gone@dest\.test/);
    assert.match(page.body, /1 suppressed address/);
    assert.match(page.body, /No such user here/);
    assert.match(
      (await web.page("/suppressions?q=nothing.like.this")).body,
      /0 suppressed address/,
    );

    // The list is durable: kill -9, restart, still refused.
    await mta.kill9();
    await mta.launch();
    assert.equal((await rcptReply(mta, "gone@dest.test")).code, 550, "suppressed after kill -9");
    assert.equal((await suppressed(mta)).length, 1);

    // `suppress remove` lets it through again.
    assert.match(
      await cliOk(mta, ["suppress", "remove", "gone@dest.test"]),
      /gone@dest\.test: removed/,
    );
    assert.equal((await rcptReply(mta, "gone@dest.test")).code, 250);
    assert.deepEqual(await suppressed(mta), []);
  },
});

Deno.test({
  name: "suppression: a null MX or NXDOMAIN recipient domain suppresses the address",
  ignore: needs,
  async fn() {
    const net = loopbackNet();
    const [port] = freePorts(1);
    await using dns = await FakeDns.start({
      "null.test": { MX: [[0, "."]] },
      "nx.test": { rcode: "NXDOMAIN" },
      "ours.test": { MX: [[10, "mx.ours.test"]] },
      "mx.ours.test": { A: [net(9)] },
    });
    await using _ours = await FakeMx.start(net(9), port, { name: "mx.ours.test" });
    await using mta = await Mta.start({
      config: { delivery: deliveryConfig({ dns, port, retry_schedule: ["1h"] }) },
    });
    const id = await submit(mta, { to: ["a@null.test", "b@nx.test"] });
    await waitFor("the bounce", () => isGone(mta, id));
    const list = await suppressed(mta);
    const status = Object.fromEntries(list.map((e) => [e.address, e.status]));
    assert.deepEqual(status, { "a@null.test": "5.1.10", "b@nx.test": "5.1.2" });
    assert.ok(list.every((e) => e.sender_domain === "ours.test" && e.queue_id === id));
    assert.equal((await rcptReply(mta, "b@nx.test")).code, 550);
  },
});

Deno.test("suppression: suppress add, import, list and remove with the daemon running and stopped", async () => {
  await using mta = await Mta.start();
  const out = await cliOk(mta, ["suppress", "add", "Ann@Dest.Test", "--reason", "asked to stop"]);
  assert.match(out, /^Ann@dest\.test: suppressed until \d{4}-/);
  const refused = await rcptReply(mta, "Ann@dest.test");
  assert.equal(refused.code, 550);
  assert.match(
    refused.raw,
    /^550 5\.1\.1 <Ann@dest\.test>: address suppressed by an operator on .* \(asked to stop\)$/,
  );

  assert.equal(await mta.stop(), 0);
  const file = `${mta.dir}/list.txt`;
  await Deno.writeTextFile(
    file,
    "# unsubscribed elsewhere\nbob@dest.test\n\n  cy@dest.test  # old\nAnn@dest.test\n",
  );
  const imported = await cliOk(mta, ["suppress", "import", file]);
  assert.match(imported, /bob@dest\.test: suppressed until/);
  assert.match(imported, /cy@dest\.test: suppressed until/);
  assert.match(imported, /Ann@dest\.test: already suppressed/);
  assert.match(await cliOk(mta, ["suppress", "remove", "Ann@dest.test"]), /removed/);
  await cliOk(mta, ["suppress", "add", "dee@dest.test"]);
  const offline = await suppressed(mta);
  assert.deepEqual(offline.map((e) => e.address).sort(), [
    "bob@dest.test",
    "cy@dest.test",
    "dee@dest.test",
  ]);
  assert.equal(offline.find((e) => e.address === "bob@dest.test")?.source, "import");
  assert.equal(offline.find((e) => e.address === "dee@dest.test")?.source, "operator");
  const stat = await Deno.stat(`${mta.spoolDir}/suppression.jsonl`);
  const spool = await Deno.stat(mta.spoolDir);
  assert.equal(stat.mode! & 0o777, 0o600, "owner-only, like the spool's other files");
  assert.equal(stat.uid, spool.uid);
  assert.match(await cliOk(mta, ["suppress", "list"]), /bob@dest\.test .*import/);

  await mta.launch();
  assert.equal((await rcptReply(mta, "bob@dest.test")).code, 550);
  assert.equal((await rcptReply(mta, "dee@dest.test")).code, 550);
  assert.equal((await rcptReply(mta, "Ann@dest.test")).code, 250);
  assert.equal((await suppressed(mta)).length, 3, "the daemon reads what the CLI wrote");
  const viaSendmail = await cli(mta, ["sendmail", "bob@dest.test"], {
    stdin: "Subject: hi\n\nhello\n",
  });
  assert.match(assertCliError(viaSendmail, 1, "sendmail to a suppressed address"), /550|5\.1\.1/);

  assertCliError(await cli(mta, ["suppress", "add", "not-an-address"]), 1, "bad address");
  assertCliError(await cli(mta, ["suppress", "remove", "nobody@dest.test"]), 1, "not suppressed");
  assertCliError(await cli(mta, ["suppress"]), 2, "no subcommand");
  assertCliError(await cli(mta, ["suppress", "import", `${mta.dir}/missing.txt`]), 1, "no file");
});

Deno.test("suppression: an entry expires after suppression.ttl and the address is accepted again", async () => {
  await using mta = await Mta.start({ config: { suppression: { ttl: "2s" } } });
  await cliOk(mta, ["suppress", "add", "eve@dest.test"]);
  assert.equal((await rcptReply(mta, "eve@dest.test")).code, 550);
  await waitFor("the entry to expire", async () => (await suppressed(mta)).length === 0, 10_000);
  assert.equal((await rcptReply(mta, "eve@dest.test")).code, 250);
});

Deno.test("suppression: with suppression.enabled false a listed address is accepted at RCPT", async () => {
  await using mta = await Mta.start({ config: { suppression: { enabled: false } } });
  await cliOk(mta, ["suppress", "add", "fay@dest.test"]);
  assert.equal((await rcptReply(mta, "fay@dest.test")).code, 250);
});
