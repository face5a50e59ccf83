/**
 * TESTPLAN §2 R13: random bytes on every listener and in every phase of a
 * session, against the real daemon: nothing crashes, nothing is logged as a
 * fault, no descriptor is left open, nothing is spooled, and a normal
 * submission still works afterwards. Then a fast-check run of hostile but
 * SMTP-shaped command lines. Like chasquid's FuzzConnection, but over real
 * sockets and real TLS. MINIMTA_FUZZ_SEED replays a run.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  ALICE,
  bareLineEnds,
  freePorts,
  Mta,
  plainBlob,
  queuedId,
  type SmtpReply,
} from "./_harness.ts";
import {
  alive,
  daemonFaults,
  fdCount,
  FUZZ_SEED,
  Rng,
  settleTo,
  withoutEndOfData,
} from "./_fuzz.ts";

// TESTPLAN's size, 1 MB × 1 000 connections, is kept: 167 connections of
// each of 6 kinds, 1 MiB each on average (split at random, from 0 B to
// several MiB: the lost-EOF bug below needed a long DATA, and 60 sessions of
// 17 KiB did not find it). It takes about 10 s on a 2-CPU machine, because
// the daemon reads little of it: random bytes hold a line break every 256
// bytes, so a session without AUTH is cut with 421 after ten unknown
// commands, a TLS listener gives up at the first bad record, and what the
// client wrote meanwhile (about 700 MiB in all) dies in socket buffers. Only
// DATA reads all it gets (~170 MiB). Should the suite need a cut, make it in
// the number of connections, not in the bytes each.
const CONNECTIONS_PER_KIND = 167;
const BYTES_PER_KIND = CONNECTIONS_PER_KIND * 1024 * 1024;
const CONCURRENCY = 24;
/** A connection still busy after this is cut by the client (and counted). */
const WATCHDOG_MS = 15_000;

const KINDS = [
  // Garbage instead of any command on the STARTTLS port.
  "plain",
  // A valid EHLO, then garbage: AUTH-less, so still the unauthenticated limits.
  "after-ehlo",
  // STARTTLS accepted, then garbage where the ClientHello should be.
  "starttls-handshake",
  // Garbage where the ClientHello should be on the implicit-TLS port.
  "tls-raw",
  // A good TLS handshake on the implicit-TLS port, then garbage inside TLS.
  "tls-inside",
  // Authenticated, MAIL and RCPT accepted, DATA started: the body is garbage
  // and is never ended, the client hangs up instead. Nothing may be spooled.
  "in-data",
] as const;
type Kind = typeof KINDS[number];

/** How the client leaves: close at once, FIN and wait for the server's, or close without reading. */
const ENDINGS = ["close", "half", "reset"] as const;
type Ending = typeof ENDINGS[number];

const latin1 = new TextDecoder("latin1");
const encoder = new TextEncoder();

/** Raw connection for garbage: reads on demand for a preamble, then drains in the background. */
class RawConn {
  #conn: Deno.Conn;
  #text = "";
  #draining: Promise<void> | null = null;
  #closed = false;

  private constructor(conn: Deno.Conn) {
    this.#conn = conn;
  }

  static async open(port: number): Promise<RawConn> {
    return new RawConn(await Deno.connect({ hostname: "127.0.0.1", port }));
  }

