import { deepStrictEqual as assertEquals, ok, rejects } from "node:assert/strict";
import { ScriptedMx, sessionOptions, withMx } from "./_test_server.ts";
import { openSession } from "./open_session.ts";
import { SmtpError } from "./smtp_error.ts";
import { classifyReply } from "./smtp_reply.ts";

const enc = new TextEncoder();
const BODY = enc.encode("From: a@ours.test\r\nSubject: t\r\n\r\n.dot line\r\nbare\nLF\r\n");

Deno.test("DLV-18: send() pipelines MAIL, RCPT and DATA in one write, sends nothing more before the 354, and puts safe bytes on the wire", async () => {
  await withMx({ goAheadDelayMs: 150 }, async (mx) => {
    const s = await openSession(sessionOptions(mx));
    const res = await s.send({
      from: "a@ours.test",
      recipients: ["b@x.test", "c@x.test"],
      body: BODY,
    });
    await s.quit();
    assertEquals(res.data?.code, 250);
    assertEquals(res.recipients.map((r) => r.reply.code), [250, 250]);
    const c = mx.conns[0];
    assertEquals(c.pipelined, [
      "MAIL FROM:<a@ours.test> SIZE=53",
      "RCPT TO:<b@x.test>",
      "RCPT TO:<c@x.test>",
    ]);
    const wire = new TextDecoder().decode(c.messages[0]);
    assertEquals(wire, "From: a@ours.test\r\nSubject: t\r\n\r\n..dot line\r\nbare\r\nLF\r\n.\r\n");
    assertEquals(c.commands.at(-1), "QUIT");
    assertEquals(c.earlyBytes, [0], "no body byte before the 354 (RFC 2920 §3.1)");
  });
});

Deno.test("DLV-18: send() goes lock-step without PIPELINING: one command per reply, no body before the 354", async () => {
  await withMx({ ehlo: () => ["SIZE 1000"], goAheadDelayMs: 150 }, async (mx) => {
    const s = await openSession(sessionOptions(mx));
    const res = await s.send({
      from: "a@ours.test",
      recipients: ["b@x.test", "c@x.test"],
      body: BODY,
    });
    await s.quit();
    assertEquals(res.data?.code, 250);
    assertEquals(mx.conns[0].pipelined, []);
    assertEquals(mx.conns[0].earlyBytes, [0]);
  });
});

for (const pipelining of [true, false]) {
  Deno.test(`DLV-10/DLV-18: send() maps mixed per-recipient replies in order (pipelining=${pipelining})`, async () => {
    const rcpt = (l: string) =>
      l.startsWith("RCPT")
        ? l.includes("temp")
          ? "450 4.2.1 busy\r\n"
          : l.includes("gone")
          ? "550 5.1.1 no such user\r\n"
          : undefined
        : undefined;
    const ehlo = () => pipelining ? ["PIPELINING"] : ["8BITMIME"];
    await withMx({ reply: rcpt, ehlo }, async (mx) => {
      const s = await openSession(sessionOptions(mx));
      const res = await s.send({
        from: "a@ours.test",
        recipients: ["ok@x.test", "temp@x.test", "gone@x.test"],
        body: BODY,
      });
      assertEquals(res.recipients.map((r) => [r.reply.code, classifyReply(r.reply)]), [
        [250, "success"],
        [450, "temporary"],
        [550, "permanent"],
      ]);
      assertEquals(res.data?.code, 250);
      assertEquals(mx.conns[0].messages.length, 1);
      await s.reset();
      const again = await s.send({ from: "a@ours.test", recipients: ["gone@x.test"], body: BODY });
      assertEquals(again.data, null);
      // RFC 2920 §3.1: a pipelined DATA that got 354 with no valid recipient ends empty.
      const after = mx.conns[0].messages.slice(1).map((m) => new TextDecoder().decode(m));
      assertEquals(after, pipelining ? [".\r\n"] : []);
      await s.quit();
    });
  });
}

