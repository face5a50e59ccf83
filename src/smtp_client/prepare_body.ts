const NUL = 0;
const CR = 13;
const LF = 10;
const DOT = 46;
const CRLF = new Uint8Array([CR, LF]);
const TERMINATOR = new Uint8Array([DOT, CR, LF]);

/**
 * Streaming body encoder for DATA: line-ending normalisation plus dot-stuffing.
 *
 * RFC 5321 §2.3.8: CR and LF may appear on the wire only as CRLF, so every bare CR,
 * every bare LF and the CR of a `CR CR LF` become CRLF (each is one line break). RFC
 * 5321 §4.5.2: a line starting with `.` gets one more `.`. NUL is dropped, as if it
 * were not there: it is not allowed in mail text (RFC 5322 §3.5, RFC 2045 §2.8), the
 * intake refuses it, and a receiver that strips it would read `CRLF NUL . CRLF` from
 * old or damaged spool content as the end of the data (docs/testing.md SMUG-OUT-03). Works on
 * bytes only, so any other byte (invalid UTF-8, 8-bit) passes through unchanged, and a
 * CRLF body is left as is apart from stuffing, which keeps a DKIM signature valid.
 * Output does not depend on how the input is split into chunks.
 */
export class DotStuffer {
  #lineStart = true;
  #pendingCr = false;

  /** Encode one chunk; the result may be up to twice as long. */
  push(chunk: Uint8Array): Uint8Array {
    const out = new Uint8Array(chunk.length * 2 + 2);
    let o = 0;
    let runStart = 0;
    for (let i = 0; i < chunk.length; i++) {
      const b = chunk[i];
      if (
        b !== CR && b !== LF && b !== NUL && !(b === DOT && this.#lineStart) && !this.#pendingCr
      ) {
        this.#lineStart = false;
        continue;
      }
      out.set(chunk.subarray(runStart, i), o);
      o += i - runStart;
      runStart = i + 1;
      if (b === NUL) continue;
      if (this.#pendingCr) {
        this.#pendingCr = false;
        o = this.#newline(out, o);
        if (b === LF) continue;
      }
      if (b === CR) this.#pendingCr = true;
      else if (b === LF) o = this.#newline(out, o);
      else if (b === DOT && this.#lineStart) {
        out[o++] = DOT;
        out[o++] = DOT;
        this.#lineStart = false;
      } else {
        out[o++] = b;
        this.#lineStart = false;
      }
    }
    out.set(chunk.subarray(runStart), o);
    o += chunk.length - runStart;
    return out.subarray(0, o);
  }

  /** Close the body: finish an open line with CRLF, then the `.` CRLF terminator. */
  end(): Uint8Array {
    const needsCrlf = this.#pendingCr || !this.#lineStart;
    this.#pendingCr = false;
    this.#lineStart = true;
    return needsCrlf ? concat([CRLF, TERMINATOR]) : TERMINATOR.slice();
  }

  #newline(out: Uint8Array, o: number): number {
    out[o] = CR;
    out[o + 1] = LF;
    this.#lineStart = true;
    return o + 2;
  }
}

/**
 * Turn a message into the exact bytes sent after the 354 reply: CRLF-only line
 * endings, dot-stuffed, ending with CRLF and then `.` CRLF (see {@linkcode DotStuffer}).
 *
 * @example
 * ```ts
 * prepareBody(new TextEncoder().encode(".hi\n")); // "..hi\r\n.\r\n"
 * ```
 */
export function prepareBody(bytes: Uint8Array): Uint8Array {
  const stuffer = new DotStuffer();
  return concat([stuffer.push(bytes), stuffer.end()]);
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
