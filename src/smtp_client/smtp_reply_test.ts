import { deepStrictEqual as assertEquals, throws } from "node:assert/strict";
import { MAX_LINE_BYTES, ProtocolError, ReplyParser } from "./_reply_parser.ts";
import { classifyReply, type SmtpReply } from "./smtp_reply.ts";

const enc = new TextEncoder();

function parseAll(text: string, chunkSize = Infinity): SmtpReply[] {
  const parser = new ReplyParser();
  const bytes = enc.encode(text);
  const out: SmtpReply[] = [];
  const step = Math.min(chunkSize, bytes.length || 1);
  for (let i = 0; i < bytes.length; i += step) {
    parser.push(bytes.subarray(i, i + step));
    for (let r = parser.next(); r !== null; r = parser.next()) out.push(r);
  }
  return out;
}

Deno.test("ReplyParser reads a multiline reply with an enhanced code", () => {
  const [reply] = parseAll("250-2.1.5 first\r\n250-2.1.5 second\r\n250 2.1.5 last\r\n");
  assertEquals(reply, {
    code: 250,
    enhanced: "2.1.5",
    text: "first second last",
    lines: ["2.1.5 first", "2.1.5 second", "2.1.5 last"],
  });
});

Deno.test("DLV-16: ReplyParser gives the same replies when bytes arrive one at a time", () => {
  const text = "220 hi\r\n250-mx.test\r\n250-PIPELINING\r\n250 SIZE 100\r\n550 5.1.1 no\r\n250\r\n";
  const whole = parseAll(text);
  assertEquals(whole.length, 4);
  assertEquals(parseAll(text, 1), whole);
  assertEquals(parseAll(text, 3), whole);
  assertEquals(whole[2].enhanced, "5.1.1");
  assertEquals(whole[3], { code: 250, enhanced: null, text: "", lines: [""] });
});

Deno.test("DLV-16: ReplyParser refuses malformed, oversized and endless replies as protocol errors", () => {
  const bad = [
    "hello\r\n",
    "2500 ok\r\n",
    "250-a\r\n251 b\r\n",
    "250 ok\n",
    "220-a\r\n220 b\n",
    "199 too low\r\n",
    "25 short\r\n",
    "\r\n",
    `250 ${"x".repeat(MAX_LINE_BYTES + 10)}`,
    "250-x\r\n".repeat(200),
  ];
  for (const text of bad) {
    throws(() => parseAll(text), ProtocolError, JSON.stringify(text.slice(0, 20)));
    throws(() => parseAll(text, 1), ProtocolError);
  }
});

Deno.test("ReplyParser replaces control characters in reply text", () => {
  const [reply] = parseAll("550 5.7.1 bad\x1b[31m\x00 text\r\n");
  assertEquals(reply.text, "bad?[31m? text");
});

Deno.test("ReplyParser keeps pipelined bytes after a reply as buffered", () => {
  const parser = new ReplyParser();
  parser.push(enc.encode("220 go\r\n250-injected\r\n"));
  assertEquals(parser.next()?.code, 220);
  assertEquals(parser.buffered, 14);
});

function r(code: number, enhanced: string | null = null): SmtpReply {
  return { code, enhanced, text: "", lines: [] };
}

Deno.test("classifyReply() maps 2xx/3xx, 4xx and 5xx, and doubts contradicting enhanced codes", () => {
  assertEquals(classifyReply(r(250)), "success");
  assertEquals(classifyReply(r(354)), "success");
  assertEquals(classifyReply(r(450, "4.2.1")), "temporary");
  assertEquals(classifyReply(r(421)), "temporary");
  assertEquals(classifyReply(r(550, "5.1.1")), "permanent");
  assertEquals(classifyReply(r(554)), "permanent");
  assertEquals(classifyReply(r(550, "4.7.1")), "temporary");
  assertEquals(classifyReply(r(451, "5.0.0")), "temporary");
  assertEquals(classifyReply(r(600)), "temporary");
});
