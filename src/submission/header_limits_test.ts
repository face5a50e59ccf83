// Issue 8 item 5: the header bounds keep DKIM signing cheap. Each header here is the
// worst of its kind that HEADER_LIMITS still lets through: it must be accepted, and
// signed (mailauth, as in production) within a second, where 120,000 folded lines
// once took 28 s; one line more must be refused with 552 5.3.4 before signing.
import assert from "node:assert/strict";
import { DEFAULTS } from "../config/mod.ts";
import { DkimSigner, loadDkimKeys } from "../dkim/mod.ts";
import { generateDkimKey } from "../dkim/generate_dkim_key.ts";
import { Spool } from "../spool/mod.ts";
import { HEADER_LIMITS } from "./header_limits.ts";
import { concat, Intake, type Submission } from "./intake.ts";
import { LineEndingNormalizer } from "./normalizer.ts";
import { SmtpRejection } from "./rejection.ts";

const L = HEADER_LIMITS;
const SIGNED = ["To", "Cc", "Subject", "References", "In-Reply-To", "Reply-To", "List-Id"];
// After "From: alice@ours.test\r\n" (23 octets, 1 line).
const ROOM = { bytes: L.sectionBytes - 23, lines: L.sectionLines - 1 };
const FIELD_LINES_OF = (width: number) => Math.floor(L.fieldBytes / (width + 2));

function times(count: number, make: (name: string) => string): string {
  return Array.from({ length: count }, (_, i) => make(SIGNED[i % SIGNED.length])).join("");
}

/** A field of `lines` lines (the first and `lines - 1` folds), each line `width` octets. */
function field(name: string, lines: number, width = 3): string {
  const first = `${name}: ${"x".repeat(Math.max(1, width - name.length - 2))}\r\n`;
  return first + ` ${"x".repeat(width - 1)}\r\n`.repeat(lines - 1);
}

/** The worst headers at the limits (the fields after From:), and what takes each over. */
const WORST: Record<string, { head: string; over: string }> = {
  // As many folded lines as a field may have, in signed fields, up to the section's lines.
  "folded lines": {
    head: times(Math.floor(ROOM.lines / L.fieldLines), (name) => field(name, L.fieldLines)),
    over: " x\r\n",
  },
  // Fields of the largest size in long lines, up to the section's octets.
  "field octets": {
    head: times(
      Math.floor(ROOM.bytes / (FIELD_LINES_OF(994) * 996)),
      (name) => field(name, FIELD_LINES_OF(994), 994),
    ),
    over: ` ${"x".repeat(900)}\r\n`,
  },
  // The section's lines as one-line signed fields (each listed in h=).
  "many fields": {
    head: field("To", 1, Math.floor(ROOM.bytes / ROOM.lines) - 2).repeat(ROOM.lines),
    over: "To: x\r\n",
  },
};

async function setup(dir: string): Promise<{ intake: Intake; signMs: number[] }> {
  const spool = await Spool.open(`${dir}/spool`, { fsync: false });
  const generated = await generateDkimKey("ed25519");
  await Deno.writeTextFile(`${dir}/k.pem`, generated.privateKeyPem);
  const signer = new DkimSigner(
    await loadDkimKeys([{ domain: "ours.test", selector: "s", privateKeyFile: `${dir}/k.pem` }]),
  );
  const signMs: number[] = [];
  const sign = async (message: Uint8Array, domain: string) => {
    const start = performance.now();
    const signed = await signer.sign(message, domain);
    signMs.push(performance.now() - start);
    return signed;
  };
  const intake = new Intake({
    hostname: "mx.ours.test",
    spool,
    sign,
    bulkLint: "warn",
    maxMessageSize: DEFAULTS.server.max_message_size,
    bareNewline: DEFAULTS.server.bare_newline,
    emit: () => {},
  });
  return { intake, signMs };
}

function submission(head: string): Submission {
  const normalizer = new LineEndingNormalizer();
  const raw = new TextEncoder().encode(`From: alice@ours.test\r\n${head}\r\nbody\r\n`);
  const bytes = concat([...normalizer.push(raw), ...normalizer.end()]);
  return {
    from: "alice@ours.test",
    recipients: ["bob@remote.test"],
    bytes,
    normalizer,
    sizeExceeded: false,
    user: null,
    clientIp: "127.0.0.1",
    heloName: "t.test",
    tls: null,
    smtputf8: false,
  };
}

Deno.test("the worst header within HEADER_LIMITS signs in under a second; one line more gets 552", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "minimta_hdr_" });
  try {
    const { intake, signMs } = await setup(dir);
    await intake.accept(submission("Subject: warm-up\r\n"));
    for (const [name, { head, over }] of Object.entries(WORST)) {
      await t.step(name, async () => {
        const sub = submission(head);
        const h = sub.normalizer.header;
        assert.ok(h.lines <= L.sectionLines && h.bytes <= L.sectionBytes, JSON.stringify(h));
        assert.ok(h.fieldLines <= L.fieldLines && h.fieldBytes <= L.fieldBytes, JSON.stringify(h));
        const used = [
          h.lines / L.sectionLines,
          h.bytes / L.sectionBytes,
          h.fieldLines / L.fieldLines,
          h.fieldBytes / L.fieldBytes,
        ];
        assert.ok(Math.max(...used) > 0.99, `not at a limit: ${JSON.stringify(h)}`);
        await intake.accept(sub);
        const ms = signMs[signMs.length - 1];
        assert.ok(ms < 1000, `${name}: signing took ${ms.toFixed(0)} ms`);

        const signed = signMs.length;
        await assert.rejects(intake.accept(submission(head + over)), (e: unknown) => {
          assert.ok(e instanceof SmtpRejection);
          assert.equal(e.responseCode, 552);
          assert.match(
            e.message,
            /^5\.3\.4 Message has a header (field|section) of \d+ (octets|lines)/,
          );
          return true;
        });
        assert.equal(signMs.length, signed, "an over-limit message reached the signer");
      });
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("LineEndingNormalizer counts the header section and its largest field", () => {
  const n = new LineEndingNormalizer();
  const text = "A: 1\r\nB: 2\r\n 3\n\t4\r\nC: 5\r\n\r\nX: body\r\n 6\r\n";
  for (let i = 0; i < text.length; i += 3) n.push(new TextEncoder().encode(text.slice(i, i + 3)));
  n.end();
  // B's field is "B: 2", " 3", "\t4": 3 lines, 4 + 2 + 2 + 3 × CRLF octets.
  assert.deepEqual(n.header, { bytes: 26, lines: 5, fieldBytes: 14, fieldLines: 3 });
});
