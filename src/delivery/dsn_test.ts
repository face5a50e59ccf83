import assert from "node:assert/strict";
import type { MailEvent } from "../events/mod.ts";
import { type MessageMeta, Spool } from "../spool/mod.ts";
import { bounceFailed, buildDsn, type FailedRecipient, warnDelayed } from "./dsn.ts";
import { testMeta } from "./_test_meta.ts";

const NOW = new Date("2026-12-02T10:00:00Z");
const original = new TextEncoder().encode(
  "From: a@ours.test\r\nSubject: quarterly report\r\nMessage-ID: <m1@ours.test>\r\n\r\nsecret body\r\n",
);
const meta = testMeta(["bad@dest.test", "slow@dest.test"], {
  from: "a@ours.test",
  created_at: "2026-12-02T09:00:00Z",
  size: original.length,
});
const bad: FailedRecipient = {
  address: "bad@dest.test",
  status: "5.1.1",
  diagnostic: "550 5.1.1 No such user",
  remote: "mx1.dest.test[192.0.2.1]",
};

/** The DSN's top header, and each MIME part as [headers, content], split on the boundary. */
function parts(dsn: Uint8Array): { top: string; parts: [string, string][] } {
  const text = new TextDecoder().decode(dsn);
  const boundary = /boundary="([^"]+)"/.exec(text)![1];
  const [head, ...rest] = text.split(`\r\n--${boundary}`);
  const closed = rest.pop();
  assert.equal(closed, "--\r\n", "the last part is closed by the boundary and --");
  return {
    top: head.slice(0, head.indexOf("\r\n\r\n")),
    parts: rest.map((p) => {
      const end = p.indexOf("\r\n\r\n");
      return [p.slice(0, end), p.slice(end + 4)];
    }),
  };
}

Deno.test("buildDsn() makes an RFC 3464 failure report: three parts, Action failed, the status, headers only", () => {
  const dsn = parts(buildDsn(meta, original, [bad], { hostname: "mx.ours.test", now: NOW }));
  assert.match(dsn.top, /^From: Mail Delivery System <MAILER-DAEMON@mx\.ours\.test>$/m);
  assert.match(dsn.top, /^To: <a@ours\.test>$/m);
  assert.match(dsn.top, /^Auto-Submitted: auto-replied$/m);
  assert.match(dsn.top, /^Content-Type: multipart\/report; report-type=delivery-status;$/m);
  assert.deepEqual(dsn.parts.map(([h]) => /Content-Type: ([^;\r\n]+)/.exec(h)![1]), [
    "text/plain",
    "message/delivery-status",
    "text/rfc822-headers",
  ]);
  const [[, human], [, status], [, headers]] = dsn.parts;
  assert.match(human, /<bad@dest\.test>: 550 5\.1\.1 No such user/);
  // RFC 3464 §2.1: per-message fields, a blank line, then one block per recipient.
  const [perMessage, recipient, ...more] = status.split("\r\n\r\n");
  assert.deepEqual(more.filter((b) => b.trim()), [], "one recipient block");
  assert.match(perMessage, /^Reporting-MTA: dns; mx\.ours\.test$/m);
  assert.match(recipient, /^Final-Recipient: rfc822; bad@dest\.test$/m);
  assert.match(recipient, /^Action: failed$/m);
  assert.match(recipient, /^Status: 5\.1\.1$/m);
  assert.match(recipient, /^Remote-MTA: dns; mx1\.dest\.test$/m);
  assert.match(recipient, /^Diagnostic-Code: smtp; 550 5\.1\.1 No such user$/m);
  assert.doesNotMatch(recipient, /Will-Retry-Until/);
  assert.match(headers, /^Subject: quarterly report$/m);
  assert.match(headers, /^Message-ID: <m1@ours\.test>$/m);
  assert.doesNotMatch(headers, /secret body/, "the original's headers only");
});

