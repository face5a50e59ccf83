import { deepStrictEqual as assertEquals, ok } from "node:assert/strict";
import {
  haveTool,
  ScriptedMx,
  type ScriptedMxOptions,
  selfSignedCert,
  sessionOptions,
  withMx,
} from "./_test_server.ts";
import { openSession } from "./open_session.ts";
import { SmtpError } from "./smtp_error.ts";

const HAVE_OPENSSL = await haveTool("openssl", ["version"]);
const cert = HAVE_OPENSSL ? await selfSignedCert("mx.test") : { cert: "", key: "" };
const ignore = !HAVE_OPENSSL;
const BODY = new TextEncoder().encode("Subject: t\r\n\r\nhi\r\n");

/** A fake MX that offers STARTTLS with the self-signed certificate. */
function withTlsMx(mxOpts: ScriptedMxOptions, fn: (mx: ScriptedMx) => Promise<void>) {
  return withMx({ cert, ...mxOpts }, fn);
}

Deno.test({
  name: "opportunistic STARTTLS with a self-signed certificate is encrypted but not verified",
  ignore,
}, async () => {
  await withTlsMx({}, async (mx) => {
    const s = await openSession(sessionOptions(mx));
    assertEquals([s.tls.used, s.tls.verified, s.tls.version], [true, false, "TLSv1.3"]);
    const res = await s.send({ from: "a@ours.test", recipients: ["b@x.test"], body: BODY });
    assertEquals(res.data?.code, 250);
    await s.quit();
    ok(mx.conns[0].tls);
    assertEquals(mx.conns.length, 1);
  });
});

Deno.test({
  name: "verify refuses a self-signed certificate (temporary) and accepts it with caCerts",
  ignore,
}, async () => {
  await withTlsMx({}, async (mx) => {
    const err = await openSession(sessionOptions(mx, { tls: "verify" })).catch((e) => e);
    ok(err instanceof SmtpError, String(err));
    assertEquals([err.stage, err.temporary], ["tls", true]);
    ok(err.message.includes("self-signed"), err.message);
    const s = await openSession(sessionOptions(mx, { tls: "verify", caCerts: [cert.cert] }));
    assertEquals([s.tls.used, s.tls.verified], [true, true]);
    await s.quit();
    const wrong = await openSession(
      sessionOptions(mx, { tls: "verify", caCerts: [cert.cert], host: "other.test" }),
    )
      .catch((e) => e);
    assertEquals([wrong.stage, wrong.temporary], ["tls", true]);
  });
});

Deno.test(
  { name: "bytes injected after the STARTTLS 220 abort the session (TLS-C-01)", ignore },
  async () => {
    const reply = (
      l: string,
    ) => (l === "STARTTLS" ? "220 2.0.0 Ready\r\n250-injected\r\n250 AUTH PLAIN\r\n" : undefined);
    await withTlsMx({ reply }, async (mx) => {
      const err = await openSession(sessionOptions(mx)).catch((e) => e);
      ok(err instanceof SmtpError, String(err));
      assertEquals([err.stage, err.temporary], ["starttls", true]);
      ok(err.message.includes("after its 220"), err.message);
      assertEquals(mx.conns.length, 1);
    });
  },
);

Deno.test(
  { name: "the post-TLS EHLO list replaces the pre-TLS one (TLS-C-02)", ignore },
  async () => {
    const ehlo = (
      tls: boolean,
    ) => (tls ? ["SIZE 50000000", "AUTH PLAIN"] : ["SIZE 10", "STARTTLS"]);
    await withTlsMx({ ehlo }, async (mx) => {
      const s = await openSession(sessionOptions(mx));
      assertEquals([...s.extensions], [["SIZE", "50000000"], ["AUTH", "PLAIN"]]);
      const res = await s.send({ from: "a@ours.test", recipients: ["b@x.test"], body: BODY });
      assertEquals(res.data?.code, 250);
      await s.quit();
      assertEquals(mx.conns[0].commands.filter((c) => c.startsWith("EHLO")).length, 2);
    });
  },
);