Deno.test("DLV-11: send() sends no DATA when every recipient is refused (lock-step)", async () => {
  await withMx({
    ehlo: () => [],
    reply: (l) => (l.startsWith("RCPT") ? "550 5.1.1 no\r\n" : undefined),
  }, async (mx) => {
    const s = await openSession(sessionOptions(mx));
    const res = await s.send({
      from: "a@ours.test",
      recipients: ["x@x.test", "y@x.test"],
      body: BODY,
    });
    assertEquals(res.data, null);
    ok(!mx.conns[0].commands.includes("DATA"));
    await s.quit();
  });
});

Deno.test("DLV-14: DATA answered 451 or 250 instead of 354: no body is sent, a temporary failure", async () => {
  await withMx(
    { reply: (l) => (l === "DATA" ? "451 4.3.0 try later\r\n" : undefined) },
    async (mx) => {
      const s = await openSession(sessionOptions(mx));
      const res = await s.send({ from: "a@ours.test", recipients: ["b@x.test"], body: BODY });
      assertEquals(res.data, null);
      assertEquals(res.recipients[0].reply.code, 451);
      assertEquals(classifyReply(res.recipients[0].reply), "temporary");
      assertEquals(mx.conns[0].messages.length, 0);
      ok(!mx.wireText().includes("Subject: t"), "no body on the wire");
      ok(s.usable);
      await s.quit();
    },
  );
  await withMx(
    { reply: (l) => (l === "DATA" ? "250 2.0.0 ok\r\n" : undefined) },
    async (mx) => {
      const s = await openSession(sessionOptions(mx));
      const err = await s.send({ from: "a@ours.test", recipients: ["b@x.test"], body: BODY })
        .catch((e) => e);
      ok(err instanceof SmtpError && err.temporary, String(err));
      ok(err.message.includes("instead of 354"), err.message);
      ok(!s.usable, "the connection is closed: its state is unknown");
      ok(!mx.wireText().includes("Subject: t"), "no body on the wire");
      await s.quit();
    },
  );
});

Deno.test("send() refuses locally: SIZE limit 5.3.4 and SMTPUTF8 not offered 5.6.7", async () => {
  await withMx({ ehlo: () => ["SIZE 20", "PIPELINING"] }, async (mx) => {
    const s = await openSession(sessionOptions(mx));
    const big = await s.send({ from: "a@ours.test", recipients: ["b@x.test"], body: BODY });
    assertEquals([big.mail.code, big.mail.enhanced, big.mail.local], [552, "5.3.4", true]);
    assertEquals(classifyReply(big.recipients[0].reply), "permanent");
    const utf8 = await s.send({
      from: "a@ours.test",
      recipients: ["jörg@x.test"],
      body: enc.encode("x"),
    });
    assertEquals([utf8.mail.code, utf8.mail.enhanced], [553, "5.6.7"]);
    ok(!mx.conns[0].commands.some((c) => c.startsWith("MAIL")));
    await s.quit();
  });
});

Deno.test("send() adds BODY=8BITMIME and SMTPUTF8 when needed and offered", async () => {
  await withMx({ ehlo: () => ["8BITMIME", "SMTPUTF8"] }, async (mx) => {
    const s = await openSession(sessionOptions(mx));
    await s.send({
      from: "a@ours.test",
      recipients: ["jörg@x.test"],
      body: enc.encode("gr\u00fc\u00df\r\n"),
    });
    await s.quit();
    assertEquals(mx.conns[0].commands[1], "MAIL FROM:<a@ours.test> BODY=8BITMIME SMTPUTF8");
  });
});

Deno.test("send() never puts a CR or LF from an address on the wire", async () => {
  await withMx({}, async (mx) => {
    const s = await openSession(sessionOptions(mx));
    const res = await s.send({
      from: "a@ours.test",
      recipients: ["b@x.test\r\nRSET", "ok@x.test"],
      body: BODY,
    });
    await s.quit();
    assertEquals(res.recipients.map((r) => r.reply.code), [553, 250]);
    ok(!mx.conns[0].commands.includes("RSET"));
  });
});

