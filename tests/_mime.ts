/**
 * Reading what a receiver captured: DATA bytes back to the message, and an
 * independent MIME parser (Python's `email` package).
 */
import { Buffer } from "node:buffer";
import { PYTHON, run } from "./_harness.ts";

// ISO-8859-1, one char per byte (TextDecoder("latin1") is windows-1252,
// which would change 0x80–0x9F).
/** Latin-1 text of bytes (one char per byte), for readable assertions. */
export function text(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("latin1");
}

/** The message inside DATA bytes as received: terminator removed, dot-stuffing undone. */
export function unstuff(data: Uint8Array): Uint8Array {
  const all = text(data);
  if (!all.endsWith(".\r\n")) throw new Error("DATA does not end with .CRLF");
  const lines = all.slice(0, -3).split("\r\n");
  const out = lines.map((l) => (l.startsWith(".") ? l.slice(1) : l)).join("\r\n");
  return Uint8Array.from(out, (c) => c.charCodeAt(0));
}

/** A MIME part as the Python email parser sees it (see {@linkcode parseMime}). */
export interface MimePart {
  content_type: string;
  params: Record<string, string>;
  headers: [string, string][];
  /** Text of a non-multipart part (decoded as latin-1). */
  text: string | null;
  /** Sub-parts of a multipart, or the header blocks of message/delivery-status. */
  parts: MimePart[];
}

const PARSE_MIME = `
import email, email.policy, json, sys
msg = email.message_from_bytes(sys.stdin.buffer.read(), policy=email.policy.compat32)
def walk(m):
    if isinstance(m, list):
        return [walk(x) for x in m]
    out = {"content_type": m.get_content_type(),
           "params": {k.lower(): v for k, v in (m.get_params() or [])[1:]},
           "headers": [[k, str(v)] for k, v in m.items()], "text": None, "parts": []}
    payload = m.get_payload()
    if isinstance(payload, list):
        out["parts"] = [walk(p) for p in payload]
    else:
        out["text"] = payload
    return out
print(json.dumps(walk(msg)))
`;

/** Parses a message with Python's `email` package (an independent MIME parser). */
export async function parseMime(bytes: Uint8Array): Promise<MimePart> {
  const r = await run(PYTHON, ["-c", PARSE_MIME], { stdin: bytes });
  if (r.code !== 0) throw new Error(`python email parser failed: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

/** The value of header `name` (case-insensitive) of a parsed part, or undefined. */
export function header(part: MimePart, name: string): string | undefined {
  return part.headers.find(([k]) => k.toLowerCase() === name.toLowerCase())?.[1];
}
