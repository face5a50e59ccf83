/**
 * `minimta sendmail` as cron jobs and scripts use it: `-t` takes the
 * recipients from To/Cc/Bcc and no Bcc header is left; without `-i` a line
 * with a single dot ends the input; with the daemon running the message is
 * delivered (DKIM-signed when a key is configured), with it stopped it lands
 * in the spool and is delivered after start.
 */
import assert from "node:assert/strict";
import { bareLineEnds, freePorts, Mta, requireTool, waitFor } from "./_harness.ts";
import { deliveryConfig, isGone } from "./_delivery.ts";
import { dkimVerify } from "./_dkim.ts";
import { FakeDns, mxZone } from "./_dns.ts";
import { text, unstuff } from "./_mime.ts";
import { FakeMx, loopbackNet } from "./_mx.ts";
import { assertCliError, cli, lfMessage, queueJson, sendmail, showJson } from "./_cli.ts";
import { type ControlRequest, ControlServer, socketRequest } from "../src/cli/control.ts";

const latin1 = new TextDecoder("latin1");

Deno.test("sendmail -t -oi -f: recipients from To/Cc/Bcc, one message, no Bcc header left", async () => {
  await using mta = await Mta.start({ noStart: true });
  const id = await sendmail(
    mta,
    ["-t", "-oi", "-f", "cron@ours.test"],
    lfMessage(
      [
        "From: Cron Daemon <cron@ours.test>",
        "To: Bob <bob@dest.test>, x@dest.test",
        "Cc: carl@other.test",
        "Bcc: Secret Person <secret@third.test>",
        "Subject: nightly backup",
      ],
      "Backup finished.\n.\nThe line above is a single dot, kept with -oi.\n",
    ),
  );
  const queue = await queueJson(mta);
  assert.deepEqual(queue.map((m) => m.id), [id], "exactly one message");
  const meta = await showJson(mta, id);
  assert.equal(meta.from, "cron@ours.test");
  assert.deepEqual(meta.recipients.map((r) => r.address), [
    "bob@dest.test",
    "x@dest.test",
    "carl@other.test",
    "secret@third.test",
  ]);
  assert.ok(meta.recipients.every((r) => r.status === "pending" && r.attempts === 0));
  assert.doesNotMatch(meta.headers, /^bcc:/im);
  const stored = await mta.readEml(id);
  const message = latin1.decode(stored);
  assert.doesNotMatch(message, /^bcc:/im, "no Bcc header in the stored message");
  assert.ok(!message.includes("secret@third.test"), "the Bcc address appears nowhere");
  assert.match(message, /^To: Bob <bob@dest\.test>, x@dest\.test\r$/m);
  assert.match(message, /^Cc: carl@other\.test\r$/m);
  assert.match(message, /\r\n\.\r\nThe line above is a single dot, kept with -oi\.\r\n/);
  assert.deepEqual(bareLineEnds(stored), [], "stored with CRLF line ends");
});

Deno.test("sendmail without -i stops at a line with a single dot; with -i it does not", async () => {
  await using mta = await Mta.start({ noStart: true });
  const input = lfMessage(["Subject: dots"], "first line\n..two dots stay\n.\nafter the dot\n");
  const cut = await sendmail(mta, ["rcpt@dest.test"], input);
  const whole = await sendmail(mta, ["-i", "rcpt@dest.test"], input);
  const cutText = latin1.decode(await mta.readEml(cut));
  const wholeText = latin1.decode(await mta.readEml(whole));
  assert.match(cutText, /\r\n\r\nfirst line\r\n\.\.two dots stay\r\n$/, cutText);
  assert.ok(!cutText.includes("after the dot"), cutText);
  assert.match(wholeText, /\r\n\.\r\nafter the dot\r\n$/, wholeText);

  // Without -f the sender is the invoking user at server.hostname.
  const meta = await showJson(mta, cut);
  assert.equal(meta.recipients[0].address, "rcpt@dest.test");
  const who = await sendmail(mta, ["rcpt@dest.test"], "Subject: who\n\nx\n").then((id) =>
    showJson(mta, id)
  );
  assert.match(who.from, /^[^@\s]+@mx\.ours\.test$/);
});

