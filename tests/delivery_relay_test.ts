/**
 * Smarthost delivery (`delivery.relay_host`): all mail goes to the relay,
 * whatever the recipient domain, without MX lookups; AUTH goes only inside
 * TLS. The relay here is a real SMTP server (npm smtp-server, as many
 * relays are), requiring AUTH and offering STARTTLS with a self-signed
 * certificate, or, in the second case, no STARTTLS at all.
 */
import assert from "node:assert/strict";
import { SMTPServer } from "smtp-server";
import { freePorts, Mta, waitFor } from "./_harness.ts";
import { isGone, submit } from "./_delivery.ts";
import { loopbackNet } from "./_mx.ts";
import { writeSelfSignedCertificate } from "../src/cli/first_start.ts";

interface RelaySeen {
  auth: { username: string; secure: boolean }[];
  messages: { from: string; to: string[]; secure: boolean; user: string | null; data: string }[];
}

async function startRelay(
  host: string,
  port: number,
  certs: { cert: string; key: string },
  starttls: boolean,
) {
  const seen: RelaySeen = { auth: [], messages: [] };
  const server = new SMTPServer({
    key: certs.key,
    cert: certs.cert,
    hideSTARTTLS: !starttls,
    authMethods: ["PLAIN", "LOGIN"],
    allowInsecureAuth: true, // so that a client sending AUTH in plaintext would be seen, not refused
    logger: false,
    onAuth(auth, session, cb) {
      seen.auth.push({ username: auth.username ?? "", secure: session.secure });
      if (auth.username === "relayuser" && auth.password === "relay-Secret-1") {
        return cb(null, { user: "relayuser" });
      }
      cb(new Error("Invalid credentials"));
    },
    onData(stream, session, cb) {
      const chunks: Uint8Array[] = [];
      stream.on("data", (c: Uint8Array) => chunks.push(c));
      stream.on("end", () => {
        seen.messages.push({
          from: session.envelope.mailFrom ? session.envelope.mailFrom.address : "",
          to: session.envelope.rcptTo.map((r) => r.address),
          secure: session.secure,
          user: (session.user as string | undefined) ?? null,
          data: new TextDecoder().decode(new Uint8Array(chunks.flatMap((c) => [...c]))),
        });
        cb();
      });
    },
  });
  await new Promise<void>((resolve) => server.listen(port, host, resolve));
  return { seen, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

// An RSA self-signed certificate: Deno's node:tls server side refuses the
// EC keys of tests/_mx.ts makeCerts() ("unsupported protocol").
async function relayCert(dir: string): Promise<{ cert: string; key: string }> {
  await writeSelfSignedCertificate(`${dir}/relay.crt`, `${dir}/relay.key`, "relay.test");
  return {
    cert: await Deno.readTextFile(`${dir}/relay.crt`),
    key: await Deno.readTextFile(`${dir}/relay.key`),
  };
}

type Relay = Awaited<ReturnType<typeof startRelay>>;

// A relay (with or without STARTTLS) and a daemon that sends everything to
// it with AUTH; both torn down afterwards.
async function withRelay(starttls: boolean, fn: (relay: Relay, mta: Mta) => Promise<void>) {
  const net = loopbackNet();
  const [port] = freePorts(1);
  const dir = await Deno.makeTempDir();
  const relay = await startRelay(net(2), port, await relayCert(dir), starttls);
  try {
    await using mta = await Mta.start({
      config: {
        delivery: {
          relay_host: `${net(2)}:${port}`,
          relay_username: "relayuser",
          relay_password: "relay-Secret-1",
          // An MX lookup would fail and defer: the relay must be used without one.
          dns_servers: ["127.0.0.1:9"],
          retry_schedule: ["1s"],
        },
      },
    });
    await fn(relay, mta);
  } finally {
    await relay.close();
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test({
  name: "smarthost: every domain goes to the relay, over STARTTLS, with AUTH, and no MX lookup",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await withRelay(true, async (relay, mta) => {
      const id = await submit(mta, { to: ["bob@dest.test", "carol@elsewhere.test"] });
      await waitFor(
        "the relay to get the message",
        () => Promise.resolve(relay.seen.messages.length >= 1),
        20_000,
      );
      await waitFor("the message to leave the queue", () => isGone(mta, id), 10_000);
      const got = relay.seen.messages;
      assert.deepEqual(got.flatMap((m) => m.to).sort(), ["bob@dest.test", "carol@elsewhere.test"]);
      assert.ok(
        got.every((m) => m.secure && m.user === "relayuser"),
        JSON.stringify(got.map((m) => [m.secure, m.user])),
      );
      assert.ok(relay.seen.auth.every((a) => a.secure), "AUTH only inside TLS");
      assert.match(got[0].data, /^Received: from /m);
      assert.ok(!mta.stdout.includes("relay-Secret-1"), "the relay password is never logged");
    });
  },
});

Deno.test({
  name: "smarthost without STARTTLS: AUTH is never sent in plaintext, the mail waits",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await withRelay(false, async (relay, mta) => {
      const id = await submit(mta, { to: ["bob@dest.test"] });
      await waitFor("two attempts", async () => {
        const entry = (await mta.queueList()).find((e) => e.id === id);
        return (entry?.recipients[0].attempts ?? 0) >= 2;
      }, 20_000);
      const entry = (await mta.queueList()).find((e) => e.id === id)!;
      assert.equal(entry.recipients[0].status, "deferred");
      assert.deepEqual(relay.seen.auth, [], "no AUTH attempt at all over plaintext");
      assert.deepEqual(relay.seen.messages, []);
    });
  },
});
