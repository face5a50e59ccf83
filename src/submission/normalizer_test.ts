import assert from "node:assert/strict";
import fc from "fast-check";
import { LineEndingNormalizer } from "./normalizer.ts";

function run(chunks: Uint8Array[]): { out: Uint8Array; n: LineEndingNormalizer } {
  const n = new LineEndingNormalizer();
  const parts = chunks.flatMap((c) => n.push(c)).concat(n.end());
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return { out, n };
}

const bytes = (s: string) => new TextEncoder().encode(s);
const text = (b: Uint8Array) => new TextDecoder("latin1").decode(b);

function split(data: Uint8Array, cuts: number[]): Uint8Array[] {
  const points = [...new Set(cuts.map((c) => c % (data.length + 1)))].sort((a, b) => a - b);
  const chunks: Uint8Array[] = [];
  let start = 0;
  for (const p of points) {
    chunks.push(data.subarray(start, p));
    start = p;
  }
  chunks.push(data.subarray(start));
  return chunks;
}

Deno.test("normalizer turns every bare CR and LF into CRLF and counts them", () => {
  const { out, n } = run([bytes("a\nb\rc\r\nd\r\r\n.\n")]);
  assert.equal(text(out), "a\r\nb\r\nc\r\nd\r\n\r\n.\r\n");
  assert.equal(n.bare, 4);
});

Deno.test("normalizer leaves CRLF text untouched and flags NUL and 8-bit bytes", () => {
  const { out, n } = run([bytes("x\r\ny\r\n"), new Uint8Array([0x00, 0xff, 0x0d, 0x0a])]);
  assert.equal(out.length, 10);
  assert.equal(n.bare, 0);
  assert.equal(n.nul, 1);
  assert.equal(n.eightBit, true);
});

/** fast-check arbitraries of some bytes drawn from `byte`, and where to cut them into chunks. */
function chunkedBytes(byte: fc.Arbitrary<number>) {
  return [
    fc.array(byte, { maxLength: 200 }).map((a) => new Uint8Array(a)),
    fc.array(fc.nat(), { maxLength: 8 }),
  ] as const;
}

Deno.test("normalizer output has CR and LF only as CRLF, whatever the input and chunking", () => {
  const byte = fc.constantFrom(0x0d, 0x0a, 0x2e, 0x41, 0x00, 0xc3);
  fc.assert(
    fc.property(
      ...chunkedBytes(byte),
      (data, cuts) => {
        const whole = run([data]).out;
        const chunked = run(split(data, cuts)).out;
        assert.deepEqual(chunked, whole, "independent of chunking");
        for (let i = 0; i < whole.length; i++) {
          if (whole[i] === 0x0d) assert.equal(whole[i + 1], 0x0a);
          if (whole[i] === 0x0a) assert.equal(whole[i - 1], 0x0d);
        }
      },
    ),
  );
});

Deno.test("normalizer counts and header measures do not depend on where chunks split", () => {
  const byte = fc.constantFrom(0x0d, 0x0a, 0x20, 0x09, 0x3a, 0x41, 0x00, 0xc3);
  const measures = (n: LineEndingNormalizer) => ({
    bare: n.bare,
    nul: n.nul,
    eightBit: n.eightBit,
    longestLine: n.longestLine,
    header: n.header,
  });
  fc.assert(
    fc.property(
      ...chunkedBytes(byte),
      (data, cuts) => {
        assert.deepEqual(measures(run(split(data, cuts)).n), measures(run([data]).n));
      },
    ),
  );
});

Deno.test("normalizer measures the longest line across chunks and line ends", () => {
  const line = (n: number) => "x".repeat(n);
  assert.equal(run([bytes(`${line(998)}\r\n${line(10)}\n`)]).n.longestLine, 998);
  assert.equal(
    run([bytes(line(500)), bytes(`${line(499)}\r`), bytes("\nshort")]).n.longestLine,
    999,
  );
  assert.equal(run([bytes(`a\r${line(1200)}`)]).n.longestLine, 1200);
});
