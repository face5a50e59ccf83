/**
 * Real submission clients (swaks, msmtp, Python's smtplib, nodemailer)
 * against the real daemon: each message is acknowledged with its queue id
 * and shows up in `minimta queue list --json` with the contract fields.
 */
import assert from "node:assert/strict";
import {
  ALICE,
  contractProblems,
  Mta,
  PYTHON,
  queuedId,
  requireTool,
  ROOT,
  run,
} from "./_harness.ts";

async function assertQueued(mta: Mta, id: string, to: string): Promise<void> {
  const list = await mta.queueList();
  const entry = list.find((e) => e.id === id);
  assert.ok(
    entry,
    `queue id ${id} from the 250 reply is not in queue list: ${JSON.stringify(list)}`,
  );
  assert.deepEqual(contractProblems(entry), [], JSON.stringify(entry));
  assert.equal(entry.from, ALICE.user);
  assert.deepEqual(entry.recipients.map((r) => r.address), [to]);
  assert.ok(["pending", "deferred"].includes(entry.recipients[0].status));
  const shown = await mta.queueShow(id);
  assert.equal(shown.id, id);
  assert.match(shown.headers, /^Received: from /m);
}

function swaksArgs(mta: Mta, to: string): string[] {
  return [
    "--server",
    "127.0.0.1",
    "--from",
    ALICE.user,
    "--to",
    to,
    "--auth-user",
    ALICE.user,
    "--auth-password",
    ALICE.pass,
    "--tls-verify",
    "--tls-ca-path",
    `${mta.dir}/cert.pem`,
    "--tls-sni",
    "localhost",
  ];
}

function swaksQueueId(output: string): string {
  const line = output.split("\n").find((l) => /^<~\s+250 .*queued as/.test(l));
  assert.ok(line, `no 250 queued reply in swaks output:\n${output}`);
  return queuedId(line);
}

Deno.test({
  name: "swaks submits over STARTTLS with AUTH PLAIN and LOGIN, and over implicit TLS",
  ignore: requireTool("swaks", "perl:Net::SSLeay", "perl:IO::Socket::SSL"),
  async fn(t) {
    await using mta = await Mta.start();
    const cases = [
      { name: "STARTTLS + PLAIN", args: ["--port", `${mta.port}`, "--tls", "--auth", "PLAIN"] },
      { name: "STARTTLS + LOGIN", args: ["--port", `${mta.port}`, "--tls", "--auth", "LOGIN"] },
      {
        name: "implicit TLS (--tlsc) + PLAIN",
        args: ["--port", `${mta.tlsPort}`, "--tlsc", "--auth", "PLAIN"],
      },
    ];
    for (const [i, c] of cases.entries()) {
      await t.step(c.name, async () => {
        const to = `swaks${i}@remote.test`;
        const r = await run("swaks", [...swaksArgs(mta, to), ...c.args]);
        assert.equal(r.code, 0, r.stdout + r.stderr);
        await assertQueued(mta, swaksQueueId(r.stdout), to);
      });
    }
    assert.equal(await mta.stop(), 0);
  },
});

Deno.test({
  name: "msmtp submits over STARTTLS, trusting only the test certificate",
  ignore: requireTool("msmtp"),
  async fn() {
    await using mta = await Mta.start();
    const rc = `${mta.dir}/msmtprc`;
    const logfile = `${mta.dir}/msmtp.log`;
    await Deno.writeTextFile(
      rc,
      [
        "account test",
        "host localhost",
        `port ${mta.port}`,
        "tls on",
        "tls_starttls on",
        `tls_trust_file ${mta.dir}/cert.pem`,
        "auth plain",
        `user ${ALICE.user}`,
        `password ${ALICE.pass}`,
        `from ${ALICE.user}`,
        `logfile ${logfile}`,
        "account default : test",
        "",
      ].join("\n"),
      { mode: 0o600 },
    );
    const to = "msmtp@remote.test";
    const message = `From: ${ALICE.user}\nTo: ${to}\nSubject: from msmtp\n\nHello from msmtp.\n`;
    const r = await run("msmtp", ["-C", rc, to], { stdin: message });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const log = await Deno.readTextFile(logfile);
    await assertQueued(mta, queuedId(log), to);
    assert.equal(await mta.stop(), 0);
  },
});

Deno.test({
  name: "Python smtplib submits with starttls() and an SSL context trusting the certificate",
  ignore: requireTool("python3:smtplib"),
  async fn() {
    await using mta = await Mta.start();
    const to = "python@remote.test";
    const script = `
import smtplib, ssl, sys
port, cafile, user, password, to = sys.argv[1:6]
ctx = ssl.create_default_context(cafile=cafile)
with smtplib.SMTP("localhost", int(port), timeout=20) as s:
    s.ehlo("python.test")
    s.starttls(context=ctx)
    s.ehlo("python.test")
    s.login(user, password)
    s.mail(user)
    s.rcpt(to)
    code, text = s.data(("From: %s\\r\\nTo: %s\\r\\nSubject: smtplib\\r\\n\\r\\nHello.\\r\\n" % (user, to)).encode())
    print(code, text.decode())
`;
    const r = await run(PYTHON, [
      "-c",
      script,
      `${mta.port}`,
      `${mta.dir}/cert.pem`,
      ALICE.user,
      ALICE.pass,
      to,
    ]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /^250 /);
    await assertQueued(mta, queuedId(r.stdout), to);
    assert.equal(await mta.stop(), 0);
  },
});

Deno.test("nodemailer submits over STARTTLS with AUTH and over implicit TLS", async (t) => {
  await using mta = await Mta.start();
  for (const secure of [false, true]) {
    await t.step(secure ? "implicit TLS" : "STARTTLS", async () => {
      const to = `nodemailer-${secure ? "tls" : "starttls"}@remote.test`;
      const r = await run(Deno.execPath(), [
        "run",
        "--allow-net",
        "--allow-read",
        "--allow-env",
        "--allow-sys",
        `${ROOT}/tests/fakes/nodemailer_send.ts`,
        JSON.stringify({
          port: secure ? mta.tlsPort : mta.port,
          secure,
          cert: `${mta.dir}/cert.pem`,
          user: ALICE.user,
          pass: ALICE.pass,
          to,
        }),
      ], { cwd: ROOT });
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.match(r.stdout, /^250 /);
      await assertQueued(mta, queuedId(r.stdout), to);
    });
  }
  assert.equal(await mta.stop(), 0);
});
