/**
 * TESTPLAN §1.3, TLS-S-03 to TLS-S-07: the edges of STARTTLS on the
 * submission ports, against the real daemon. A raw driver sends what
 * hostile or broken clients send (partial lines and pipelined commands
 * around STARTTLS, plaintext where a ClientHello belongs, STARTTLS where it
 * has no place); `openssl s_client` renegotiates a TLS 1.2 session.
 * TLS-S-08 (protocols and ciphers) is in submission_tls_scan_test.ts.
 */
import assert from "node:assert/strict";
import { ALICE, Mta, plainBlob, requireTool, type SmtpDriver } from "./_harness.ts";

async function greeted(mta: Mta): Promise<SmtpDriver> {
  const smtp = await mta.connect();
  await smtp.expect(220);
  return smtp;
}

/** The handshake after a 220, failing with a readable reason instead of a TLS stack error. */
async function upgradeOrExplain(smtp: SmtpDriver, what: string): Promise<void> {
  try {
    await smtp.upgrade();
  } catch (error) {
    throw new Error(`TLS handshake after the 220 failed (${what})`, { cause: error });
  }
}

/** Log lines the daemon wrote at ERROR level. */
function errorLines(mta: Mta): string[] {
  return mta.logs().filter((e) => e.level === "ERROR").map((e) => JSON.stringify(e));
}

Deno.test("STARTTLS edges: nothing sent in plaintext around STARTTLS is answered or reaches TLS", async (t) => {
  await using mta = await Mta.start();

  await t.step(
    "TLS-S-03: a partial line after STARTTLS is dropped, the first TLS line is a clean EHLO",
    async () => {
      using smtp = await greeted(mta);
      await smtp.cmd("EHLO t.test", 250);
      // One write: the parser holds "NOOP PART" (no CRLF) when STARTTLS runs.
      await smtp.write("STARTTLS\r\nNOOP PART");
      await smtp.expect(220);
      await upgradeOrExplain(smtp, "stray plaintext after the 220?");
      // Kept, the remainder would prefix the first TLS line: "NOOP PARTEHLO real.test" (500).
      const ehlo = await smtp.cmd("EHLO real.test");
      assert.equal(ehlo.code, 250, `first line inside TLS: ${ehlo.raw}`);
      assert.ok(ehlo.lines.length > 1, `not the EHLO reply: ${ehlo.raw}`);
      assert.match(ehlo.lines[0], /^mx\.ours\.test\b/);
      assert.deepEqual(await smtp.cmd("NOOP"), { code: 250, lines: ["OK"], raw: "250 OK" });
    },
  );

  await t.step(
    "TLS-S-04: 250 NOOPs, STARTTLS and 50 RSETs in one write get 250 OKs and one 220, nothing else",
    async () => {
      using smtp = await greeted(mta);
      // smtp-server's parser yields to the event loop every 100 lines; the
      // RSETs behind STARTTLS must not run in plaintext nor inside TLS.
      await smtp.write("NOOP\r\n".repeat(250) + "STARTTLS\r\n" + "RSET\r\n".repeat(50));
      for (let i = 0; i < 250; i++) {
        const reply = await smtp.reply();
        assert.equal(reply.raw, "250 OK", `reply ${i + 1} of 250 to NOOP`);
      }
      const ready = await smtp.reply();
      assert.equal(ready.code, 220, `after the NOOPs: ${ready.raw}`);
      // Give answers to the RSETs time to arrive: plaintext after the 220
      // is refused by upgrade() or breaks the handshake.
      await new Promise((resolve) => setTimeout(resolve, 300));
      await upgradeOrExplain(smtp, "plaintext replies to the RSETs after the 220?");
      const ehlo = await smtp.cmd("EHLO t.test", 250);
      assert.ok(ehlo.lines.length > 1, `first TLS reply is not the EHLO reply: ${ehlo.raw}`);
      // An RSET run inside TLS would have queued "250 Flushed" ahead of this.
      assert.equal((await smtp.cmd("NOOP")).raw, "250 OK");
    },
  );

  await t.step(
    "TLS-S-05: plaintext instead of a ClientHello gets no reply and the connection is closed",
    async () => {
      using smtp = await greeted(mta);
      await smtp.cmd("EHLO t.test", 250);
      await smtp.cmd("STARTTLS", 220);
      await smtp.write("RSET\r\n");
      const after = await smtp.readToEnd(10_000);
      assert.ok(smtp.eof, "the server closed the connection");
      // Nothing, or at most a TLS alert record (content type 21): never an SMTP reply.
      assert.ok(
        after === "" || after.charCodeAt(0) === 0x15,
        `sent after the failed handshake: ${JSON.stringify(after)}`,
      );
      assert.doesNotMatch(after, /\d{3}[ -]/);
    },
  );

  await t.step(
    "TLS-S-06: STARTTLS with an argument gets 501, STARTTLS inside TLS gets 503",
    async () => {
      using smtp = await greeted(mta);
      await smtp.cmd("EHLO t.test", 250);
      const foo = await smtp.cmd("STARTTLS FOO");
      assert.equal(foo.code, 501, foo.raw);
      // Still plaintext and still usable: a correct STARTTLS goes through.
      await smtp.startTls();
      const ehlo = await smtp.cmd("EHLO t.test", 250);
      assert.ok(!ehlo.lines.includes("STARTTLS"), `STARTTLS offered inside TLS: ${ehlo.raw}`);
      const again = await smtp.cmd("STARTTLS");
      assert.equal(again.code, 503, again.raw);
      // The refusal leaves the TLS session as it was.
      await smtp.cmd(`AUTH PLAIN ${plainBlob("", ALICE.user, ALICE.pass)}`, 235);
      await smtp.cmd(`MAIL FROM:<${ALICE.user}>`, 250);
    },
  );

  await t.step("TLS-S-06: STARTTLS on the implicit-TLS port gets 503", async () => {
    using smtp = await mta.connect({ implicitTls: true });
    await smtp.expect(220);
    await smtp.cmd("EHLO t.test", 250);
    const reply = await smtp.cmd("STARTTLS");
    assert.equal(reply.code, 503, reply.raw);
    await smtp.cmd("NOOP", 250);
  });

  assert.deepEqual(errorLines(mta), []);
  assert.equal(await mta.stop(), 0);
});

