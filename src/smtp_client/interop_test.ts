import { deepStrictEqual as assertEquals, ok } from "node:assert/strict";
import { haveTool, selfSignedCert } from "./_test_server.ts";
import { openSession, type SessionOptions } from "./open_session.ts";

const SINK = "/usr/sbin/smtp-sink";
const AIOSMTPD = "/usr/bin/python3";
const HAVE_SINK = await haveTool(SINK, ["-V"]);
const HAVE_AIOSMTPD = await haveTool(AIOSMTPD, ["-c", "import aiosmtpd"], true);
// smtp-sink refuses to run as root without -u.
const SINK_USER = Deno.uid() === 0 ? ["-u", "nobody"] : [];
const HAVE_OPENSSL = await haveTool("openssl", ["version"]);
const BODY = new TextEncoder().encode("Subject: interop\r\n\r\n.leading dot\r\nline\r\n");

/** Session options for a real peer listening on loopback `port`. */
function peer(port: number, host: string): SessionOptions {
  return { host, ip: "127.0.0.1", port, heloName: "out.test", tls: "opportunistic" };
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

async function waitForPort(port: number): Promise<void> {
  for (let i = 0; i < 100; i++) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  throw new Error(`Nothing listens on port ${port}`);
}

async function withPeer(
  cmd: string,
  args: (port: number) => string[],
  fn: (port: number) => Promise<void>,
) {
  const port = freePort();
  const child = new Deno.Command(cmd, { args: args(port), stdout: "null", stderr: "null" }).spawn();
  try {
    await waitForPort(port);
    await fn(port);
  } finally {
    try {
      child.kill("SIGTERM");
    } catch {
      // Already gone.
    }
    await child.status;
  }
}

for (const flags of [[], ["-p"]]) {
  Deno.test({
    name: `DLV-18 interop: Postfix smtp-sink ${
      flags.join(" ") || "(PIPELINING)"
    } accepts a message`,
    ignore: !HAVE_SINK,
  }, async () => {
    await withPeer(
      "/usr/sbin/smtp-sink",
      (p) => [...SINK_USER, ...flags, `127.0.0.1:${p}`, "10"],
      async (port) => {
        const s = await openSession(peer(port, "sink.test"));
        assertEquals(s.extensions.has("PIPELINING"), flags.length === 0);
        const res = await s.send({
          from: "a@ours.test",
          recipients: ["b@x.test", "c@x.test"],
          body: BODY,
        });
        assertEquals(res.data?.code, 250);
        await s.reset();
        const again = await s.send({ from: "a@ours.test", recipients: ["d@x.test"], body: BODY });
        assertEquals(again.data?.code, 250);
        await s.quit();
      },
    );
  });
}

Deno.test({
  name: "interop: smtp-sink -r RCPT gives a temporary RCPT reply and no DATA",
  ignore: !HAVE_SINK,
}, async () => {
  await withPeer(
    "/usr/sbin/smtp-sink",
    (p) => [...SINK_USER, "-r", "RCPT", `127.0.0.1:${p}`, "10"],
    async (port) => {
      const s = await openSession(peer(port, "sink.test"));
      const res = await s.send({ from: "a@ours.test", recipients: ["b@x.test"], body: BODY });
      assertEquals(Math.floor(res.recipients[0].reply.code / 100), 4);
      assertEquals(res.data, null);
      await s.quit();
    },
  );
});

Deno.test({
  name: "interop: aiosmtpd STARTTLS with a self-signed certificate (opportunistic)",
  ignore: !HAVE_AIOSMTPD || !HAVE_OPENSSL,
}, async () => {
  const dir = await Deno.makeTempDir({ prefix: "minimta-aiosmtpd-" });
  try {
    const cert = await selfSignedCert("mx.test");
    await Deno.writeTextFile(`${dir}/cert.pem`, cert.cert);
    await Deno.writeTextFile(`${dir}/key.pem`, cert.key);
    const args = (p: number) => [
      "-m",
      "aiosmtpd",
      "-n",
      "-c",
      "aiosmtpd.handlers.Sink",
      "-l",
      `127.0.0.1:${p}`,
      "--tlscert",
      `${dir}/cert.pem`,
      "--tlskey",
      `${dir}/key.pem`,
    ];
    await withPeer(AIOSMTPD, args, async (port) => {
      const s = await openSession(peer(port, "mx.test"));
      assertEquals([s.tls.used, s.tls.verified], [true, false]);
      ok(s.tls.version?.startsWith("TLSv1."));
      const res = await s.send({ from: "a@ours.test", recipients: ["b@x.test"], body: BODY });
      assertEquals(res.data?.code, 250);
      await s.quit();
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