Deno.test({
  name: "TLS-C-06: no STARTTLS: plaintext under opportunistic, temporary error under required",
  ignore,
}, async () => {
  await withTlsMx({ ehlo: () => ["PIPELINING"] }, async (mx) => {
    const s = await openSession(sessionOptions(mx));
    assertEquals(s.tls.used, false);
    ok(s.tls.fallbackReason?.includes("does not offer STARTTLS"));
    await s.quit();
    const err = await openSession(sessionOptions(mx, { tls: "required" })).catch((e) => e);
    assertEquals([err.name, err.stage, err.temporary], ["SmtpError", "starttls", true]);
  });
});

Deno.test({
  name: "454 to STARTTLS: plaintext under opportunistic, defer under required (TLS-C-03)",
  ignore,
}, async () => {
  const reply = (l: string) => (l === "STARTTLS" ? "454 4.7.0 TLS not available\r\n" : undefined);
  await withTlsMx({ reply }, async (mx) => {
    const s = await openSession(sessionOptions(mx));
    assertEquals(s.tls.used, false);
    const res = await s.send({ from: "a@ours.test", recipients: ["b@x.test"], body: BODY });
    assertEquals(res.data?.code, 250);
    await s.quit();
    const err = await openSession(sessionOptions(mx, { tls: "verify" })).catch((e) => e);
    assertEquals([err.stage, err.temporary], ["starttls", true]);
  });
});

Deno.test({
  name: "TLS-C-04/05: a failed handshake falls back to one new plaintext connection",
  ignore,
}, async () => {
  // The "server" answers 220 and then sends garbage instead of a ServerHello.
  const reply = (l: string, c: { socket: { write(s: string): void } }) => {
    if (l !== "STARTTLS") return undefined;
    c.socket.write("220 go\r\n");
    setTimeout(() => c.socket.write("this is not TLS\r\n".repeat(10)), 20);
    return "";
  };
  await withTlsMx({ reply }, async (mx) => {
    const s = await openSession(sessionOptions(mx, { timeouts: { starttls: 2000 } }));
    assertEquals(s.tls.used, false);
    ok(s.tls.fallbackReason?.includes("TLS handshake"), s.tls.fallbackReason ?? "");
    await s.quit();
    assertEquals(mx.conns.length, 2);
    ok(!mx.conns[1].commands.includes("STARTTLS"));
    const err = await openSession(
      sessionOptions(mx, { tls: "required", timeouts: { starttls: 2000 } }),
    )
      .catch((e) => e);
    assertEquals([err.stage, err.temporary], ["tls", true]);
    assertEquals(mx.conns.length, 3);
  });
});

Deno.test({
  name:
    "TLS-C-05: a server that closes during the handshake or never answers the ClientHello: bounded, then one plaintext connection that delivers",
  ignore,
}, async () => {
  const closes = (l: string, c: { socket: { write(s: string): void; destroy(): void } }) => {
    if (l !== "STARTTLS") return undefined;
    c.socket.write("220 go\r\n");
    setTimeout(() => c.socket.destroy(), 20);
    return "";
  };
  // Without a certificate the fake MX reads the ClientHello and never answers it.
  const silent = await ScriptedMx.start({ ehlo: () => ["PIPELINING", "STARTTLS"] });
  const closing = await ScriptedMx.start({ cert, reply: closes });
  try {
    for (const [what, mx] of [["silent", silent], ["closes", closing]] as const) {
      const started = Date.now();
      const s = await openSession(sessionOptions(mx, { timeouts: { starttls: 500 } }));
      ok(Date.now() - started < 3000, `${what}: took ${Date.now() - started} ms`);
      assertEquals(s.tls.used, false, what);
      ok(s.tls.fallbackReason?.includes("TLS handshake"), s.tls.fallbackReason ?? "");
      const res = await s.send({ from: "a@ours.test", recipients: ["b@x.test"], body: BODY });
      assertEquals(res.data?.code, 250, what);
      await s.quit();
      assertEquals(mx.conns.length, 2, `${what}: exactly one new connection, no loop`);
      assertEquals(mx.conns[1].commands.filter((c) => c === "STARTTLS"), [], what);
      assertEquals(mx.conns[1].messages.length, 1, what);
    }
  } finally {
    await silent.close();
    await closing.close();
  }
});