// ---------------------------------------------------------------- openssl s_client

/** `openssl s_client` as a child: we type into its stdin and watch what it prints. */
class SClient {
  #child: Deno.ChildProcess;
  #writer: WritableStreamDefaultWriter<Uint8Array>;
  #output = "";
  #pumps: Promise<void>[];
  #status: Promise<Deno.CommandStatus>;
  #exited = false;

  constructor(args: string[]) {
    this.#child = new Deno.Command("openssl", {
      args: ["s_client", ...args],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#writer = this.#child.stdin.getWriter();
    this.#pumps = [this.#pump(this.#child.stdout), this.#pump(this.#child.stderr)];
    this.#status = this.#child.status.then(async (status) => {
      this.#exited = true;
      await Promise.all(this.#pumps);
      return status;
    });
  }

  async #pump(stream: ReadableStream<Uint8Array>): Promise<void> {
    const decoder = new TextDecoder();
    for await (const chunk of stream) this.#output += decoder.decode(chunk, { stream: true });
  }

  /** Everything printed so far, stdout and stderr interleaved as they came. */
  get output(): string {
    return this.#output;
  }

  /** Types `text` (s_client's `-crlf` turns each LF into CRLF). */
  async type(text: string): Promise<void> {
    await this.#writer.write(new TextEncoder().encode(text));
  }

  /** Waits until the output since `from` matches, or s_client exits, or the time runs out. */
  async waitFor(pattern: RegExp, from = 0, timeoutMs = 15_000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (pattern.test(this.#output.slice(from))) return true;
      if (this.#exited) return pattern.test(this.#output.slice(from));
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    return false;
  }

  /** Waits for s_client to exit; kills it (our own child) after `timeoutMs`. */
  async exit(timeoutMs = 10_000): Promise<Deno.CommandStatus> {
    const timer = setTimeout(() => {
      if (!this.#exited) this.#child.kill("SIGKILL");
    }, timeoutMs);
    try {
      await this.#writer.close().catch(() => {});
      return await this.#status;
    } finally {
      clearTimeout(timer);
    }
  }
}

function count(text: string, pattern: RegExp): number {
  return [...text.matchAll(new RegExp(pattern.source, "gm"))].length;
}

/** The mail-log events of one session, in order. */
function sessionEvents(mta: Mta, session: string): string[] {
  return mta.logs().filter((e) => e.session === session).map((e) => String(e.event));
}

Deno.test({
  name:
    "TLS-S-07: a TLS 1.2 renegotiation is refused cleanly: nothing dispatched twice, the daemon serves on",
  ignore: requireTool("openssl"),
  async fn() {
    await using mta = await Mta.start();
    const sc = new SClient([
      "-starttls",
      "smtp",
      "-tls1_2",
      "-crlf",
      "-connect",
      `127.0.0.1:${mta.port}`,
      "-servername",
      "localhost",
      "-CAfile",
      `${mta.dir}/cert.pem`,
    ]);
    try {
      assert.ok(await sc.waitFor(/^\s+Protocol\s*: TLSv1\.2$/m), sc.output);
      let mark = sc.output.length;
      await sc.type("EHLO first.test\n");
      assert.ok(await sc.waitFor(/^250-mx\.ours\.test [^]*^250 SIZE/m, mark), sc.output);
      mark = sc.output.length;
      await sc.type(`AUTH PLAIN ${plainBlob("", ALICE.user, ALICE.pass)}\n`);
      assert.ok(await sc.waitFor(/^235 /m, mark), sc.output);
      const session = mta.logs().findLast((e) => e.event === "auth_success")?.session;
      assert.ok(typeof session === "string", "auth_success was logged with the session id");

      // "R" on a line of its own: s_client renegotiates (TLS 1.2 only).
      mark = sc.output.length;
      await sc.type("R\n");
      assert.ok(await sc.waitFor(/RENEGOTIATING/, mark), sc.output);
      // The daemon's TLS stack (rustls, under Deno's node:tls) does not
      // renegotiate at all: it answers with a no_renegotiation alert, and
      // s_client gives up on the connection. Had the renegotiation gone
      // through, smtp-server's once('secure') keeps the session as it was.
      assert.ok(await sc.waitFor(/no renegotiation/i, mark), sc.output);
      const status = await sc.exit();
      assert.ok(!status.success, `s_client exit after the refused renegotiation: ${status.code}`);

      // Each command ran once: one EHLO reply after the handshake, one 235.
      const afterHandshake = sc.output.slice(sc.output.search(/^\s+Protocol\s*: TLSv1\.2$/m));
      assert.equal(count(afterHandshake, /^235 /), 1, afterHandshake);
      assert.equal(count(afterHandshake, /^250-mx\.ours\.test /), 1, afterHandshake);
      assert.deepEqual(
        sessionEvents(mta, session).filter((e) => e === "auth_success" || e === "connect"),
        ["connect", "auth_success"],
      );
    } finally {
      await sc.exit();
    }

    // The refusal cost nobody else anything: a new session sends as usual.
    using smtp = await mta.authed();
    await smtp.cmd(`MAIL FROM:<${ALICE.user}>`, 250);
    await smtp.cmd("RCPT TO:<bob@example.test>", 250);
    assert.deepEqual(errorLines(mta), []);
    smtp.close();
    assert.equal(await mta.stop(), 0);
  },
});