Deno.test("DLV-06: a 421 after RCPT makes the session unusable and temp-fails the rest", async () => {
  await withMx({
    reply: (l) => (l.includes("second") ? "421 4.3.2 shutting down\r\n" : undefined),
    ehlo: () => [],
  }, async (mx) => {
    const s = await openSession(sessionOptions(mx));
    const res = await s.send({
      from: "a@ours.test",
      recipients: ["first@x.test", "second@x.test", "third@x.test"],
      body: BODY,
    });
    assertEquals(res.recipients.map((r) => r.reply.code), [421, 421, 421]);
    assertEquals(res.data, null);
    ok(!s.usable);
    await rejects(s.reset(), SmtpError);
    await s.quit();
  });
});

Deno.test("openSession() falls back to HELO when EHLO gets a 5xx", async () => {
  await withMx(
    { reply: (l) => (l.startsWith("EHLO") ? "502 5.5.1 no EHLO here\r\n" : undefined) },
    async (mx) => {
      const s = await openSession(sessionOptions(mx));
      assertEquals(s.extensions.size, 0);
      const res = await s.send({ from: "a@ours.test", recipients: ["b@x.test"], body: BODY });
      assertEquals(res.data?.code, 250);
      assertEquals(mx.conns[0].commands.slice(0, 2), ["EHLO out.ours.test", "HELO out.ours.test"]);
      await s.quit();
    },
  );
});

const malformed = [
  "hello\r\n",
  "2500 ok\r\n",
  "250-a\r\n251 b\r\n",
  "220 hi\n",
  "220-x\r\n".repeat(300),
  `220 ${"x".repeat(100_000)}\r\n`,
];
/** Resolves once the server side of `conn` has seen the client close. */
function closedByClient(
  conn: { socket: { closed: boolean; once(e: "close", f: () => void): void } },
) {
  return new Promise<void>((r) => (conn.socket.closed ? r() : conn.socket.once("close", r)));
}

for (const greeting of malformed) {
  Deno.test(`DLV-16: openSession() treats a malformed greeting as a temporary protocol error and closes: ${JSON.stringify(greeting.slice(0, 12))}`, async () => {
    await withMx({ greeting }, async (mx) => {
      const err = await openSession(sessionOptions(mx)).catch((e) => e);
      ok(err instanceof SmtpError, String(err));
      assertEquals([err.stage, err.temporary], ["greeting", true]);
      ok(err.message.includes("Protocol error"), err.message);
      await closedByClient(mx.conns[0]);
    });
  });
}

Deno.test("DLV-16: a malformed reply inside a transaction is a temporary protocol error and closes", async () => {
  for (const bad of ["250 ok\n", "2500 ok\r\n", "250-a\r\n251 b\r\n", "hello\r\n"]) {
    await withMx({ reply: (l) => (l.startsWith("MAIL") ? bad : undefined) }, async (mx) => {
      const s = await openSession(sessionOptions(mx));
      const err = await s.send({ from: "a@ours.test", recipients: ["b@x.test"], body: BODY })
        .catch((e) => e);
      ok(err instanceof SmtpError && err.temporary, `${JSON.stringify(bad)}: ${err}`);
      ok(err.message.includes("Protocol error"), err.message);
      ok(!s.usable);
      await closedByClient(mx.conns[0]);
      assertEquals(mx.conns[0].messages.length, 0);
      await s.quit();
    });
  }
});

Deno.test("openSession() reports a 554 greeting as a permanent reply error", async () => {
  await withMx({ greeting: "554 5.7.1 go away\r\n" }, async (mx) => {
    const err = await openSession(sessionOptions(mx)).catch((e) => e);
    assertEquals([err.stage, err.temporary, err.reply?.code], ["greeting", false, 554]);
  });
});