  /** Reads until a final reply line (`NNN ` … LF) arrives; returns its code. */
  async reply(): Promise<number> {
    const buf = new Uint8Array(4096);
    while (true) {
      const match = /^(\d{3}) [^\n]*\n/m.exec(this.#text);
      if (match) {
        this.#text = this.#text.slice(match.index + match[0].length);
        return Number(match[1]);
      }
      const n = await this.#conn.read(buf);
      if (n === null) throw new Error(`Closed before a reply: ${JSON.stringify(this.#text)}`);
      this.#text += latin1.decode(buf.subarray(0, n));
    }
  }

  async cmd(line: string, code: number): Promise<void> {
    await this.#conn.write(encoder.encode(`${line}\r\n`));
    const got = await this.reply();
    if (got !== code) throw new Error(`${line}: expected ${code}, got ${got}`);
  }

  async startTls(certPem: string): Promise<void> {
    this.#conn = await Deno.startTls(this.#conn as Deno.TcpConn, {
      hostname: "localhost",
      caCerts: [certPem],
    });
  }

  /** Reads and discards whatever the server sends from now on, until EOF or close. */
  drain(): void {
    const buf = new Uint8Array(16 * 1024);
    this.#draining = (async () => {
      try {
        while ((await this.#conn.read(buf)) !== null) { /* discard */ }
      } catch {
        // Reset by the server, or cut by close(): either way the end.
      }
    })();
  }

  /**
   * Writes `garbage` in random-sized chunks; stops quietly when the server
   * has gone. Returns how many bytes were written.
   */
  async writeChunks(garbage: Garbage, rng: Rng): Promise<number> {
    let written = 0;
    try {
      while (true) {
        const chunk = garbage(rng.int(1, 16 * 1024));
        if (chunk.length === 0) return written;
        let at = 0;
        while (at < chunk.length) at += await this.#conn.write(chunk.subarray(at));
        written += chunk.length;
      }
    } catch {
      // EPIPE / reset: the server closed on us, as it may.
      return written;
    }
  }

  /** FIN, then waits up to `ms` for the server to close its side. */
  async halfClose(ms: number): Promise<void> {
    try {
      await (this.#conn as Deno.TcpConn).closeWrite();
    } catch {
      return;
    }
    if (!this.#draining) this.drain();
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([this.#draining, new Promise((r) => (timer = setTimeout(r, ms)))]);
    clearTimeout(timer);
  }

  /** Closes (idempotent) and waits for the background reader. */
  async close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      try {
        this.#conn.close();
      } catch {
        // Already closed.
      }
    }
    await this.#draining;
  }
}

/**
 * The garbage of one session, made as it is written (most of it never is:
 * the server hangs up first): `garbage(n)` gives up to `n` more bytes, none
 * at the end.
 */
type Garbage = (n: number) => Uint8Array;

function randomGarbage(rng: Rng, size: number): Garbage {
  let left = size;
  return (n) => {
    const k = Math.min(n, left);
    left -= k;
    return rng.bytes(k);
  };
}

function fixedGarbage(bytes: Uint8Array): Garbage {
  let at = 0;
  return (n) => {
    const out = bytes.subarray(at, at + n);
    at += out.length;
    return out;
  };
}

/** One garbage session: its kind, how many bytes, how it ends, and the seed of its bytes. */
interface Job {
  kind: Kind;
  size: number;
  ending: Ending;
  seed: number;
}

/** Runs one garbage session; returns the bytes written and whether the watchdog had to cut it. */
async function runJob(mta: Mta, job: Job): Promise<{ written: number; cut: boolean }> {
  const rng = new Rng(job.seed);
  const conn = await RawConn.open(job.kind.startsWith("tls-") ? mta.tlsPort : mta.port);
  let cut = false;
  let written = 0;
  const watchdog = setTimeout(() => {
    cut = true;
    conn.close();
  }, WATCHDOG_MS);
  try {
    const garbage = await preamble(mta, conn, job, rng);
    if (job.ending !== "reset") conn.drain();
    written = await conn.writeChunks(garbage, rng);
    if (job.ending === "half") await conn.halfClose(3_000);
  } catch (error) {
    // A refused preamble is a finding, unless the watchdog caused it.
    if (!cut) throw new Error(`${JSON.stringify(job)}: ${error}`, { cause: error });
  } finally {
    clearTimeout(watchdog);
    await conn.close();
  }
  return { written, cut };
}

/** Takes the session to where the garbage goes; returns the garbage. */
async function preamble(mta: Mta, conn: RawConn, job: Job, rng: Rng): Promise<Garbage> {
  switch (job.kind) {
    case "plain":
    case "tls-raw":
      return randomGarbage(rng, job.size);
    case "after-ehlo":
      await conn.reply();
      await conn.cmd("EHLO fuzz.test", 250);
      return randomGarbage(rng, job.size);
    case "starttls-handshake":
      await conn.reply();
      await conn.cmd("EHLO fuzz.test", 250);
      await conn.cmd("STARTTLS", 220);
      return randomGarbage(rng, job.size);
    case "tls-inside":
      await conn.startTls(mta.certPem);
      // Half the time the greeting is read first, half the time garbage races it.
      if (rng.next() % 2) await conn.reply();
      return randomGarbage(rng, job.size);
    case "in-data":
      await conn.reply();
      await conn.cmd("EHLO fuzz.test", 250);
      await conn.cmd("STARTTLS", 220);
      await conn.startTls(mta.certPem);
      await conn.cmd("EHLO fuzz.test", 250);
      await conn.cmd(`AUTH PLAIN ${plainBlob("", ALICE.user, ALICE.pass)}`, 235);
      await conn.cmd("MAIL FROM:<alice@ours.test>", 250);
      await conn.cmd("RCPT TO:<fuzz@remote.test>", 250);
      await conn.cmd("DATA", 354);
      // Random bytes would be refused for their NULs even if the message
      // were ever ended; printable lines would not, so a truncated message
      // that slipped into the spool would show.
      // Made whole, so that no end of data can straddle two chunks.
      return fixedGarbage(
        withoutEndOfData(rng.next() % 2 ? rng.bytes(job.size) : printable(rng, job.size)),
      );
  }
}

/**
 * A plausible message of `size` bytes: headers, then printable lines of up
 * to 76 octets, one in eight starting with a dot (RFC 5321 §4.5.2 stuffing).
 */
function printable(rng: Rng, size: number): Uint8Array {
  const out = rng.bytes(size);
  let left = 0;
  for (let i = 0; i < size; i++) {
    if (left === 0) {
      out[i] = 0x0d;
      if (i + 1 < size) out[++i] = 0x0a;
      left = rng.int(1, 76);
      if (i + 1 < size && rng.next() % 8 === 0) out[++i] = 0x2e;
      continue;
    }
    out[i] = 0x20 + (out[i] % 95);
    left--;
  }
  const head = encoder.encode("From: alice@ours.test\r\nSubject: truncated\r\n\r\n");
  out.set(head.subarray(0, Math.min(size, head.length)));
  return out;
}

/** Every job, all kinds shuffled together so that they overlap on the daemon. */
function jobs(rng: Rng): Job[] {
  const all: Job[] = [];
  for (const kind of KINDS) {
    for (const size of rng.split(BYTES_PER_KIND, CONNECTIONS_PER_KIND)) {
      all.push({ kind, size, ending: rng.pick(ENDINGS), seed: rng.next() });
    }
  }
  for (let i = all.length - 1; i > 0; i--) {
    const j = rng.next() % (i + 1);
    [all[i], all[j]] = [all[j], all[i]];
  }
  return all;
}

/** Runs `tasks` with at most `limit` at a time; returns their results in order. */
async function pool<T>(limit: number, tasks: (() => Promise<T>)[]): Promise<T[]> {
  const results: T[] = new Array(tasks.length);
  let next = 0;
  const worker = async () => {
    while (next < tasks.length) {
      const i = next++;
      results[i] = await tasks[i]();
    }
  };
  await Promise.all(Array.from({ length: limit }, worker));
  return results;
}

function mib(sizes: number[]): string {
  return (sizes.reduce((a, b) => a + b, 0) / 1024 / 1024).toFixed(0);
}

/** Peak resident set size of a process in MiB (`VmHWM`). */
function peakRssMib(pid: number): number {
  const match = /^VmHWM:\s+(\d+) kB$/m.exec(Deno.readTextFileSync(`/proc/${pid}/status`));
  return match ? Math.round(Number(match[1]) / 1024) : NaN;
}

/** An authenticated submission through the STARTTLS port; returns the queue id. */
async function submitOne(mta: Mta, subject: string): Promise<string> {
  using smtp = await mta.authed();
  await smtp.cmd("MAIL FROM:<alice@ours.test>", 250);
  await smtp.cmd("RCPT TO:<bob@remote.test>", 250);
  await smtp.cmd("DATA", 354);
  const ok = await smtp.cmd(
    `From: alice@ours.test\r\nTo: bob@remote.test\r\nSubject: ${subject}\r\n\r\nHello.\r\n.`,
    250,
  );
  await smtp.cmd("QUIT", 221);
  return queuedId(ok.raw);
}

/**
 * Delivery through a smarthost at a loopback port nobody listens on: each
 * attempt is refused at once and deferred for an hour (the harness's
 * retry_schedule), so spooled messages stay put and nothing leaves.
 */
function refusedRelay(): Record<string, unknown> {
  return { relay_host: `127.0.0.1:${freePorts(1)[0]}`, allow_loopback: true };
}

/** Waits until the delivery engine has tried `id` once and deferred it. */
async function deferred(mta: Mta, id: string): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    const meta = (await mta.spoolMetas()).find((m) => m.id === id);
    if (meta?.state === "deferred") return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${id} was not deferred within 15 s`);
}

/** The steady descriptor count: two equal readings 300 ms apart. */
async function steadyFds(pid: number): Promise<number> {
  let last = fdCount(pid);
  for (let i = 0; i < 20; i++) {
    await new Promise((r) => setTimeout(r, 300));
    const now = fdCount(pid);
    if (now === last) return now;
    last = now;
  }
  return last;
}

/** A daemon whose deliveries are refused, past a warm-up; returns it with its descriptor baseline. */
async function warmDaemon(): Promise<{ mta: Mta; first: string; baseline: number }> {
  const mta = await Mta.start({
    config: { server: { max_connections_per_ip: 1000 }, delivery: refusedRelay() },
  });
  try {
    // One message through and its delivery attempt over, and one small
    // session of each kind, so lazily opened descriptors are in the baseline.
    const first = await submitOne(mta, "before the garbage");
    await deferred(mta, first);
    const rng = new Rng(FUZZ_SEED ^ 0x9e3779b9);
    for (const kind of KINDS) {
      await runJob(mta, { kind, size: 4096, ending: "close", seed: rng.next() });
    }
    return { mta, first, baseline: await steadyFds(mta.pid) };
  } catch (error) {
    await mta[Symbol.asyncDispose]();
    throw error;
  }
}

Deno.test(`R13: random bytes on every port and in every phase (seed ${FUZZ_SEED})`, async () => {
  const warm = await warmDaemon();
  await using mta = warm.mta;
  const { first, baseline } = warm;
  const pid = mta.pid;

  const started = Date.now();
  const all = jobs(new Rng(FUZZ_SEED));
  const results = await pool(CONCURRENCY, all.map((job) => () => runJob(mta, job)));
  const seconds = (Date.now() - started) / 1000;

  assert.ok(alive(pid), `the daemon died:\n${mta.stderr}`);
  assert.deepEqual(daemonFaults(mta), []);
  // Every client has gone: the daemon must have closed every socket, well
  // before the 60 s idle timeout would do it for them.
  const after = await settleTo(() => fdCount(pid), baseline, 10_000);
  assert.ok(after <= baseline, `descriptors: ${after} after, ${baseline} before`);
  // Nothing from the garbage in the spool, not even a temp file.
  assert.deepEqual((await mta.spoolMetas()).map((m) => m.id), [first]);
  assert.deepEqual(await mta.spoolFiles("tmp"), []);
  assert.deepEqual(await mta.spoolFiles("msg"), [`${first}.eml`]);

  // And the daemon still does its job.
  const last = await submitOne(mta, "after the garbage");
  assert.deepEqual((await mta.spoolMetas()).map((m) => m.id).sort(), [first, last].sort());
  assert.deepEqual(daemonFaults(mta), []);
  // deno-lint-ignore no-console
  console.error(
    `R13 seed=${FUZZ_SEED}: ${all.length} connections, ${mib(all.map((j) => j.size))} MiB ` +
      `planned, ${mib(results.map((r) => r.written))} MiB written, in ${seconds.toFixed(1)} s; ` +
      `${results.filter((r) => r.cut).length} cut by the client watchdog; ` +
      `descriptors ${baseline} before, ${after} after; daemon peak RSS ${peakRssMib(pid)} MiB`,
  );
  assert.equal(await mta.stop(), 0);
});

Deno.test("R13: a client that hangs up in a long dot-stuffed DATA over TLS is let go at once", async () => {
  // The case the random run found: Deno's node:tls lost the peer's close
  // when it came while the parser was busy un-stuffing dots, and the socket
  // stayed open until the idle timeout (src/submission/_tls_end_of_stream.ts).
  const warm = await warmDaemon();
  await using mta = warm.mta;
  for (const implicitTls of [false, true]) {
    using smtp = await (implicitTls ? mta.connect({ implicitTls }) : mta.authedOrNot());
    if (implicitTls) {
      await smtp.expect(220);
      await smtp.cmd("EHLO t.test", 250);
    }
    await smtp.cmd(`AUTH PLAIN ${plainBlob("", ALICE.user, ALICE.pass)}`, 235);
    await smtp.cmd("MAIL FROM:<alice@ours.test>", 250);
    await smtp.cmd("RCPT TO:<bob@remote.test>", 250);
    await smtp.cmd("DATA", 354);
    await smtp.write(`From: alice@ours.test\r\n\r\n${`..${"x".repeat(70)}\r\n`.repeat(15_000)}`);
    smtp.close();
    const after = await settleTo(() => fdCount(mta.pid), warm.baseline, 5_000);
    assert.ok(after <= warm.baseline, `implicitTls=${implicitTls}: ${after} descriptors open`);
  }
  assert.deepEqual((await mta.spoolMetas()).map((m) => m.id), [warm.first]);
  assert.deepEqual(daemonFaults(mta), []);
  assert.equal(await mta.stop(), 0);
});

// ---------------------------------------------------------------- structured hostility

const VERBS = [
  "EHLO",
  "HELO",
  "LHLO",
  "MAIL FROM:",
  "mail from:",
  "MAIL FROM :",
  "RCPT TO:",
  "RCPT  TO:",
  "DATA",
  "BDAT",
  "RSET",
  "NOOP",
  "VRFY",
  "EXPN",
  "HELP",
  "AUTH",
  "STARTTLS",
  "XCLIENT",
  "XFORWARD",
  "QUIT",
  "",
  ".",
  "From:",
];

const ARGS = [
  "<alice@ours.test>",
  "<carol@ours.test>",
  "<bob@remote.test>",
  "<>",
  "<@relay.test:bob@remote.test>",
  "<bob@[127.0.0.1]>",
  '<"a b\\"c"@remote.test>',
  "<a@b>",
  "<alice@ours.test> SIZE=99999999999999999999",
  "<alice@ours.test> SIZE=-1",
  "<alice@ours.test> BODY=8BITMIME SMTPUTF8",
  "<alice@ours.test> AUTH=<>",
  "<bob@remote.test> NOTIFY=NEVER ORCPT=rfc822;x",
  "<bøb@rémote.test>",
  "PLAIN",
  "LOGIN",
  "CRAM-MD5",
  "XOAUTH2",
  "PLAIN =",
  `PLAIN ${plainBlob("bob@ours.test", ALICE.user, ALICE.pass)}`,
  "*",
];

/** One hostile command line: a verb, odd spacing, an argument from a hostile mix, any line end. */
const hostileLine = fc.tuple(
  fc.constantFrom(...VERBS),
  fc.constantFrom(" ", "", "  ", "\t"),
  fc.oneof(
    fc.constantFrom(...ARGS),
    fc.string({ unit: "binary", maxLength: 40 }),
    fc.string({
      unit: fc.constantFrom("\0", "\r", "\n", "<", ">", "@", ":", " ", ".", "\x1b", "\u2028", "é"),
      maxLength: 30,
    }),
    fc.nat(20_000).map((n) => "x".repeat(n)),
    fc.base64String({ maxLength: 60 }),
  ),
  fc.constantFrom("\r\n", "\r\n", "\r\n", "\n", "\r", ""),
).map(([verb, space, arg, end]) => `${verb}${space}${arg}${end}`);

/** A body line: header-ish, dots, NUL, over-long, or any code points; any line end. */
const bodyLine = fc.tuple(
  fc.oneof(
    fc.constantFrom(
      "From: alice@ours.test",
      "From: bob@remote.test",
      "From: Alice <alice@ours.test>, bob@remote.test",
      "Subject: hostile",
      "Bcc: carol@remote.test",
      "Message-ID: <x@y>",
      "",
      ".",
      "..",
      ". ",
      "\0",
      "x".repeat(999),
      "MAIL FROM:<alice@ours.test>",
    ),
    fc.string({ unit: "binary", maxLength: 80 }),
    fc.string({ unit: fc.constantFrom("\r", "\n", "\0", ".", "a", " "), maxLength: 20 }),
  ),
  fc.constantFrom("\r\n", "\r\n", "\n", "\r"),
).map(([text, end]) => text + end);

/** Mostly `valid`, sometimes a hostile line instead. */
function mostly(valid: string): fc.Arbitrary<string> {
  return fc.oneof({ arbitrary: fc.constant(valid), weight: 3 }, {
    arbitrary: hostileLine,
    weight: 1,
  });
}

/** A transaction whose steps are each mostly the valid one, sometimes a hostile line. */
const transaction = fc.record({
  mail: mostly("MAIL FROM:<alice@ours.test>\r\n"),
  rcpts: fc.array(mostly("RCPT TO:<bob@remote.test>\r\n"), { minLength: 1, maxLength: 3 }),
  data: mostly("DATA\r\n"),
  body: fc.array(bodyLine, { maxLength: 8 }),
  // Only the first is the end of DATA (RFC 5321 §4.1.1.4); the others must not end it.
  end: fc.constantFrom("\r\n.\r\n", ".\r\n", "\n.\n", "\r\n.\n", "\n.\r\n", "\r.\r", ""),
}).map((t) => t.mail + t.rcpts.join("") + t.data + t.body.join("") + t.end);

const hostileSession = fc.record({
  start: fc.constantFrom("plain", "tls", "authed", "authed"),
  lines: fc.tuple(
    fc.array(hostileLine, { maxLength: 4 }),
    fc.array(transaction, { maxLength: 2 }),
    fc.array(hostileLine, { maxLength: 3 }),
  ).map(([before, transactions, after]) => [...before, ...transactions, ...after]),
});

// Ends whatever the lines left open: a DATA (the dot), an AUTH exchange
// (RFC 4954 §4: "*" cancels it), then QUIT.
const TAIL = "\r\n.\r\n*\r\n*\r\nQUIT\r\n";

Deno.test(`R13: hostile SMTP-shaped command lines get well-formed replies (seed ${FUZZ_SEED})`, async () => {
  await using mta = await Mta.start({
    config: { server: { max_connections_per_ip: 1000 }, delivery: refusedRelay() },
  });
  let sessions = 0;
  await fc.assert(
    fc.asyncProperty(hostileSession, async ({ start, lines }) => {
      sessions++;
      using smtp = start === "authed"
        ? await mta.authed()
        : start === "tls"
        ? await mta.authedOrNot()
        : await mta.connect();
      if (start === "plain") await smtp.expect(220);
      await smtp.write(lines.join("") + TAIL).catch(() => {});
      // The server must end the session (QUIT, a 421) and say nothing but
      // SMTP replies meanwhile. The one exception: a STARTTLS it accepted
      // (220) leaves it waiting for a handshake; what was pipelined after
      // the STARTTLS, TAIL included, is rightly dropped (RFC 3207 §5).
      while (true) {
        let reply: SmtpReply;
        try {
          reply = await smtp.reply(10_000);
        } catch (error) {
          if (!smtp.eof) throw error;
          assert.equal(await smtp.readToEnd(), "", "a partial reply before the close");
          break;
        }
        for (const line of reply.raw.split("\n")) {
          assert.match(line, /^[2-5]\d\d[ -]/, `not an SMTP reply: ${JSON.stringify(line)}`);
        }
        if (reply.code === 220) break;
      }
    }),
    { seed: FUZZ_SEED, numRuns: 300, plugins: [fc.interruptAfterTimeLimit(120_000)] },
  );
  assert.ok(alive(mta.pid), `the daemon died:\n${mta.stderr}`);
  assert.deepEqual(daemonFaults(mta), []);
  // Whatever got through was stored well-formed: CRLF only, lines within
  // RFC 5322's 998 octets, a sender alice owns, routable recipients only.
  for (const meta of await mta.spoolMetas()) {
    assert.match(String(meta.from), /^[^@\s]+@ours\.test$/, `${meta.id}: sender ${meta.from}`);
    const bytes = await mta.readEml(meta.id as string);
    assert.deepEqual(bareLineEnds(bytes), [], `${meta.id}: bare line ends`);
    assert.ok(
      latin1.decode(bytes).split("\r\n").every((l) => l.length <= 998),
      `${meta.id}: line over 998`,
    );
    for (const r of meta.recipients as { address: string }[]) {
      assert.match(r.address, /^[^@\s]+@[^@\s[\]]+\.[^@\s[\]]+$/, `${meta.id}: ${r.address}`);
    }
  }
  // deno-lint-ignore no-console
  console.error(`R13 property: ${sessions} sessions, ${(await mta.spoolMetas()).length} spooled`);
  assert.equal(await mta.stop(), 0);
});
