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
    const n = chunk.length;
    const out = new Uint8Array(n * 2 + 2);
    let o = 0;
    let i = 0;
    // The state lives in locals while the bytes are walked: this runs over every
    // byte of every message sent.
    let lineStart = this.#lineStart;
    let pendingCr = false;
    if (this.#pendingCr) {
      // The previous chunk ended in CR (NULs do not count): a line break, whatever follows.
      while (i < n && chunk[i] === NUL) i++;
      if (i === n) return out.subarray(0, 0); // still undecided
      out[o++] = CR;
      out[o++] = LF;
      lineStart = true;
      if (chunk[i] === LF) i++;
    }
    // Bytes from runStart to i are copied unchanged, CRLF pairs included.
    let runStart = i;
    for (; i < n; i++) {
      const b = chunk[i];
      if (b > DOT) {
        lineStart = false;
        continue;
      }
      if (b === DOT) {
        if (lineStart) {
          out.set(chunk.subarray(runStart, i), o);
          o += i - runStart;
          out[o++] = DOT; // and the dot itself, as the run goes on from it
          runStart = i;
        }
        lineStart = false;
        continue;
      }
      if (b !== CR && b !== LF && b !== NUL) {
        lineStart = false;
        continue;
      }
      if (b === CR) {
        // Dropped NULs do not count: CR NUL LF is one line break.
        let j = i + 1;
        while (j < n && chunk[j] === NUL) j++;
        if (j === i + 1 && j < n && chunk[j] === LF) {
          i++; // CRLF, copied as it is
          lineStart = true;
          continue;
        }
        out.set(chunk.subarray(runStart, i), o);
        o += i - runStart;
        if (j === n) {
          pendingCr = true; // the next chunk tells whether an LF belongs to it
          runStart = n;
          break;
        }
        out[o++] = CR;
        out[o++] = LF;
        lineStart = true;
        if (chunk[j] === LF) i = j;
        runStart = i + 1;
        continue;
      }
      out.set(chunk.subarray(runStart, i), o);
      o += i - runStart;
      runStart = i + 1;
      if (b === NUL) continue;
      // A bare LF.
      out[o++] = CR;
      out[o++] = LF;
      lineStart = true;
    }
    out.set(chunk.subarray(runStart), o);
    o += n - runStart;
    this.#lineStart = lineStart;
    this.#pendingCr = pendingCr;
    return out.subarray(0, o);
  }

  /** {@linkcode push} of a body's last chunk and {@linkcode end} in one buffer: one write, not two. */
  finish(chunk: Uint8Array): Uint8Array {
    return concat([this.push(chunk), this.end()]);
  }

  /** Close the body: finish an open line with CRLF, then the `.` CRLF terminator. */
  end(): Uint8Array {
    const needsCrlf = this.#pendingCr || !this.#lineStart;
    this.#pendingCr = false;
    this.#lineStart = true;
    return needsCrlf ? concat([CRLF, TERMINATOR]) : TERMINATOR.slice();
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
  return new DotStuffer().finish(bytes);
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
