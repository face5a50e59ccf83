/**
 * Fills a minimta spool directly, in the spool's own file format (without
 * fsync), with N deferred one-recipient messages: one failed attempt each (a
 * history entry and a 4xx last error), due in a day, so a daemon started on
 * it holds them all and sends nothing. As the daemon leaves such a message:
 * msg/ID.eml with the envelope intake wrote (src/spool/envelope.ts), and
 * meta/ID.json with the attempt.
 *
 *   deno run -A bench/lib/fill_spool.ts SPOOL_DIR [N=100000] [DOMAINS=1000]
 */
import { newQueueId, pendingRecipient } from "../../src/spool/mod.ts";
import { encodeEnvelope } from "../../src/spool/envelope.ts";

const [dir, nArg, domainsArg] = Deno.args;
if (!dir) throw new Error("usage: fill_spool.ts SPOOL_DIR [N] [DOMAINS]");
const n = Number(nArg ?? 100_000);
const domains = Number(domainsArg ?? 1000);
for (const sub of ["tmp", "msg", "meta", "corrupt"]) {
  await Deno.mkdir(`${dir}/${sub}`, { recursive: true, mode: 0o700 });
}
const enc = new TextEncoder();
const start = Date.now() - n * 10 - 3_600_000;
const due = new Date(Date.now() + 86_400_000).toISOString();
let next = 0;
const one = async (i: number) => {
  const created = new Date(start + i * 10);
  const id = newQueueId(created);
  const from = `news${i % 10}@ours.test`;
  const to = `user${i}@d${i % domains}.test`;
  const body = enc.encode(
    `From: <${from}>\r\nTo: <${to}>\r\nSubject: bulk ${i}\r\nMessage-ID: <${id}@ours.test>\r\n\r\n${
      "x".repeat(1000)
    }\r\n`,
  );
  const at = new Date(created.getTime() + 5_000).toISOString();
  const error = `451 4.7.1 <${to}>: Recipient address rejected: try again later`;
  const meta = {
    version: 1,
    id,
    from,
    recipients: [{
      address: to,
      status: "deferred",
      attempts: 1,
      last_error: error,
      last_status: "4.7.1",
      remote: `mx.d${i % domains}.test[127.0.0.2]`,
      updated_at: at,
      history: [{
        at,
        outcome: "transient",
        status: "4.7.1",
        text: error,
        remote: `mx.d${i % domains}.test[127.0.0.2]`,
      }],
    }],
    state: "deferred",
    created_at: created.toISOString(),
    next_attempt_at: due,
    size: body.length,
    message_id: `<${id}@ours.test>`,
    auth_user: "bench",
    client_ip: "127.0.0.1",
    is_bounce: false,
    smtputf8: false,
    eight_bit: false,
  };
  const queued = {
    ...meta,
    recipients: [pendingRecipient(to)],
    state: "queued",
    next_attempt_at: meta.created_at,
  };
  const file = new Uint8Array([...encodeEnvelope(enc.encode(JSON.stringify(queued))), ...body]);
  await Deno.writeFile(`${dir}/msg/${id}.eml`, file, { mode: 0o600 });
  await Deno.writeTextFile(`${dir}/meta/${id}.json`, JSON.stringify(meta), { mode: 0o600 });
};
await Promise.all(Array.from({ length: 32 }, async () => {
  while (next < n) await one(next++);
}));