Deno.test({
  name:
    "sendmail is delivered DKIM-signed, through the running daemon and from the spool after start",
  ignore: requireTool("python3:dkim", "python3:dns"),
  async fn(t) {
    const net = loopbackNet();
    const [port] = freePorts(1);
    await using dns = await FakeDns.start(mxZone("dest.test", "mx1.dest.test", net(2)));
    await using mx = await FakeMx.start(net(2), port, { name: "mx1.dest.test" });
    await using mta = await Mta.start({
      dkim: ["rsa"],
      config: { delivery: deliveryConfig({ dns, port }) },
    });
    const message = (subject: string) =>
      lfMessage([
        "From: Cron Daemon <cron@ours.test>",
        "To: bob@dest.test",
        "Bcc: hidden@dest.test",
        `Subject: ${subject}`,
      ], "Report body.\n");

    const deliveredOnce = async (id: string, subject: string) => {
      await waitFor(`${id} to be delivered`, () => isGone(mta, id));
      const txs = (await mx.accepted()).filter((tx) => text(tx.data).includes(subject));
      assert.equal(txs.length, 1, `one transaction for "${subject}"`);
      const [tx] = txs;
      assert.equal(tx.mail_from, "cron@ours.test");
      assert.deepEqual([...tx.rcpts].sort(), ["bob@dest.test", "hidden@dest.test"]);
      const received = unstuff(tx.data);
      assert.doesNotMatch(text(received), /^bcc:/im);
      const verdict = await dkimVerify(mta, received);
      assert.equal(verdict.code, 0, JSON.stringify(verdict));
      assert.deepEqual(verdict.results.map((r) => [r.d, r.ok]), [["ours.test", true]]);
    };

    await t.step("daemon running: queued through it and delivered", async () => {
      const id = await sendmail(mta, ["-t", "-f", "cron@ours.test"], message("while running"));
      await deliveredOnce(id, "while running");
    });

    await t.step("daemon stopped: lands in the spool, signed; delivered after start", async () => {
      assert.equal(await mta.stop(), 0);
      const id = await sendmail(mta, ["-t", "-f", "cron@ours.test"], message("while stopped"));
      const queued = await showJson(mta, id);
      assert.equal(queued.state, "queued");
      assert.match(queued.headers, /^DKIM-Signature: /m, "signed before it is spooled");
      await mta.launch();
      await deliveredOnce(id, "while stopped");
      assert.equal((await mx.accepted()).length, 2);
    });
  },
});

Deno.test("the local submission socket (any local user) takes messages and nothing else; a bare sender gets the host name", async () => {
  await using mta = await Mta.start({ noStart: true });
  await mta.launch();
  const socket = `${mta.dir}/submit.sock`;
  assert.equal((await Deno.stat(socket)).mode! & 0o777, 0o666, "reachable by every local user");
  const data = btoa("Subject: from a PHP page\r\n\r\nhello\r\n");
  const submitted = await socketRequest(socket, {
    command: "submit",
    message: { from: "www-data", recipients: ["someone@dest.test"], data, user: "" },
  });
  assert.ok(submitted?.ok, JSON.stringify(submitted));
  const id = /queued as (\S+)/.exec(submitted.lines.join("\n"))![1];
  assert.equal((await showJson(mta, id)).from, "www-data@mx.ours.test");

  // Queue commands stay with the owner-only control socket.
  const forbidden: ControlRequest[] = [
    { command: "operate", op: "delete", ids: [id] },
    { command: "retry-all" },
    { command: "list" },
    { command: "reload" },
  ];
  for (const req of forbidden) {
    const answer = await socketRequest(socket, req);
    assert.equal(answer?.ok, false, JSON.stringify(answer));
    assert.match(answer.error ?? "", /not allowed here/);
  }
  assert.deepEqual((await queueJson(mta)).map((m) => m.id), [id], "still queued");
});

Deno.test("a local client that connects and sends nothing loses its slot after the read timeout", async () => {
  const dir = await Deno.makeTempDir({ prefix: "minimta-socket-" });
  const path = `${dir}/submit.sock`;
  const server = await ControlServer.listen(
    path,
    (req) => Promise.resolve({ ok: true, lines: [req.command] }),
    { mode: 0o666, maxConcurrent: 1, readTimeoutMs: 300 },
  );
  try {
    // Holds the only slot and never finishes its request.
    const idle = await Deno.connect({ transport: "unix", path });
    await new Promise((r) => setTimeout(r, 50));
    const started = Date.now();
    const answer = await socketRequest(path, { command: "ping" });
    assert.deepEqual(answer, { ok: true, lines: ["ping"] });
    assert.ok(Date.now() - started < 3_000, "served once the idle client's time was up");
    assert.equal(await idle.read(new Uint8Array(16)), null, "the idle client was hung up on");
    idle.close();
  } finally {
    await server.close();
    await Deno.remove(dir, { recursive: true });
  }
});

