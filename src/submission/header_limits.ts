import type { LineEndingNormalizer } from "./normalizer.ts";
import { SmtpRejection } from "./rejection.ts";

/**
 * Bounds of a submitted header section, refused beyond with 552 5.3.4 at the end of
 * DATA. A field is a line and its folded continuations. Postfix bounds one field at
 * 102,400 octets (header_size_limit); the line counts bound what mailauth's DKIM
 * code costs, which grows with the square of a field's folded lines (120,000 of
 * them, 480 KB, took 28 s of the event loop). At these bounds the worst header signs
 * in about 0.1 s (src/submission/header_limits_test.ts); a large real header section
 * (a long Received: chain, ARC sets, a long References:) is some tens of KB.
 */
export const HEADER_LIMITS: Readonly<{
  fieldBytes: number;
  fieldLines: number;
  sectionBytes: number;
  sectionLines: number;
}> = Object.freeze({
  fieldBytes: 102_400,
  fieldLines: 1_000,
  sectionBytes: 262_144,
  sectionLines: 5_000,
});

/**
 * Refuses a header section beyond {@linkcode HEADER_LIMITS}, as measured while the
 * data streamed in.
 *
 * @throws {SmtpRejection} 552 5.3.4 naming the bound that was passed
 */
export function checkHeaderSize(header: LineEndingNormalizer["header"]): void {
  const L = HEADER_LIMITS;
  const over = header.fieldBytes > L.fieldBytes
    ? `a header field of ${header.fieldBytes} octets (limit ${L.fieldBytes})`
    : header.fieldLines > L.fieldLines
    ? `a header field of ${header.fieldLines} lines (limit ${L.fieldLines})`
    : header.bytes > L.sectionBytes
    ? `a header section of ${header.bytes} octets (limit ${L.sectionBytes})`
    : header.lines > L.sectionLines
    ? `a header section of ${header.lines} lines (limit ${L.sectionLines})`
    : null;
  if (over) throw new SmtpRejection(552, "5.3.4", `Message has ${over}`);
}