Deno.test({ name: "AUTH is never sent without TLS", ignore }, async () => {
  await withTlsMx({ ehlo: () => ["AUTH PLAIN LOGIN"] }, async (mx) => {
    const err = await openSession(
      sessionOptions(mx, { auth: { username: "u", password: "secret" } }),
    ).catch((
      e,
    ) => e);
    assertEquals([err.stage, err.temporary], ["auth", true]);
    ok(!mx.wireText().includes("AUTH"));
  });
});

Deno.test({ name: "AUTH PLAIN over STARTTLS, LOGIN as a fallback", ignore }, async () => {
  const reply = (l: string) => {
    if (l.startsWith("AUTH PLAIN")) {
      return l === `AUTH PLAIN ${btoa("\0u\0secret")}` ? "235 2.7.0 ok\r\n" : "535 5.7.8 no\r\n";
    }
    if (l === "AUTH LOGIN") return "334 VXNlcm5hbWU6\r\n";
    if (l === btoa("u")) return "334 UGFzc3dvcmQ6\r\n";
    if (l === btoa("secret")) return "235 2.7.0 ok\r\n";
    return undefined;
  };
  for (const mechs of ["PLAIN LOGIN", "LOGIN"]) {
    await withTlsMx(
      { reply, ehlo: (tls) => (tls ? [`AUTH ${mechs}`] : ["STARTTLS"]) },
      async (mx) => {
        const s = await openSession(
          sessionOptions(mx, { tls: "required", auth: { username: "u", password: "secret" } }),
        );
        ok(s.usable);
        await s.quit();
      },
    );
  }
  await withTlsMx({ reply, ehlo: (tls) => (tls ? ["AUTH PLAIN"] : ["STARTTLS"]) }, async (mx) => {
    const err = await openSession(
      sessionOptions(mx, { auth: { username: "u", password: "wrong" } }),
    ).catch((
      e,
    ) => e);
    assertEquals([err.stage, err.temporary, err.reply?.code], ["auth", true, 535]);
  });
});

Deno.test(
  { name: "implicit TLS (port 465 style) works and verifies with caCerts", ignore },
  async () => {
    await withTlsMx({
      implicitTls: true,
      ehlo: () => ["AUTH PLAIN"],
      reply: (l) => (l.startsWith("AUTH") ? "235 ok\r\n" : undefined),
    }, async (mx) => {
      const s = await openSession(
        sessionOptions(mx, {
          implicitTls: true,
          tls: "verify",
          caCerts: [cert.cert],
          auth: { username: "u", password: "p" },
        }),
      );
      assertEquals([s.tls.used, s.tls.verified], [true, true]);
      await s.quit();
    });
  },
);

Deno.test({
  name: "a TLS handshake that never completes is bounded by the starttls timeout",
  ignore,
}, async () => {
  const silent = await ScriptedMx.start({
    reply: (l) => (l === "STARTTLS" ? "220 go\r\n" : undefined),
    ehlo: () => ["STARTTLS"],
  });
  try {
    const started = Date.now();
    const err = await openSession(
      sessionOptions(silent, { tls: "required", timeouts: { starttls: 300 } }),
    )
      .catch((e) => e);
    assertEquals([err.stage, err.temporary], ["tls", true]);
    ok(/timed out/i.test(err.message), err.message);
    ok(Date.now() - started < 2000);
  } finally {
    await silent.close();
  }
});