/** Envelope addresses SMTP RCPT/MAIL refuses, as `minimta sendmail` arguments. */
const BAD_ENVELOPES: { args: string[]; refused: RegExp }[] = [
  { args: ['r"<b>x@dest.test'], refused: /Recipient "r\\"<b>x@dest\.test"/ },
  { args: ["a@b@c"], refused: /Recipient "a@b@c" must contain exactly one @/ },
  {
    args: ["x@dest.test\r\nRCPT TO:<evil@dest.test>"],
    refused: /Recipient "x@dest\.test\\r\\nRCPT TO:<evil@dest\.test>" contains control/,
  },
  { args: ["good@dest.test", ""], refused: /Recipient "" is empty/ },
  { args: ["user@localhost"], refused: /Recipient "user@localhost" is not a routable address/ },
  { args: ["-f", "a@b@c", "good@dest.test"], refused: /Sender "a@b@c"/ },
  { args: ["-f", "cron\n@ours.test", "good@dest.test"], refused: /Sender "cron\\n@ours\.test"/ },
];

/** Recipients in To:/Cc: that `sendmail -t` must refuse as RCPT would. */
const BAD_HEADER_RECIPIENTS = ["To: good@dest.test, a@b@c.test", "Cc: <x@dest..test>"];

Deno.test("sendmail refuses the envelope addresses SMTP refuses: one line, exit 1, nothing queued; offline, over the local socket and the control socket", async (t) => {
  await using mta = await Mta.start({ noStart: true });
  // A local user cannot open the control socket: a config whose queue has
  // none sends sendmail to the local submission socket.
  const config = await mta.config();
  const localUser = `${mta.dir}/local-user.yaml`;
  await Deno.mkdir(`${mta.dir}/no-control`);
  await Deno.writeTextFile(
    localUser,
    JSON.stringify({ ...config, queue: { ...config.queue, dir: `${mta.dir}/no-control` } }),
  );
  const accepted: string[] = [];
  const refusesAll = async (configPath: string, how: string) => {
    for (const bad of BAD_ENVELOPES) {
      const r = await cli(configPath, ["sendmail", ...bad.args], {
        stdin: lfMessage(["Subject: bad envelope"]),
      });
      const line = assertCliError(r, 1, `${how}: sendmail ${JSON.stringify(bad.args)}`);
      assert.match(line, /^minimta: Message refused: 5\.1\.[37] /, line);
      assert.match(line, bad.refused, line);
    }
    for (const header of BAD_HEADER_RECIPIENTS) {
      const r = await cli(configPath, ["sendmail", "-t"], {
        stdin: lfMessage([header, "Subject: bad header recipient"]),
      });
      const line = assertCliError(r, 1, `${how}: sendmail -t with ${header}`);
      assert.match(line, /^minimta: Message refused: 5\.1\.3 Recipient "/, line);
    }
    const out = await cli(configPath, ["sendmail", "-t"], {
      stdin: lfMessage(["To: Good <good@dest.test>", "Subject: fine"]),
    });
    assert.equal(out.code, 0, `${how}: a good recipient was refused: ${out.stderr}`);
    accepted.push(/queued as (\S+)/.exec(out.stdout)![1]);
    assert.deepEqual((await queueJson(mta)).map((m) => m.id).sort(), [...accepted].sort());
  };

  await t.step(
    "daemon stopped: straight into the spool",
    () => refusesAll(mta.configPath, "offline"),
  );
  await mta.launch();
  await t.step(
    "daemon running: the local submission socket",
    () => refusesAll(localUser, "local socket"),
  );
  await t.step(
    "daemon running: the control socket",
    () => refusesAll(mta.configPath, "control socket"),
  );
  await t.step("the same recipients at SMTP RCPT TO get 5xx", async () => {
    using smtp = await mta.authed();
    await smtp.cmd("MAIL FROM:<alice@ours.test>", 250);
    for (
      const rcpt of ['r"<b>x@dest.test', "a@b@c", "user@localhost", "a@b@c.test", 'a"b@dest.test']
    ) {
      const reply = await smtp.cmd(`RCPT TO:<${rcpt}>`);
      assert.ok(reply.code >= 500, `RCPT TO:<${rcpt}> -> ${reply.raw}`);
    }
    await smtp.cmd("RCPT TO:<good@dest.test>", 250);
  });
  assert.deepEqual([...Deno.readDirSync(`${mta.dir}/no-control`)], [], "no spool made beside");
  for (const id of accepted) {
    assert.deepEqual((await showJson(mta, id)).recipients.map((r) => r.address), [
      "good@dest.test",
    ]);
  }
});