Deno.test("DLV-16/DLV-17: a reply trickled byte by byte parses, but the deadline covers the whole reply", async () => {
  const mx = await ScriptedMx.start({ greeting: "" });
  try {
    const pending = openSession(sessionOptions(mx, { timeouts: { greeting: 2000 } }));
    await (await mx.connection(0)).trickle("220-mx.test\r\n220 hi\r\n", 1);
    const s = await pending;
    await s.quit();
  } finally {
    await mx.close();
  }
  const slow = await ScriptedMx.start({ greeting: "" });
  try {
    const started = Date.now();
    const pending = openSession(sessionOptions(slow, { timeouts: { greeting: 300 } })).catch((e) =>
      e
    );
    const trickling = (await slow.connection(0)).trickle(
      "220-" + "x".repeat(40) + "\r\n220 hi\r\n",
      20,
    );
    const err = await pending;
    ok(err instanceof SmtpError && err.message.includes("Timed out"), String(err));
    ok(Date.now() - started < 1000);
    await trickling;
  } finally {
    await slow.close();
  }
  // Inside a transaction too: the MAIL reply, one byte every 20 ms, against a 300 ms deadline.
  let trickled: Promise<void> = Promise.resolve();
  await withMx({
    ehlo: () => [],
    reply: (l, c) => {
      if (!l.startsWith("MAIL")) return undefined;
      trickled = c.trickle(`250 2.1.0 ${"x".repeat(40)}\r\n`, 20);
      return "";
    },
  }, async (mx) => {
    const s = await openSession(sessionOptions(mx, { timeouts: { mail: 300 } }));
    const started = Date.now();
    const err = await s.send({ from: "a@ours.test", recipients: ["b@x.test"], body: BODY })
      .catch((e) => e);
    ok(err instanceof SmtpError && err.temporary && err.stage === "mail", String(err));
    ok(err.message.includes("Timed out after 300 ms"), err.message);
    ok(Date.now() - started < 1000);
    ok(!s.usable);
    await trickled;
    await s.quit();
  });
});

Deno.test("openSession() fails fast with a temporary error when nothing listens", async () => {
  const mx = await ScriptedMx.start();
  const port = mx.port;
  await mx.close();
  const err = await openSession({
    host: "mx.test",
    ip: "127.0.0.1",
    port,
    heloName: "h.test",
    tls: "opportunistic",
  })
    .catch((e) => e);
  assertEquals([err.name, err.stage, err.temporary], ["SmtpError", "connect", true]);
});

Deno.test("openSession() binds the source address", async () => {
  await withMx({}, async (mx) => {
    const s = await openSession(sessionOptions(mx, { sourceAddress: "127.0.0.2" }));
    assertEquals(mx.conns[0].socket.remoteAddress, "127.0.0.2");
    await s.quit();
  });
});

Deno.test("a dropped connection mid-DATA is a temporary error", async () => {
  await withMx(
    { reply: (l, c) => (l === "DATA" ? (c.socket.destroy(), "") : undefined) },
    async (mx) => {
      const s = await openSession(sessionOptions(mx));
      const err = await s.send({ from: "a@ours.test", recipients: ["b@x.test"], body: BODY }).catch(
        (e) => e,
      );
      ok(err instanceof SmtpError && err.temporary, String(err));
      ok(!s.usable);
      await s.quit();
    },
  );
});

Deno.test("a refusal sent mid-body by a server that stops reading is the final reply, at once", async () => {
  await withMx(
    {
      reply: (l, c) => {
        if (l !== "DATA") return undefined;
        setTimeout(() => {
          c.write("554 5.7.1 content refused\r\n");
          c.socket.pause(); // reads nothing more: the client's writes stall
        }, 50);
        return "354 go ahead\r\n";
      },
    },
    async (mx) => {
      const s = await openSession(sessionOptions(mx));
      const body = enc.encode(
        "Subject: big\r\n\r\n" + "y".repeat(78).concat("\r\n").repeat(100_000),
      );
      const res = await s.send({ from: "a@ours.test", recipients: ["b@x.test"], body });
      assertEquals(res.data?.code, 554, JSON.stringify(res));
      assertEquals(classifyReply(res.data!), "permanent");
      ok(!s.usable, "the connection is closed: its state is unknown");
      assertEquals(mx.conns[0].messages.length, 0, "the final dot was never sent");
      await s.quit();
    },
  );
});

Deno.test("a positive reply before the end of the body is a temporary protocol error", async () => {
  await withMx(
    { reply: (l) => (l === "DATA" ? "354 go ahead\r\n250 2.0.0 thanks\r\n" : undefined) },
    async (mx) => {
      const s = await openSession(sessionOptions(mx));
      const err = await s.send({ from: "a@ours.test", recipients: ["b@x.test"], body: BODY })
        .catch((e) => e);
      ok(err instanceof SmtpError && err.temporary, String(err));
      ok(!s.usable);
      await s.quit();
    },
  );
});