Deno.test("buildDsn() with willRetryUntil makes a delay DSN: Action delayed, a 4.x.x status, Will-Retry-Until", () => {
  const until = new Date("2026-12-07T09:00:00Z");
  const slow: FailedRecipient = {
    address: "slow@dest.test",
    status: "4.2.1",
    diagnostic: "450 4.2.1 Mailbox busy",
    remote: null,
  };
  const dsn = parts(buildDsn(meta, original, [slow], {
    hostname: "mx.ours.test",
    now: NOW,
    willRetryUntil: until,
  }));
  assert.match(dsn.top, /^Subject: Delayed Mail \(still being retried\)$/m);
  const [[, human], [, status], [headersHead, headers]] = dsn.parts;
  assert.match(human, /WARNING ONLY/);
  assert.match(human, /retried until Mon, 07 Dec 2026 09:00:00 \+0000/);
  const recipient = status.split("\r\n\r\n")[1];
  assert.match(recipient, /^Action: delayed$/m);
  assert.match(recipient, /^Status: 4\.2\.1$/m);
  assert.match(recipient, /^Will-Retry-Until: Mon, 07 Dec 2026 09:00:00 \+0000$/m);
  assert.match(recipient, /^Diagnostic-Code: x-minimta; 450 4\.2\.1 Mailbox busy$/m);
  assert.doesNotMatch(recipient, /Remote-MTA/, "no server named when none answered");
  assert.match(headersHead, /Delayed Message Headers/);
  assert.doesNotMatch(headers, /secret body/);
});

Deno.test("buildDsn() reports a delayed recipient with a 5.x.x status as 4.0.0 (RFC 3464 §2.3.4)", () => {
  const dsn = parts(buildDsn(meta, original, [bad], {
    hostname: "mx.ours.test",
    now: NOW,
    willRetryUntil: new Date("2026-12-07T09:00:00Z"),
  }));
  assert.match(dsn.parts[1][1], /^Status: 4\.0\.0$/m);
});

Deno.test("bounceFailed() and warnDelayed() spool one DSN from <> to the sender, marked a bounce; never for a bounce", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const spool = await Spool.open(dir);
    const events: MailEvent[] = [];
    const failed: MessageMeta = {
      ...meta,
      recipients: meta.recipients.map((r, i) =>
        i === 0 ? { ...r, status: "failed", last_status: "5.1.1" } : r
      ),
    };
    await bounceFailed(spool, failed, original, {
      hostname: "mx.ours.test",
      now: NOW,
      emit: (e) => events.push(e),
    });
    const warned = await warnDelayed(spool, meta, original, [bad], {
      hostname: "mx.ours.test",
      now: NOW,
      willRetryUntil: new Date("2026-12-07T09:00:00Z"),
    });
    const ids = await spool.ids();
    assert.equal(ids.length, 2);
    assert.ok(warned && ids.includes(warned));
    for (const id of ids) {
      const dsn = await spool.get(id);
      assert.deepEqual([dsn.from, dsn.recipients.map((r) => r.address), dsn.is_bounce], ["", [
        "a@ours.test",
      ], true]);
    }
    assert.equal(events.length, 1);
    assert.deepEqual(events[0], {
      type: "bounced",
      queue_id: "Q1",
      dsn_id: ids.find((id) => id !== warned),
      to: "a@ours.test",
      recipients: ["bad@dest.test"],
    });
    const bounce = { ...failed, from: "", is_bounce: true };
    await bounceFailed(spool, bounce, original, {
      hostname: "mx.ours.test",
      now: NOW,
      emit: (e) => events.push(e),
    });
    assert.equal(
      await warnDelayed(spool, bounce, original, [bad], {
        hostname: "mx.ours.test",
        now: NOW,
        willRetryUntil: NOW,
      }),
      null,
    );
    assert.equal((await spool.ids()).length, 2, "no DSN about a DSN (RFC 5321 §4.5.5)");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
