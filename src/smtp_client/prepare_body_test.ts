import { deepStrictEqual as assertEquals, ok } from "node:assert/strict";
import fc from "fast-check";
import { DotStuffer, prepareBody } from "./prepare_body.ts";

const latin1 = (b: Uint8Array) => String.fromCharCode(...b);
const bytes = (s: string) => Uint8Array.from(s, (c) => c.charCodeAt(0));
const prep = (s: string) => latin1(prepareBody(bytes(s)));

/** Reference normaliser, written differently from the real one: a regex on latin1 text. */
function normalise(s: string): string {
  const n = s.replaceAll("\0", "").replace(/\r\n|\r|\n/g, "\r\n");
  return n === "" || n.endsWith("\r\n") ? n : `${n}\r\n`;
}

/** Receiver side of RFC 5321 §4.5.2: drop the terminator, then one leading dot per line. */
function unstuff(wire: string): string {
  if (!wire.endsWith(".\r\n")) throw new Error("no terminator");
  const body = wire.slice(0, -3);
  return body.split("\r\n").map((l) => (l.startsWith(".") ? l.slice(1) : l)).join("\r\n");
}

/** DotStuffer's output for `b` pushed in pieces cut at `cuts`, then ended. */
function stuffChunked(b: Uint8Array, cuts: number[]): string {
  const points = [0, ...cuts.sort((x, y) => x - y), b.length];
  const stuffer = new DotStuffer();
  let out = "";
  for (let i = 1; i < points.length; i++) {
    out += latin1(stuffer.push(b.subarray(points[i - 1], points[i])));
  }
  return out + latin1(stuffer.end());
}

Deno.test("prepareBody() stuffs dots and leaves a CRLF body otherwise untouched", () => {
  assertEquals(prep("a\r\n.b\r\n..c\r\n"), "a\r\n..b\r\n...c\r\n.\r\n");
  assertEquals(
    prep("From: x\r\n\r\nhi \xff\xfe\x80 bytes\r\n"),
    "From: x\r\n\r\nhi \xff\xfe\x80 bytes\r\n.\r\n",
  );
});

Deno.test("SMUG-OUT-03: prepareBody() drops NUL, so CRLF NUL . CRLF is never sent", () => {
  // A receiver that strips NUL would read the line "\0." as the end of the data.
  assertEquals(prep("a\r\n\0.\r\nMAIL FROM:<x@y>\r\n"), "a\r\n..\r\nMAIL FROM:<x@y>\r\n.\r\n");
  assertEquals(prep("a\r\n.\0\r\nb\r\n"), "a\r\n..\r\nb\r\n.\r\n");
  assertEquals(prep("x\0y\r\0\n\0\0"), "xy\r\n.\r\n");
  fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), (input) => {
    ok(!prepareBody(input).includes(0));
  }));
});

Deno.test("prepareBody() handles the outbound smuggling cases SMUG-OUT-01/02/04/05", () => {
  assertEquals(prep("."), "..\r\n.\r\n");
  assertEquals(prep(".\r\nx"), "..\r\nx\r\n.\r\n");
  assertEquals(prep("no final break"), "no final break\r\n.\r\n");
  assertEquals(prep(""), ".\r\n");
  assertEquals(prep("a\rb"), "a\r\nb\r\n.\r\n");
  assertEquals(prep("x\r.\r\ny"), "x\r\n..\r\ny\r\n.\r\n");
  const eods = [
    "\n.\n",
    "\n.\r\n",
    "\r\n.\n",
    "\r.\r\n",
    "\r.\r",
    "\r.\n",
    "\n.\r",
    "\r\n.\r",
    "\r\r\n.\r\r\n",
    "\r\n.\r\r\n",
  ];
  for (const eod of eods) {
    const wire = prep(`SMUGGLINGSTART${eod}MAIL FROM:<x@y>\r\nSMUGGLINGEND`);
    assertEquals(wire.indexOf("\r\n.\r\n"), wire.length - 5, JSON.stringify(eod));
    ok(wire.includes("\r\n..\r\n") || wire.includes("\r\n..MAIL"), JSON.stringify(eod));
  }
});

Deno.test("SMUG-OUT-09: prepareBody() output has CR and LF only as CRLF and stuffed lines, for any bytes", () => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), (input) => {
    const wire = latin1(prepareBody(input));
    const withoutCrlf = wire.replaceAll("\r\n", "");
    ok(!withoutCrlf.includes("\r") && !withoutCrlf.includes("\n"));
    ok(wire.endsWith(".\r\n"));
    const lines = wire.slice(0, -3).split("\r\n");
    for (const line of lines) ok(!line.startsWith(".") || line.startsWith(".."));
    assertEquals(wire.indexOf("\r\n.\r\n"), wire.length >= 5 ? wire.length - 5 : -1);
  }));
});

Deno.test("SMUG-OUT-09: prepareBody() round-trips: unstuff(stuff(x)) == normalise(x)", () => {
  const crlfHeavy = fc.array(fc.constantFrom("\r", "\n", ".", "a", "\r\n", "\x00", "\xff"), {
    maxLength: 60,
  })
    .map((a) => a.join(""));
  const prop = (s: string) => assertEquals(unstuff(prep(s)), normalise(s));
  fc.assert(fc.property(crlfHeavy, prop), { numRuns: 500 });
  fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }).map(latin1), prop));
});

Deno.test("SMUG-OUT-09: DotStuffer output does not depend on how the input is chunked", () => {
  const input = fc.uint8Array({ maxLength: 200 }).chain((b) =>
    fc.tuple(fc.constant(b), fc.array(fc.nat(b.length), { maxLength: 10 }))
  );
  fc.assert(fc.property(input, ([b, cuts]) => {
    const out = stuffChunked(b, cuts);
    assertEquals(out, latin1(prepareBody(b)));
  }));
});

Deno.test("SMUG-OUT-09: over NUL, CR, LF and dots, chunked anyhow, the output is the normalised body stuffed", () => {
  // Random bytes seldom make CR NUL LF or a CR at a chunk's end: this alphabet does.
  const input = fc.array(fc.constantFrom(0, 10, 13, 46, 97), { maxLength: 40 }).chain((a) =>
    fc.tuple(fc.constant(Uint8Array.from(a)), fc.array(fc.nat(a.length), { maxLength: 8 }))
  );
  fc.assert(
    fc.property(input, ([b, cuts]) => {
      const out = stuffChunked(b, cuts);
      assertEquals(unstuff(out), normalise(latin1(b)));
      assertEquals(out, latin1(prepareBody(b)));
    }),
    { numRuns: 5000 },
  );
  assertEquals(prep("a\r\0\nb"), "a\r\nb\r\n.\r\n", "CR NUL LF is one line break");
});

Deno.test("prepareBody() is linear on a large body", () => {
  const big = new Uint8Array(5 * 1024 * 1024).fill(0x61);
  for (let i = 0; i < big.length; i += 80) big[i] = 10;
  const out = prepareBody(big);
  ok(out.length > big.length);
});

Deno.test("DotStuffer.finish() gives push() and end() in one buffer, as the last write of a body", () => {
  for (const text of ["", "a", "a\r\n", ".x\r", "x\r\n.\r\n", "end\r"]) {
    const one = new DotStuffer();
    const two = new DotStuffer();
    const head = bytes("first\r\n.");
    assertEquals(latin1(one.push(head)), latin1(two.push(head)));
    assertEquals(
      latin1(one.finish(bytes(text))),
      latin1(two.push(bytes(text))) + latin1(two.end()),
    );
  }
});
