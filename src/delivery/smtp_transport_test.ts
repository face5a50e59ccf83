import assert from "node:assert/strict";
import type { RouteResult } from "../dns/mod.ts";
// The smtp_client folder's scripted MX, the one fake receiver the unit tests share.
import { ScriptedMx, withMx } from "../smtp_client/_test_server.ts";
import { type AttemptRequest, type RouteLookup, SmtpTransport } from "./smtp_transport.ts";

const body = new TextEncoder().encode("From: a@ours.test\r\nSubject: t\r\n\r\nhello\r\n");

/** A resolver that routes every domain to `hosts` (name → address), in that order. */
function routeTo(hosts: [string, string][]): RouteLookup {
  const route: RouteResult = {
    kind: "ok",
    implicit: false,
    targets: hosts.map(([host, ip], i) => ({ host, preference: 10 * (i + 1), addresses: [ip] })),
  };
  return {
    route: () => Promise.resolve(route),
    resolveHost: () => Promise.resolve({ kind: "ok", addresses: [] }),
  };
}

function transport(mx: { port: number }, resolver: RouteLookup): SmtpTransport {
  return new SmtpTransport({
    resolver,
    heloName: "out.ours.test",
    port: mx.port,
    tls: "opportunistic",
    sourceAddress: "",
    relay: null,
    allowLoopback: true,
    timeouts: {},
    caCerts: [],
  });
}

function request(recipients: string[]): AttemptRequest {
  return {
    from: "a@ours.test",
    domain: "dest.test",
    recipients,
    body,
    smtputf8: false,
    eightBit: false,
  };
}

Deno.test("SmtpTransport.attempt() gives each recipient its own outcome: delivered, temporary, permanent", async () => {
  const replies: Record<string, string> = {
    "RCPT TO:<busy@dest.test>": "450 4.2.1 Mailbox busy\r\n",
    "RCPT TO:<gone@dest.test>": "550 5.1.1 No such user\r\n",
  };
  await withMx({ reply: (line) => replies[line] }, async (mx) => {
    const t = transport(mx, routeTo([["mx1.dest.test", "127.0.0.1"]]));
    try {
      const outcomes = await t.attempt(
        request(["ok@dest.test", "busy@dest.test", "gone@dest.test"]),
      );
      assert.deepEqual(
        outcomes.map((o) => [o.address, o.kind, o.code, o.status]),
        [
          ["ok@dest.test", "delivered", 250, "2.0.0"],
          ["busy@dest.test", "temporary", 450, "4.2.1"],
          ["gone@dest.test", "permanent", 550, "5.1.1"],
        ],
      );
      assert.ok(
        outcomes.every((o) => o.remote === "mx1.dest.test[127.0.0.1]"),
        JSON.stringify(outcomes),
      );
      assert.equal(mx.conns[0].messages.length, 1, "one DATA, for the accepted recipient");
    } finally {
      await t.close();
    }
  });
});

Deno.test("SmtpTransport.attempt() goes on to the next MX when the first refuses the connection", async () => {
  // Nothing listens on 127.0.0.2 at the scripted MX's port: connection refused.
  await withMx({}, async (mx) => {
    const t = transport(
      mx,
      routeTo([["mx1.dest.test", "127.0.0.2"], ["mx2.dest.test", "127.0.0.1"]]),
    );
    try {
      const [outcome] = await t.attempt(request(["bob@dest.test"]));
      assert.equal(outcome.kind, "delivered");
      assert.equal(outcome.remote, "mx2.dest.test[127.0.0.1]");
      assert.equal(mx.conns[0].messages.length, 1);
    } finally {
      await t.close();
    }
  });
});

Deno.test("SmtpTransport.attempt() defers every recipient with 4.4.1 when no MX can be reached", async () => {
  const gone = await ScriptedMx.start();
  const port = gone.port;
  await gone.close();
  const t = transport({ port }, routeTo([["mx1.dest.test", "127.0.0.1"]]));
  try {
    const outcomes = await t.attempt(request(["a@dest.test", "b@dest.test"]));
    assert.deepEqual(outcomes.map((o) => [o.address, o.kind, o.status]), [
      ["a@dest.test", "temporary", "4.4.1"],
      ["b@dest.test", "temporary", "4.4.1"],
    ]);
  } finally {
    await t.close();
  }
});
